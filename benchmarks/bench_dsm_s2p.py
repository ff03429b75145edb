"""DSM-OPT on the real s2p Pléiades pair, against s2p's DSM of it (and CARS's, if given).

The pair (La Réunion, 2013-06-29, two 1024-pixel Pléiades 1B crops with their RPC in
the TIFF tag) and s2p's DSM of it come from the shared data folder (they may not be
copied into the project): ``pleiades/s2p_pair``. Our DSM is made with no option
(``gdm dsm run img_01.tif img_02.tif --out DIR``) unless ``--ours DIR`` names products
already made. Every DSM is compared on s2p's grid (UTM 40S, 0.5 m; ours is made on the
same grid by default, others are resampled bilinearly):

- median and NMAD (1.4826 MAD) of the difference to s2p's DSM, over the cells both
  have;
- coverage: the fraction of s2p's valid cells that have a height;
- roughness: on the 12 smoothest 24×24-cell patches of the scene (chosen on a 5×5
  median of s2p's DSM, where a plane fits best), the standard deviation of each DSM
  about its own best-fitting plane, median over the patches: the "orange peel".

CARS (CNES, ``pip install cars==1.3.0``) must live in a virtual environment of its own
(its pins clash with the project's): ``--cars-venv VENV`` runs ``VENV/bin/cars`` on the
pair with its default pipeline. CARS needs an initial elevation to intersect the
footprints of these small crops (it stops with "The two envelopes do not intersect"
without one); it is given a constant DEM at the median height of the pair's sparse
matches from our run (ours needs none). CARS writes heights above the EGM96 geoid on a
0.8 m grid here: its median difference holds the geoid undulation, and its resampling
to s2p's 0.5 m grid smooths it (its roughness is not comparable one to one).

``--triplet DIR`` compares a triplet instead: DIR is s2p's test data folder (its
``input_triplet/img_01.tif`` .. ``img_03.tif``, Pléiades crops with RPC tags, and
``expected_output/triplet/dsm.tif``, s2p's DSM of them; s2p is AGPL: its data are read
from where they lie, never copied into the project), or the environment variable
``GDM_S2P_TESTDATA``. Our fused DSM is made with no option (``gdm dsm run img_01.tif
img_02.tif img_03.tif --out DIR``), each pair alone likewise (two images), and the fused
DSM once more without the alignment of the pairs (``fusion_align=False``), all compared
with s2p's DSM as above (s2p's is computed on the ROI of its test configuration).

Usage: python benchmarks/bench_dsm_s2p.py [--ours DIR] [--cars DSM.tif | --cars-venv VENV]
[--keep DIR] [--triplet DIR]. It prints; it asserts nothing.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import rasterio
from rasterio.warp import Resampling, reproject
from scipy.ndimage import median_filter

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.shared_data import require_shared_data  # noqa: E402

PATCH = 24


def on_grid(path: Path, like: Path) -> np.ndarray:
    """A DSM on the grid of ``like`` (bilinear; nodata -> NaN)."""
    with rasterio.open(like) as ref:
        shape, transform, crs = ref.shape, ref.transform, ref.crs
    with rasterio.open(path) as src:
        a = src.read(1).astype(np.float32)
        if src.nodata is not None and np.isfinite(src.nodata):
            a[a == src.nodata] = np.nan
        if src.transform == transform and src.crs == crs and a.shape == shape:
            return a
        out = np.full(shape, np.nan, np.float32)
        reproject(a, out, src_transform=src.transform, src_crs=src.crs, src_nodata=np.nan,
                  dst_transform=transform, dst_crs=crs, dst_nodata=np.nan,
                  resampling=Resampling.bilinear)
        return out


def plane_std(z: np.ndarray) -> float:
    """Standard deviation of z about its least-squares plane (NaN ignored)."""
    yy, xx = np.mgrid[0:z.shape[0], 0:z.shape[1]]
    ok = np.isfinite(z)
    if ok.sum() < 0.8 * z.size:
        return np.nan
    a = np.column_stack([np.ones(ok.sum()), xx[ok], yy[ok]])
    coef = np.linalg.lstsq(a, z[ok], rcond=None)[0]
    return float(np.std(z[ok] - a @ coef))


def smooth_patches(ref: np.ndarray, n: int = 12) -> list[tuple[int, int]]:
    """Corners of the n patches where the median-filtered reference is most planar."""
    smooth = median_filter(np.nan_to_num(ref, nan=float(np.nanmedian(ref))), 5)
    smooth[~np.isfinite(ref)] = np.nan
    scores = []
    for r in range(0, ref.shape[0] - PATCH, PATCH // 2):
        for c in range(0, ref.shape[1] - PATCH, PATCH // 2):
            z = smooth[r:r + PATCH, c:c + PATCH]
            if np.isfinite(z).mean() >= 0.9:
                scores.append((plane_std(z), r, c))
    scores.sort()
    chosen: list[tuple[int, int]] = []
    for _, r, c in scores:  # no two overlapping patches
        if all(abs(r - r2) >= PATCH or abs(c - c2) >= PATCH for r2, c2 in chosen):
            chosen.append((r, c))
        if len(chosen) == n:
            break
    return chosen


def compare(name: str, dsm: np.ndarray, ref: np.ndarray, patches: list[tuple[int, int]]
            ) -> dict:
    both = np.isfinite(dsm) & np.isfinite(ref)
    diff = dsm[both] - ref[both]
    med = float(np.median(diff))
    rough = [plane_std(dsm[r:r + PATCH, c:c + PATCH]) for r, c in patches]
    return {"name": name, "median": med,
            "nmad": float(1.4826 * np.median(np.abs(diff - med))),
            "coverage": float(both.sum() / np.isfinite(ref).sum()),
            "roughness": float(np.nanmedian(rough))}


def run_cars(venv: Path, folder: Path, ours: Path, work: Path) -> Path:
    """CARS's DSM of the pair (default pipeline, a constant initial elevation)."""
    import json

    from rasterio.transform import from_origin

    report = json.loads((ours / "report.json").read_text())
    height = 0.5 * (report["sparse"]["p0.5_m"] + report["sparse"]["p99.5_m"])
    with rasterio.open(ours / "dsm.tif") as ds:
        from rasterio.warp import transform_bounds

        w, s, e, n = transform_bounds(ds.crs, "EPSG:4326", *ds.bounds)
    work.mkdir(parents=True)
    dem = work / "initial_elevation.tif"
    res = 0.0005
    nx, ny = int((e - w + 0.04) / res) + 1, int((n - s + 0.04) / res) + 1
    with rasterio.open(dem, "w", driver="GTiff", width=nx, height=ny, count=1,
                       dtype="float32", crs="EPSG:4326",
                       transform=from_origin(w - 0.02, n + 0.02, res, res)) as ds:
        ds.write(np.full((ny, nx), height, np.float32), 1)
    config = {"input": {"sensors": {"0": {"image": str(folder / "img_01.tif")},
                                    "1": {"image": str(folder / "img_02.tif")}},
                        "pairing": [["0", "1"]], "initial_elevation": {"dem": str(dem)}},
              "output": {"directory": str(work / "out")}}
    (work / "config.json").write_text(json.dumps(config, indent=1))
    subprocess.run([str(venv / "bin" / "cars"), str(work / "config.json")], check=True,
                   stdout=subprocess.DEVNULL)
    return work / "out" / "dsm" / "dsm.tif"


