"""Dense stereo matching: our SGM against OpenCV StereoSGBM and CNES pandora (libsgm).

One rectified pair with a known, smooth disparity field (a multi-scale Gaussian texture
warped along the rows, disparities 5..55 px, sensor noise 2 % of the texture's
standard deviation) is matched by the three with comparable settings: census 5×5 (SGBM:
block 5, its Birchfield-Tomasi cost), 64 disparities, P1 = 8 and P2 = 32 per census
bit (SGBM: 8·5² and 32·5²), 8 paths (SGBM MODE_HH), left-right check at 1 px, speckle
filter and 3×3 median. For each the script prints the wall and CPU time (medians of --repeats
runs), the bad-1px rate (pixels whose disparity is missing or more than 1 px off, over
every pixel whose match lies inside the right image), the fraction left invalid and
the sub-pixel error (mean |error| of the pixels within 1 px), then the ratios. It
prints; it asserts nothing.

Usage: python benchmarks/bench_stereo.py [--size 1024] [--repeats 3]

Measured (768², 2 CPU cores shared with other engineers, medians of 3 interleaved runs;
StereoSGBM in MODE_HH, 8 paths like ours, runs on one thread whatever the thread count,
so the like-for-like comparison is ours on one thread):

- before (main at 2ff05c2, the matcher of 29e2890; load ~4.7): ours 1 thread 1.39 s
  wall / 0.69 s CPU, 2 threads 1.36 / 0.67; StereoSGBM 0.75 / 0.36; pandora 25.7 s.
  Ours/SGBM wall 1.79 (1 thread), 1.64 (2 threads); CPU 1.86, 1.74.
- after, three runs. ca13c02 at load ~10.6: ours 1 thread 1.27 s / 0.39 s, 2 threads
  1.48 / 0.46, StereoSGBM 0.88 / 0.26, pandora 31.2 / 10.0; ours/SGBM wall 1.37 (1
  thread), 1.69 (2), CPU 1.38, 1.74. c67ddf9 at load ~7.3: ours 0.72 / 0.48 (0.82 Mpix/s), 1.04 /
  0.50; SGBM 0.58 / 0.30 (1.02 Mpix/s); pandora 23.4 / 11.1 (0.03 Mpix/s); wall 1.17,
  1.80, CPU 1.62, 1.67. Load ~7.0, 5 runs, --no-pandora: ours 0.89 / 0.37 (0.66
  Mpix/s), 1.18 / 0.47; SGBM 0.75 / 0.30 (0.78 Mpix/s); wall 1.18, 1.62, CPU 1.29, 1.70.
  The 2ff05c2 and c67ddf9 matchers in one process, interleaved: one thread 0.42 -> 0.35
  CPU-s, wall x0.71; two threads 0.52 -> 0.41 CPU-s, wall x0.79. On this oversubscribed
  machine a second numba thread makes ours slower, not faster (its parallel regions and
  concurrent tiles wait for a share of the two cores); SGBM's MODE_HH is single-threaded.

Accuracy unchanged (same disparities bit for bit): bad-1px ours 0.00 %, StereoSGBM 3.63 %,
pandora 0.00 %; sub-pixel error 0.058 / 0.090 / 0.066 px. Our pixels more than 1 px off
are all left invalid by the left-right check; SGBM's are its uniqueness/LR/speckle
rejections.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
from scipy.ndimage import gaussian_filter, map_coordinates

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from kernels.stereo import match  # noqa: E402

NDISP = 64
P1, P2 = 8.0, 32.0


def make_pair(size: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Left, right (right(r, c - D) = left(r, c)) and the true D >= 0 of each left pixel."""
    rng = np.random.default_rng(seed)
    rows, cols = size, size
    pad = NDISP + 8
    tex = np.zeros((rows, cols + pad))
    for sigma, w in ((0.8, 1.0), (2.5, 0.6), (8.0, 0.4)):
        f = gaussian_filter(rng.standard_normal(tex.shape), sigma)
        tex += w * f / f.std()
    yy, xx = np.mgrid[0:rows, 0:cols].astype(np.float64)

    def disp(y: np.ndarray, x: np.ndarray) -> np.ndarray:
        return 30.0 + 18.0 * np.sin(x / 97.0 + 0.5) * np.cos(y / 131.0) + 5.0 * np.sin(
            (x + y) / 41.0)

    left = map_coordinates(tex, [yy, xx + pad], order=3)
    # right(r, x) = left(r, c) with x = c - D(r, c): solve for c by fixed-point iteration
    c = xx.copy()
    for _ in range(60):
        c = xx + disp(yy, c)
    right = map_coordinates(tex, [yy, c + pad], order=3, mode="nearest")
    right[c > cols - 1] = np.nan  # the source is outside the left image: unknown there
    noise = 0.02 * tex.std()
    left += noise * rng.standard_normal(left.shape)
    right += noise * rng.standard_normal(right.shape)
    right = np.where(np.isfinite(right), right, rng.standard_normal(right.shape))
    scale = lambda a: np.clip((a - tex.mean()) / tex.std() * 40 + 128, 0, 255)  # noqa: E731
    return (scale(left).astype(np.float32), scale(right).astype(np.float32),
            disp(yy, xx))


