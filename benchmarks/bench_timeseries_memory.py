"""Peak memory of gdm sar timeseries on a stack larger than its block budget.

Writes N-date GeoTIFF interferograms (each date with its 3 next, float32 radians, with a
coherence file each) of SIZE x SIZE pixels, then runs ``gdm sar timeseries`` in a child
process with ``--block-mb`` and prints its peak RSS beside the size of the pair cube.

    .venv/bin/python benchmarks/bench_timeseries_memory.py [--dates 30 --size 1500 --block-mb 64]
"""

from __future__ import annotations

import argparse
import datetime as dt
import math
import resource
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import rasterio
from affine import Affine

ROOT = Path(__file__).resolve().parents[1]
WL = 0.0554658


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--dates", type=int, default=30)
    ap.add_argument("--size", type=int, default=1500)
    ap.add_argument("--block-mb", type=int, default=64)
    args = ap.parse_args()
    n = args.size
    tmp = Path(tempfile.mkdtemp(prefix="gdm-ts-mem-"))
    try:
        rng = np.random.default_rng(0)
        yy, xx = np.mgrid[0:n, 0:n].astype(np.float32)
        bump = np.exp(-(((yy - n / 2) / (n / 6)) ** 2 + ((xx - n / 2) / (n / 5)) ** 2))
        d0 = dt.date(2021, 1, 1)
        dates = [d0 + dt.timedelta(days=12 * k) for k in range(args.dates)]
        tr = Affine(20.0, 0, 500000.0, 0, -20.0, 5000000.0)
        pairs = [(i, j) for i in range(args.dates) for j in range(i + 1, min(args.dates, i + 4))]
        prof = {"driver": "GTiff", "width": n, "height": n, "count": 1, "dtype": "float32",
                "crs": "EPSG:32631", "transform": tr, "tiled": True, "compress": "deflate"}
        for i, j in pairs:
            disp = 0.02 * (j - i) / 30 * bump
            ph = (-4 * math.pi / WL * disp).astype(np.float32)
            name = f"{dates[i]:%Y%m%d}_{dates[j]:%Y%m%d}"
            with rasterio.open(tmp / f"ifg_{name}.tif", "w", **prof) as ds:
                ds.write(ph, 1)
                ds.update_tags(WAVELENGTH=str(WL))
            with rasterio.open(tmp / f"coh_{name}.tif", "w", **prof) as ds:
                ds.write(rng.uniform(0.5, 0.9, (n, n)).astype(np.float32), 1)
        cube = len(pairs) * n * n * 4 / 2**20
        code = ("import resource, sys; from gdm.cli import main; "
                "sys.argv = ['gdm'] + sys.argv[1:]\n"
                "try:\n    main()\nexcept SystemExit as e:\n"
                "    print('peak_rss_mib', resource.getrusage(resource.RUSAGE_SELF).ru_maxrss"
                " / 1024, flush=True); raise")
        res = subprocess.run([sys.executable, "-c", code, "sar", "timeseries", str(tmp),
                              "--out", str(tmp / "out"), "--block-mb", str(args.block_mb),
                              "-q"], capture_output=True, text=True, check=False, cwd=ROOT)
        peak = [ln for ln in res.stdout.splitlines() if ln.startswith("peak_rss_mib")]
        print(f"{args.dates} dates, {len(pairs)} pairs of {n}x{n}: pair cube {cube:.0f} MiB "
              f"(x2 with coherence), --block-mb {args.block_mb}")
        print(res.stdout.strip().splitlines()[-2] if res.returncode == 0 else res.stderr[-2000:])
        print(peak[0] if peak else "no peak figure")
        _ = resource
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