def _gdm_run(images: list[Path], out: Path) -> float:
    gdm = Path(sys.executable).with_name("gdm")
    t0 = time.perf_counter()
    subprocess.run([str(gdm), "dsm", "run", *map(str, images), "--out", str(out), "-q"],
                   check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - t0


def triplet(data: Path, keep: Path | None) -> None:
    """The s2p triplet: each pair alone, fused without and with alignment, against s2p."""
    from dsm_opt.config import DsmConfig
    from dsm_opt.pipeline import run

    folder = data / "input_triplet" if (data / "input_triplet").is_dir() else data
    ref_path = data / "expected_output" / "triplet" / "dsm.tif"
    if not ref_path.is_file():
        ref_path = folder.parent / "expected_output" / "triplet" / "dsm.tif"
    images = [folder / f"img_0{k}.tif" for k in (1, 2, 3)]
    if not (ref_path.is_file() and all(p.is_file() for p in images)):
        sys.exit(f"no s2p triplet in {data} (img_01..03.tif, expected_output/triplet/dsm.tif)")
    with tempfile.TemporaryDirectory() as tmp:
        root = keep or Path(tmp)
        root.mkdir(parents=True, exist_ok=True)
        runs: list[tuple[str, Path, float]] = []
        out = root / "fused"
        runs.append(("fused (no option)", out, _gdm_run(images, out)))
        for a, b in ((0, 1), (0, 2), (1, 2)):
            out = root / f"pair_{a + 1}{b + 1}"
            runs.append((f"pair {a + 1}-{b + 1}", out, _gdm_run([images[a], images[b]], out)))
        out = root / "fused_unaligned"
        t0 = time.perf_counter()
        run(DsmConfig(images=images, out=out, fusion_align=False))
        runs.append(("fused, not aligned", out, time.perf_counter() - t0))
        ref = on_grid(ref_path, ref_path)
        patches = smooth_patches(ref)
        rows = [compare("s2p (reference)", ref, ref, patches) | {"bh": "", "seconds": 0.0}]
        for name, out, sec in runs:
            rep = json.loads((out / "report.json").read_text())
            bh = "/".join(f"{p['bh']:.2f}" for p in rep["pairs"])
            rows.append(compare(name, on_grid(out / "dsm.tif", ref_path), ref, patches)
                        | {"bh": bh, "seconds": sec})
        fusion = json.loads((root / "fused" / "report.json").read_text())["fusion"]
    print(f"s2p triplet, against s2p's DSM ({ref.shape[1]}x{ref.shape[0]} cells of 0.5 m, "
          f"{np.isfinite(ref).mean():.1%} valid); roughness: median over {len(patches)} "
          f"smooth {PATCH}x{PATCH}-cell patches")
    print(f"{'DSM':<20} {'B/H':>14} {'median m':>9} {'NMAD m':>7} {'coverage':>9} "
          f"{'roughness m':>12} {'seconds':>8}")
    for r in rows:
        print(f"{r['name']:<20} {r['bh']:>14} {r['median']:+9.3f} {r['nmad']:7.3f} "
              f"{r['coverage']:9.1%} {r['roughness']:12.3f} {r['seconds']:8.1f}")
    al = fusion.get("alignment", {})
    for pair, a in al.get("pairs", {}).items():
        print(f"alignment of pair {pair} on {al['reference']}: median difference "
              f"{a['median_difference_m']:+.3f} m, plane {a['plane_m']} m, NMAD after "
              f"{a['nmad_after_m']:.3f} m ({a['samples']} cells)")
    print(f"cells by number of pairs {fusion['cells_by_pairs']}, rejected pair heights "
          f"{fusion['rejected_pair_heights']}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--ours", type=Path, help="Products made already (skip our run).")
    ap.add_argument("--cars", type=Path, help="A CARS DSM of the pair to compare too.")
    ap.add_argument("--cars-venv", type=Path, help="Run CARS from this virtual environment.")
    ap.add_argument("--keep", type=Path, help="Write our products here (default: temporary).")
    ap.add_argument("--triplet", type=Path, nargs="?", const=Path(""),
                    help="Compare the s2p triplet: s2p's tests/data folder (default: "
                    "$GDM_S2P_TESTDATA).")
    args = ap.parse_args()
    if args.triplet is not None:
        data = args.triplet if str(args.triplet) else Path(os.environ.get(
            "GDM_S2P_TESTDATA", ""))
        if not str(data):
            sys.exit("--triplet: give s2p's tests/data folder or set GDM_S2P_TESTDATA")
        triplet(data, args.keep)
        return
    folder = require_shared_data("pleiades", "s2p_pair")
    ref_path = folder / "s2p_expected_dsm.tif"
    with tempfile.TemporaryDirectory() as tmp:
        ours = args.ours
        seconds = None
        if ours is None:
            ours = args.keep or Path(tmp) / "ours"
            gdm = Path(sys.executable).with_name("gdm")
            t0 = time.perf_counter()
            subprocess.run([str(gdm), "dsm", "run", str(folder / "img_01.tif"),
                            str(folder / "img_02.tif"), "--out", str(ours), "-q"], check=True)
            seconds = time.perf_counter() - t0
        cars = args.cars
        if args.cars_venv is not None:
            t0 = time.perf_counter()
            cars = run_cars(args.cars_venv, folder, ours, Path(tmp) / "cars")
            print(f"CARS run {time.perf_counter() - t0:.1f} s")
        ref = on_grid(ref_path, ref_path)
        patches = smooth_patches(ref)
        rows = [compare("s2p (reference)", ref, ref, patches),
                compare("ours", on_grid(ours / "dsm.tif", ref_path), ref, patches)]
        if cars is not None:
            rows.append(compare("CARS", on_grid(cars, ref_path), ref, patches))
    print(f"s2p pair, against s2p's DSM ({ref.shape[1]}x{ref.shape[0]} cells of 0.5 m, "
          f"{np.isfinite(ref).mean():.1%} valid); roughness: median over {len(patches)} "
          f"smooth {PATCH}x{PATCH}-cell patches" + (f"; our run {seconds:.1f} s" if seconds
                                                   else ""))
    print(f"{'DSM':<18} {'median m':>9} {'NMAD m':>7} {'coverage':>9} {'roughness m':>12}")
    for r in rows:
        print(f"{r['name']:<18} {r['median']:+9.3f} {r['nmad']:7.3f} {r['coverage']:9.1%} "
              f"{r['roughness']:12.3f}")


if __name__ == "__main__":
    main()
