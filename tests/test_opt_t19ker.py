"""Real Sentinel-2 patches with known shifts through the service path: georeferenced
GeoTIFFs with dated names, ``gdm opt run`` (a subprocess, as a user runs it), products
read back in metres and compared with the known shift."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import rasterio
from rasterio.crs import CRS
from rasterio.transform import from_origin

from tests.test_subpixel_accuracy import t19ker_pairs

RES = 10.0


def _write(path: Path, img: np.ndarray) -> None:
    profile = {"driver": "GTiff", "height": img.shape[0], "width": img.shape[1], "count": 1,
               "dtype": "float32", "crs": CRS.from_epsg(32719),
               "transform": from_origin(500000.0, 7520000.0, RES, RES)}
    with rasterio.open(path, "w", **profile) as ds:
        ds.write(img.astype(np.float32), 1)


def opt_run_figures(pairs: list, tmp_path: Path) -> list[tuple[str, float, float, float]]:
    """(name, |median bias|, RMSE, valid fraction) of each real pair through ``gdm opt run``:
    32-px windows every 4 px, no stable-area correction; products read back in pixels."""
    out = []
    for name, sr, sc, left, right in pairs:
        folder = tmp_path / name
        folder.mkdir()
        a, b = folder / "S2_20210310.tif", folder / "S2_20210410.tif"
        _write(a, left)
        _write(b, right)
        products = folder / "products"
        proc = subprocess.run([sys.executable, "-m", "gdm.cli", "opt", "run", a, b, "--out",
                               products, "--window", "32", "--step", "4", "--search", "4",
                               "--stable", "none", "-q"], capture_output=True, text=True,
                              timeout=300)
        assert proc.returncode == 0, proc.stderr
        with rasterio.open(products / "east.tif") as e, \
                rasterio.open(products / "north.tif") as n:
            dcol = e.read(1) / RES  # east = +columns
            drow = -n.read(1) / RES  # north = -rows
        er, ec = drow - sr, dcol - sc
        valid = float(np.isfinite(er).mean())
        assert valid > 0.9, name
        bias = max(abs(np.nanmedian(er)), abs(np.nanmedian(ec)))
        rmse = max(np.sqrt(np.nanmean(er**2)), np.sqrt(np.nanmean(ec**2)))
        out.append((name, float(bias), float(rmse), valid))
    return out


@pytest.mark.slow
def test_t19ker_through_gdm_opt_run(tmp_path: Path) -> None:
    worst_bias = worst_rmse = 0.0
    for name, bias, rmse, valid in opt_run_figures(t19ker_pairs(), tmp_path):
        print(f"gdm opt run, T19KER {name}: |median bias| {bias:.4f} px, RMSE {rmse:.4f} px, "
              f"valid {valid:.3f}")
        worst_bias, worst_rmse = max(worst_bias, bias), max(worst_rmse, rmse)
    assert worst_bias <= 0.005
    assert worst_rmse <= 0.01
