"""gdmio.products: all-or-nothing product folders."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from affine import Affine

from gdmio.cog import CogWriter, write_cog
from gdmio.products import STAGING_PREFIX, ProductDir

T = Affine(10.0, 0.0, 700_000.0, 0.0, -10.0, 5_010_000.0)


def _tree(folder: Path) -> list[str]:
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*"))


def test_success_moves_everything(tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "old.txt").write_text("keep me")
    (out / "east.tif").write_text("previous run")
    pd = ProductDir(out)
    with pd as stage:
        assert stage.parent == out and stage.name.startswith(STAGING_PREFIX)
        write_cog(stage / "east.tif", np.zeros((20, 20), np.float32), "EPSG:32631", T)
        (stage / "pairs").mkdir()
        (stage / "pairs" / "a_b.txt").write_text("pair")
        (stage / "item.json").write_text("{}")
        assert _tree(out) == sorted(["old.txt", "east.tif", stage.name,
                                     *(f"{stage.name}/{n}" for n in
                                       ("east.tif", "pairs", "pairs/a_b.txt", "item.json"))])
    assert _tree(out) == ["east.tif", "item.json", "old.txt", "pairs", "pairs/a_b.txt"]
    assert (out / "old.txt").read_text() == "keep me"
    assert (out / "east.tif").read_bytes()[:2] in (b"II", b"MM")  # replaced by the new COG
    assert [p.name for p in pd.moved][-1] == "item.json"  # metadata published last


def test_failure_leaves_out_dir_untouched(tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "old.txt").write_text("keep me")
    with pytest.raises(RuntimeError, match="step failed"):
        with ProductDir(out) as stage:
            write_cog(stage / "east.tif", np.zeros((20, 20), np.float32), "EPSG:32631", T)
            with CogWriter(stage / "north.tif", 20, 20, 1, "EPSG:32631", T) as w:
                w.write(np.ones((20, 20), np.float32))
                raise RuntimeError("step failed")
    assert _tree(out) == ["old.txt"]


def test_failure_removes_created_folders(tmp_path: Path) -> None:
    out = tmp_path / "new" / "deeper"
    with pytest.raises(KeyboardInterrupt):
        with ProductDir(out) as stage:
            (stage / "x.txt").write_text("x")
            raise KeyboardInterrupt
    assert list(tmp_path.iterdir()) == []
    with ProductDir(out) as stage:
        (stage / "x.txt").write_text("x")
    assert _tree(tmp_path) == ["new", "new/deeper", "new/deeper/x.txt"]


def test_output_path_is_a_file(tmp_path: Path) -> None:
    from gdmcore import InputError

    target = tmp_path / "out"
    target.write_text("not a folder")
    with pytest.raises(InputError, match="exists and is not a folder"):
        with ProductDir(target):
            pass
    with pytest.raises(InputError, match="cannot write to output folder"):
        with ProductDir(target / "sub"):
            pass
    assert _tree(tmp_path) == ["out"]
