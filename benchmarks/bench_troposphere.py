"""Weather-model delay: ours against PyAPS (pyaps3) and an independent fine integration.

The same ERA5 pressure-level column (37 levels, written in the CDS NetCDF layout by the
simulator from a layered atmosphere) goes through

- ours: :func:`insar.troposphere.read_era5` + :class:`insar.troposphere.Era5`;
- PyAPS's processing functions (``pyaps3.processor.intP2H`` and ``PTV2del``, then its
  cubic height interpolation), fed the arrays our reader gives (PyAPS reads GRIB only);
- the simulator's truth: the refractivity of the layered atmosphere integrated on 1 m
  steps (dry hydrostatic, constant gravity).

Printed: zenith delays at terrain heights, and the delay differences between heights
(what an interferogram sees), for three atmospheres (hot and humid, temperate, cold and
dry). A benchmark prints its figures; it asserts nothing.

    python benchmarks/bench_troposphere.py
"""

from __future__ import annotations

import datetime as dt
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from insar.troposphere import Era5, read_era5  # noqa: E402
from simulators.sar import Layered, _write_era5  # noqa: E402

HEIGHTS = np.array([0.0, 500.0, 1000.0, 2000.0, 3000.0])
LAT, LON = 44.25, 4.25


def pyaps_delay(path: Path, heights: np.ndarray) -> np.ndarray | None:
    """PyAPS's delay of the column at (LAT, LON) from the arrays of an ERA5 file."""
    try:
        import scipy.interpolate as si
        from pyaps3 import processor
    except ImportError:
        return None
    d = read_era5(path)
    cdic = processor.initconst()
    k = int(np.argmin(np.abs(d["lat"] - LAT)))
    m = int(np.argmin(np.abs(d["lon"] - LON)))
    order = np.argsort(d["levels_pa"])  # PyAPS lists 1 hPa first
    lvls = d["levels_pa"][order]
    gph = d["z"][0][order][:, k:k + 1, m:m + 1] / cdic["g"]
    tmp = d["t"][0][order][:, k:k + 1, m:m + 1]
    vpr = d["e"][0][order][:, k:k + 1, m:m + 1]
    hgt = np.linspace(cdic["minAltP"], gph.max().round(), cdic["nhgt"])
    pi, ti, vi = processor.intP2H(lvls, hgt, gph, tmp, vpr, cdic)
    ddry, dwet = processor.PTV2del(pi, ti, vi, hgt, cdic)
    fn = si.interp1d(hgt, (ddry + dwet)[0, 0], kind="cubic")
    return fn(heights)


def main() -> None:
    """Print the comparison table."""
    cases = {"hot, humid (300 K, 16 g/kg)": Layered(100500.0, 300.0, 0.016),
             "temperate (288 K, 8 g/kg)": Layered(101325.0, 288.0, 0.008),
             "cold, dry (272 K, 2.5 g/kg)": Layered(102000.0, 272.0, 0.0025)}
    with tempfile.TemporaryDirectory() as tmp:
        print(f"heights (m): {HEIGHTS.tolist()}")
        for name, atm in cases.items():
            path = Path(tmp) / f"{abs(hash(name))}.nc"
            _write_era5(path, dt.date(2023, 6, 1), atm, np.array([44.5, 44.25, 44.0]),
                        np.array([4.0, 4.25, 4.5]), 6)
            ours = Era5([path]).zenith_delay(dt.date(2023, 6, 1), np.full(HEIGHTS.size, LAT),
                                             np.full(HEIGHTS.size, LON), HEIGHTS)
            truth = atm.zenith_delay(HEIGHTS)
            peer = pyaps_delay(path, HEIGHTS)
            print(f"\n{name}")
            print("  ZTD (m)        truth " + " ".join(f"{v:.4f}" for v in truth))
            print("                 ours  " + " ".join(f"{v:.4f}" for v in ours))
            if peer is not None:
                print("                 PyAPS " + " ".join(f"{v:.4f}" for v in peer))
            dt_, do = np.diff(truth) * 1000, np.diff(ours) * 1000
            print("  step delay (mm) truth " + " ".join(f"{v:8.2f}" for v in dt_))
            print("                  ours  " + " ".join(f"{v:8.2f}" for v in do)
                  + f"   max |ours - truth| {np.max(np.abs(do - dt_)):.2f} mm")
            if peer is not None:
                dp = np.diff(peer) * 1000
                print("                  PyAPS " + " ".join(f"{v:8.2f}" for v in dp)
                      + f"   max |PyAPS - truth| {np.max(np.abs(dp - dt_)):.2f} mm")
        if pyaps_delay(path, HEIGHTS) is None:
            print("\npyaps3 not installed (pip install pyaps3): PyAPS rows left out")


if __name__ == "__main__":
    main()
