"""A full Sentinel-2 tile (10980 x 10980 px) through GDM-OPT: time and peak memory.

Writes two uint16 GeoTIFFs of a full 10 m tile (a periodic fractal texture, the later
image moved by a known sub-pixel shift), runs ``gdm opt run`` on them in a child
process and prints its wall time, windows/s and peak resident memory next to the size
of one image held as float64 (which the block-wise reader must never need).

    python benchmarks/bench_full_tile.py [--size 10980] [--step 16] [--keep DIR]
"""

from __future__ import annotations

import argparse
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import rasterio
from affine import Affine

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from simulators.opt import fractal_texture, warp_periodic  # noqa: E402

TILE = 2048


def write_tile(path: Path, tile: np.ndarray, size: int, date: str) -> None:
    profile = {"driver": "GTiff", "dtype": "uint16", "count": 1, "width": size,
               "height": size, "crs": "EPSG:32631",
               "transform": Affine(10.0, 0, 600000.0, 0, -10.0, 5000000.0), "nodata": 0,
               "tiled": True, "blockxsize": 512, "blockysize": 512, "compress": "deflate"}
    dn = np.clip(4000 + 600 * tile, 1, 65535).astype(np.uint16)
    with rasterio.open(path, "w", **profile) as dst:
        dst.update_tags(TIFFTAG_DATETIME=f"{date[:4]}:{date[4:6]}:{date[6:]} 10:30:00")
        for r in range(0, size, TILE):
            for c in range(0, size, TILE):
                h = min(TILE, size - r)
                w = min(TILE, size - c)
                dst.write(dn[:h, :w], 1, window=rasterio.windows.Window(c, r, w, h))


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--size", type=int, default=10980)
    p.add_argument("--step", type=int, default=16)
    p.add_argument("--shift", type=float, nargs=2, default=(0.4, -0.7), help="d_row d_col px")
    p.add_argument("--keep", type=Path, help="keep inputs/products in this folder")
    a = p.parse_args(argv)

    work = a.keep or Path(tempfile.mkdtemp(prefix="gdm-fulltile-"))
    work.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(5)
    tex = fractal_texture((TILE, TILE), 2.0, 0.3, rng).astype(np.float32)
    moved = warp_periodic(tex, a.shift[0], a.shift[1]).astype(np.float32)
    first, second = work / "T31TGL_20230401_B04.tif", work / "T31TGL_20230501_B04.tif"
    t0 = time.perf_counter()
    write_tile(first, tex, a.size, "20230401")
    write_tile(second, moved, a.size, "20230501")
    t_write = time.perf_counter() - t0

    out = work / "products"
    cmd = [sys.executable, "-m", "gdm.cli", "opt", "run", str(first), str(second), "--out",
           str(out), "--step", str(a.step), "-q"]
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    wall = time.perf_counter() - t0
    peak_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024.0
    with rasterio.open(out / "east.tif") as e, rasterio.open(out / "north.tif") as n:
        east = e.read(1) / 10.0
        north = n.read(1) / 10.0
        windows = e.width * e.height
    err = np.hypot(east - a.shift[1], -north - a.shift[0])
    ok = np.isfinite(err)
    float64_mb = a.size * a.size * 8 / 2**20
    print(f"bench_full_tile: {a.size}x{a.size} px, step {a.step}, {windows} windows")
    print(f"  inputs written in {t_write:.1f} s; gdm opt run: {wall:.1f} s "
          f"({windows / wall:.0f} windows/s end to end)")
    print(f"  peak RSS of the job: {peak_mb:.0f} MiB (one image as float64: {float64_mb:.0f} MiB)")
    print(f"  RMSE vs the known shift: {np.sqrt(np.mean(err[ok] ** 2)):.4f} px, "
          f"valid {ok.mean():.1%}")
    print(f"  files in {work}")


if __name__ == "__main__":
    main()