def score(d: np.ndarray, truth: np.ndarray) -> tuple[float, float, float]:
    """Bad-1px rate, invalid fraction and sub-pixel error over the evaluated pixels."""
    cols = truth.shape[1]
    xx = np.arange(cols)[None, :]
    evaluate = (xx - truth >= 8) & (xx < cols - 8)
    evaluate[:8] = False
    evaluate[-8:] = False
    err = np.abs(d - truth)[evaluate]
    valid = np.isfinite(err)
    good = valid & (err <= 1.0)
    return float(1 - good.mean()), float(1 - valid.mean()), float(err[good].mean())


def ours(left: np.ndarray, right: np.ndarray) -> np.ndarray:
    res = match(left, right, -(NDISP - 1), 0, cost="census", window=5, p1=P1, p2=P2,
                subpixel="equiangular", speckle_size=100, tile=512, overlap=32)
    return -res.disparity  # our convention: right column = left column + d


def sgbm(left: np.ndarray, right: np.ndarray) -> np.ndarray:
    import cv2

    block = 5
    m = cv2.StereoSGBM_create(minDisparity=0, numDisparities=NDISP, blockSize=block,
                              P1=int(P1 * block * block), P2=int(P2 * block * block),
                              disp12MaxDiff=1, uniquenessRatio=10, speckleWindowSize=100,
                              speckleRange=2, mode=cv2.STEREO_SGBM_MODE_HH)
    raw = m.compute(left.astype(np.uint8), right.astype(np.uint8))
    d = raw.astype(np.float32) / 16.0
    d[raw < 0] = np.nan
    return d


@contextlib.contextmanager
def _quiet():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        logging.disable(logging.CRITICAL)
        try:
            yield
        finally:
            logging.disable(logging.NOTSET)


def pandora_sgm(left: np.ndarray, right: np.ndarray,
                folder: Path) -> tuple[np.ndarray, float, float]:
    """Pandora with its libsgm plugin; returns the disparity, the wall and the CPU time
    of the run itself (image files are written before the clock starts)."""
    import pandora
    import rasterio
    from pandora import check_configuration
    from pandora.img_tools import create_dataset_from_inputs
    from pandora.state_machine import PandoraMachine

    for name, a in (("left", left), ("right", right)):
        with rasterio.open(folder / f"{name}.tif", "w", driver="GTiff", width=a.shape[1],
                           height=a.shape[0], count=1, dtype="float32") as ds:
            ds.write(a, 1)
    with _quiet():
        pandora.import_plugin()
        user = {
            "input": {"left": {"img": str(folder / "left.tif"), "disp": [-(NDISP - 1), 0],
                               "nodata": "NaN"},
                      "right": {"img": str(folder / "right.tif"), "nodata": "NaN"}},
            "pipeline": {
                "matching_cost": {"matching_cost_method": "census", "window_size": 5,
                                  "subpix": 1},
                "optimization": {"optimization_method": "sgm",
                                 "penalty": {"P1": P1, "P2": P2,
                                             "penalty_method": "sgm_penalty"}},
                "disparity": {"disparity_method": "wta", "invalid_disparity": "NaN"},
                "refinement": {"refinement_method": "vfit"},
                "filter": {"filter_method": "median", "filter_size": 3},
                "validation": {"validation_method": "cross_checking_accurate",
                               "cross_checking_threshold": 1.0},
            },
        }
        t0, c0 = time.perf_counter(), time.process_time()
        machine = PandoraMachine()
        cfg = check_configuration.check_conf(user, machine)
        img_l = create_dataset_from_inputs(cfg["input"]["left"])
        cfg["input"]["right"]["disp"] = [0, NDISP - 1]
        img_r = create_dataset_from_inputs(cfg["input"]["right"])
        left_ds, _ = pandora.run(machine, img_l, img_r, cfg)
        elapsed, cpu = time.perf_counter() - t0, time.process_time() - c0
    # pandora writes invalid_disparity (NaN) where its validity mask says invalid
    d = left_ds["disparity_map"].values.astype(np.float32)
    return -d, elapsed, cpu


