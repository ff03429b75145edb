"""The ``gdm opt`` command line: exit codes, one-line errors, no partial products."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import rasterio
from rasterio.transform import from_origin

from simulators.opt import SimulateConfig, simulate


def gdm(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "gdm.cli", *map(str, args)],
                          capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    out = tmp_path_factory.mktemp("clipair")
    return simulate(SimulateConfig(case="landslide", size=256, dates=2, seed=21), out)


def _assert_bad_input(proc: subprocess.CompletedProcess, out: Path, words: list[str]) -> None:
    assert proc.returncode == 2, proc.stderr
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("error: ")
    for w in words:
        assert w.lower() in lines[0].lower(), lines[0]
    assert "Traceback" not in proc.stderr
    assert not out.exists() or not any(out.iterdir()), list(out.iterdir())


def test_run_succeeds_and_lists_products(pair, tmp_path):
    out = tmp_path / "ok"
    proc = gdm("opt", "run", *pair.images, "--out", out, "--preset", "slide", "-q")
    assert proc.returncode == 0, proc.stderr
    for name in ("east.tif", "north.tif", "magnitude.tif", "score.tif", "item.json"):
        assert (out / name).exists()
        assert str(out / name) in proc.stdout


def test_one_image_only(pair, tmp_path):
    out = tmp_path / "one"
    _assert_bad_input(gdm("opt", "run", pair.images[0], "--out", out, "-q"), out,
                      ["at least 2 images"])


def test_unknown_preset(pair, tmp_path):
    out = tmp_path / "preset"
    _assert_bad_input(gdm("opt", "run", *pair.images, "--out", out, "--preset", "volcano",
                          "-q"), out, ["preset"])


def test_corrupt_file(pair, tmp_path):
    bad = tmp_path / "S2SIM_20230601_B04.tif"
    data = pair.images[1].read_bytes()
    bad.write_bytes(data[: len(data) // 3])
    out = tmp_path / "corrupt"
    _assert_bad_input(gdm("opt", "run", pair.images[0], bad, "--out", out, "-q"), out,
                      [bad.name])


def test_missing_file(pair, tmp_path):
    out = tmp_path / "missing"
    _assert_bad_input(gdm("opt", "run", pair.images[0], tmp_path / "nope_20230101.tif",
                          "--out", out, "-q"), out, ["nope_20230101.tif"])


def test_images_that_do_not_overlap(pair, tmp_path):
    far = tmp_path / "FAR_20240101_B04.tif"
    with rasterio.open(pair.images[1]) as src:
        prof = src.profile | {"transform": from_origin(200000.0, 1000000.0, 10.0, 10.0)}
        with rasterio.open(far, "w", **prof) as dst:
            dst.write(src.read())
    out = tmp_path / "far"
    _assert_bad_input(gdm("opt", "run", pair.images[0], far, "--out", out, "-q"), out,
                      ["overlap"])


def test_failure_mid_job_leaves_no_partial_product(pair, tmp_path):
    """A stable-area mask with no stable window fails after correlation: nothing is left."""
    mask = tmp_path / "mask.tif"
    with rasterio.open(pair.images[0]) as src:
        prof = src.profile | {"dtype": "uint8", "nodata": None}
        with rasterio.open(mask, "w", **prof) as dst:
            dst.write(np.zeros((1, src.height, src.width), np.uint8))
    out = tmp_path / "midway"
    out.mkdir()
    (out / "keep.txt").write_text("a file of the user's")
    proc = gdm("opt", "run", *pair.images, "--out", out, "--stable", mask, "-q")
    assert proc.returncode == 2, proc.stderr
    assert "stable" in proc.stderr
    assert sorted(p.name for p in out.iterdir()) == ["keep.txt"]


def test_help_teaches():
    proc = gdm("opt", "run", "--help")
    assert proc.returncode == 0
    for word in ("--preset", "--window", "--step", "Example"):
        assert word in proc.stdout
