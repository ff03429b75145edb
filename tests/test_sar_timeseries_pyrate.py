"""A second real interferogram set (PyRate's Envisat ROI_PAC test data, tests/data):
``gdm sar timeseries`` against PyRate's own linear rate of the same interferograms.

PyRate keeps displacement positive away from the sensor, the project towards it, so the
two velocity maps are compared with opposite signs, after removing their offset (the
references differ: PyRate estimates one from the whole network, ours is automatic).
"""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import rasterio

from .datafiles import DATA

SET = DATA / "pyrate_small_roipac"


@pytest.fixture(scope="module")
def velocity(tmp_path_factory) -> np.ndarray:
    out = tmp_path_factory.mktemp("pyrate") / "products"
    run = subprocess.run([sys.executable, "-m", "gdm.cli", "sar", "timeseries", str(SET),
                          "--out", str(out)], capture_output=True, text=True, check=False)
    assert run.returncode == 0, run.stderr[-2000:]
    with rasterio.open(out / "velocity.tif") as ds:
        assert ds.crs.to_epsg() == 4326 and ds.shape == (72, 47)
        return ds.read(1).astype(np.float64) * 1000.0  # mm/yr, towards the satellite


def test_velocity_matches_pyrate_linear_rate(velocity):
    theirs = -np.load(SET / "pyrate_linear_rate.npy")  # towards the satellite
    valid = np.isfinite(velocity) & np.isfinite(theirs)
    assert valid.mean() > 0.75, valid.mean()
    diff = velocity[valid] - theirs[valid]
    rms = float(np.sqrt(np.mean((diff - np.median(diff)) ** 2)))
    corr = float(np.corrcoef(velocity[valid], theirs[valid])[0, 1])
    spread = float(np.std(theirs[valid]))
    print(f"\nPyRate small_test (17 ROI_PAC interferograms, 12 dates): {valid.sum()} pixels, "
          f"RMS difference to PyRate's linear rate {rms:.2f} mm/yr after an offset of "
          f"{np.median(diff):+.2f} mm/yr (PyRate's own spread {spread:.2f} mm/yr), "
          f"correlation {corr:.3f}")
    assert corr > 0.95  # same sign convention once PyRate's is turned round
    assert rms < 0.8
    assert rms < 0.4 * spread
