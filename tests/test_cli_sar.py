"""``gdm sar``: simulate and run from the command line; bad input exits 2 and leaves nothing."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import rasterio
from click.testing import CliRunner

from gdm.cli import main
from simulators.sar import SimulateSarConfig, simulate


def _cli(args):
    return CliRunner().invoke(main, args, catch_exceptions=False)


@pytest.fixture(scope="module")
def stack_master(tmp_path_factory):
    return simulate(SimulateSarConfig(out=tmp_path_factory.mktemp("clisar") / "sim", dates=4,
                                      size=64)).stack_dir


@pytest.fixture()
def small_stack(stack_master, tmp_path):
    """A private copy of a 4-date 64 x 64 stack that a test may damage."""
    return shutil.copytree(stack_master, tmp_path / "stack")


def _rewrite(path, data=None, drop=(), **tag_changes):
    with rasterio.open(path) as ds:
        profile, old, tags = ds.profile, ds.read(), ds.tags()
    data = old if data is None else data
    for k in drop:
        tags.pop(k)
    tags.update(tag_changes)
    profile.update(dtype=data.dtype.name, height=data.shape[1], width=data.shape[2])
    path.unlink()
    with rasterio.open(path, "w", **profile) as ds:
        ds.write(data)
        ds.update_tags(**tags)


def _run_args(stack, out, *extra):
    return ["sar", "run", str(stack), "--out", str(out), "-q", "--looks", "1", "1", *extra]


@pytest.mark.parametrize("case, message", [
    ("missing_key", "missing metadata key(s) WAVELENGTH"),
    ("single_date", "at least 2 dates"),
    ("mixed_grid", "must be coregistered"),
    ("mixed_crs", "georeferencing differs"),
    ("not_complex", "one complex band"),
    ("duplicate_date", "duplicate date"),
    ("corrupt", "cannot be read"),
    ("date_mismatch", "disagrees with the name"),
    ("bad_number", "is not a number"),
    ("unconnected", "cannot be connected: date(s) 2023-02-08"),
    ("span_without_days", "max_days"),
    ("reference_outside", "outside the"),
    ("no_folder", "not found"),
])
def test_bad_input_exits_2_without_products(small_stack, tmp_path, case, message):
    files = sorted(small_stack.glob("*.tif"))
    out = tmp_path / "out"
    extra: list[str] = []
    if case == "missing_key":
        _rewrite(files[1], drop=("WAVELENGTH",))
    elif case == "single_date":
        for f in files[1:]:
            f.unlink()
    elif case == "mixed_grid":
        with rasterio.open(files[2]) as ds:
            _rewrite(files[2], data=ds.read()[:, :60, :60])
    elif case == "mixed_crs":
        with rasterio.open(files[2]) as ds:
            profile, data, tags = ds.profile, ds.read(), ds.tags()
        profile.update(crs="EPSG:32632")
        files[2].unlink()
        with rasterio.open(files[2], "w", **profile) as ds:
            ds.write(data)
            ds.update_tags(**tags)
    elif case == "not_complex":
        with rasterio.open(files[0]) as ds:
            _rewrite(files[0], data=np.abs(ds.read()).astype(np.float32))
    elif case == "duplicate_date":
        shutil.copy(files[1], small_stack / f"copy_{files[1].name}")
    elif case == "corrupt":
        files[2].write_bytes(files[2].read_bytes()[:300])
    elif case == "date_mismatch":
        _rewrite(files[1], ACQUISITION_DATE="2023-01-16")
    elif case == "bad_number":
        _rewrite(files[3], SLANT_RANGE="far")
    elif case == "unconnected":
        _rewrite(files[3], PERPENDICULAR_BASELINE="900")
        extra = ["--max-bperp", "200"]
    elif case == "span_without_days":
        extra = ["--network", "span"]
    elif case == "reference_outside":
        extra = ["--reference", "70", "3"]
    elif case == "no_folder":
        shutil.rmtree(small_stack)
    result = _cli(_run_args(small_stack, out, *extra))
    assert result.exit_code == 2, result.output
    assert message in result.output
    assert "Traceback" not in result.output
    assert not out.exists()  # neither products nor a staging folder nor the folder itself


def test_failure_leaves_an_existing_folder_as_it_was(small_stack, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    result = _cli(_run_args(small_stack, out, "--reference", "0", "99"))
    assert result.exit_code == 2, result.output
    assert sorted(p.name for p in out.iterdir()) == ["keep.txt"]


def test_simulate_and_run_from_the_cli(tmp_path):
    result = _cli(["sar", "simulate", str(tmp_path / "sim"), "--dates", "4", "--size", "64",
                   "--interval-days", "6"])
    assert result.exit_code == 0, result.output
    truth = json.loads((tmp_path / "sim" / "truth" / "truth.json").read_text())
    assert truth["dates"][:2] == ["2023-01-03", "2023-01-09"]
    out = tmp_path / "out"
    result = _cli(_run_args(tmp_path / "sim" / "stack", out, "--network", "all"))
    assert result.exit_code == 0, result.output
    assert "6 interferograms" in result.output
    with rasterio.open(out / "timeseries.tif") as ds:
        assert ds.count == 4
        assert ds.descriptions == tuple(truth["dates"])
    assert len(list((out / "interferograms").iterdir())) == 6
    report = json.loads((out / "report.json").read_text())
    assert report["network"]["components"] == 1
    assert report["parameters"]["network"] == "all"
    assert not list(out.glob(".partial-*"))


@pytest.mark.parametrize("extra, n_pairs", [
    (["--network", "nearest", "-k", "1"], 3),
    (["--network", "span", "--max-days", "24"], 5),
    (["--network", "nearest", "-k", "2", "--max-days", "12"], 3),
])
def test_network_options_choose_the_pairs(small_stack, tmp_path, extra, n_pairs):
    out = tmp_path / "out"
    result = _cli(_run_args(small_stack, out, "--alpha", "0", *extra))
    assert result.exit_code == 0, result.output
    pairs = json.loads((out / "report.json").read_text())["network"]["pairs"]
    assert len(pairs) == n_pairs


def test_help_lists_both_commands():
    result = _cli(["sar", "--help"])
    assert result.exit_code == 0
    assert "run" in result.output and "simulate" in result.output