def _timed(func, *args):
    """Result, wall time and CPU time (all threads of the process) of one call."""
    c0, t0 = time.process_time(), time.perf_counter()
    out = func(*args)
    return out, time.perf_counter() - t0, time.process_time() - c0


def main() -> None:
    import cv2
    import numba

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=1024, help="Image side, pixels.")
    ap.add_argument("--repeats", type=int, default=3, help="Runs per matcher.")
    ap.add_argument("--threads", default=f"1,{numba.config.NUMBA_NUM_THREADS}",
                    help="Comma-separated numba thread counts to run ours with "
                    "(default: 1 and all).")
    ap.add_argument("--no-pandora", action="store_true", help="Skip pandora.")
    args = ap.parse_args()
    threads = sorted({int(t) for t in args.threads.split(",")})

    left, right, truth = make_pair(args.size)
    small = make_pair(96, seed=1)
    for n in threads:  # compile (numba cache) outside the clock
        numba.set_num_threads(n)
        ours(small[0], small[1])
    mpix = args.size * args.size / 1e6
    print(f"pair {args.size}x{args.size} ({mpix:.2f} Mpix), {NDISP} disparities, "
          f"true disparity {truth.min():.1f}..{truth.max():.1f} px, "
          f"{os.cpu_count()} CPU(s), load average {os.getloadavg()[0]:.1f}, median of "
          f"{args.repeats} interleaved run(s); OpenCV {cv2.__version__} "
          f"(StereoSGBM MODE_HH runs on one thread; cv2.getNumThreads() = "
          f"{cv2.getNumThreads()})")
    # interleaved repeats: every matcher sees the same load of the shared machine
    runs: dict[str, list[tuple[float, float]]] = {}
    outs: dict[str, np.ndarray] = {}
    matchers = [(f"ours, {n} thread(s)", ours, n) for n in threads]
    matchers.append(("OpenCV StereoSGBM", sgbm, None))
    for _ in range(args.repeats):
        for name, func, n in matchers:
            if n is not None:
                numba.set_num_threads(n)
            outs[name], wall, cpu = _timed(func, left, right)
            runs.setdefault(name, []).append((wall, cpu))
    results: dict[str, tuple[float, float, tuple[float, float, float]]] = {
        name: (statistics.median(w for w, _ in r), statistics.median(c for _, c in r),
               score(outs[name], truth)) for name, r in runs.items()}
    if not args.no_pandora:
        times = []
        with tempfile.TemporaryDirectory() as tmp:
            for _ in range(args.repeats):
                d, t, c = pandora_sgm(left, right, Path(tmp))
                times.append((t, c))
        results["pandora + libsgm"] = (statistics.median(t for t, _ in times),
                                       statistics.median(c for _, c in times),
                                       score(d, truth))

    # Mpix per second of wall time, and per CPU second (all threads): on a shared
    # machine the second is the steadier of the two
    print(f"{'matcher':<22} {'wall s':>7} {'cpu s':>7} {'Mpix/s':>7} {'Mpix/cpu-s':>10} "
          f"{'bad-1px':>8} {'invalid':>8} {'subpix err':>10}")
    for name, (t, c, (bad, inv, sub)) in results.items():
        print(f"{name:<22} {t:7.2f} {c:7.2f} {mpix / t:7.2f} {mpix / c:10.2f} {bad:8.2%} "
              f"{inv:8.2%} {sub:10.3f}")
    sg = runs["OpenCV StereoSGBM"]
    _, _, (bad_sg, _, sub_sg) = results["OpenCV StereoSGBM"]
    for name, r in runs.items():
        if name.startswith("ours"):
            wall = statistics.median(a[0] / b[0] for a, b in zip(r, sg, strict=True))
            cpu = statistics.median(a[1] / b[1] for a, b in zip(r, sg, strict=True))
            _, _, (bad, _, sub) = results[name]
            print(f"{name} / StereoSGBM: wall time {wall:.2f}, CPU time {cpu:.2f} (medians "
                  f"of the per-run ratios); bad-1px {bad:.2%} vs {bad_sg:.2%}, sub-pixel "
                  f"error ours/theirs {sub / sub_sg:.2f}")
    if "pandora + libsgm" in results:
        t_p, c_p = results["pandora + libsgm"][:2]
        for name in runs:
            if name.startswith("ours"):
                print(f"{name} / pandora: wall time {results[name][0] / t_p:.2f}, CPU time "
                      f"{results[name][1] / c_p:.2f}")


if __name__ == "__main__":
    main()
