"""Sub-pixel correlation: our correlator against scikit-image and OpenCV on the same data.

Images: a periodic fractal texture (the GDM-OPT simulator's) and the same texture
warped by a smooth sub-pixel field of up to ``--amplitude`` pixels, with independent
noise at ``--snr`` dB. Every method measures the same windows (``--window`` px, every
``--step`` px, search ``±--search`` px) and is compared with the true field at the
window centres.

- ours: ``kernels.pyramid.correlate_grid`` (frequency domain, pyFFTW, continuous peak);
- scikit-image: ``phase_cross_correlation(upsample_factor=100)`` per window;
- OpenCV: ``matchTemplate`` (TM_CCOEFF_NORMED) over the search area + parabolic peak.

It prints windows/s, RMSE, the share of windows measured, and the speed ratio to
OpenCV (median of ``--repeat`` runs). It prints figures; it asserts nothing.

    python benchmarks/bench_correlation.py [--size 1024] [--snr 30] [--repeat 3]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from kernels.pyramid import correlate_grid, window_grid  # noqa: E402
from simulators.opt import fractal_texture, warp_periodic  # noqa: E402


def make_pair(size: int, amplitude: float, snr_db: float, seed: int
              ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Reference, secondary, and the true (d_row, d_col) field in pixels."""
    rng = np.random.default_rng(seed)
    tex = fractal_texture((size, size), 2.0, 0.3, rng)
    y, x = np.mgrid[0:size, 0:size] / size
    d_row = amplitude * (0.6 * np.sin(2 * np.pi * (x + 0.3)) + 0.4 * np.cos(2 * np.pi * 2 * y))
    d_col = amplitude * (0.5 * np.cos(2 * np.pi * (y - 0.1)) + 0.5 * np.sin(2 * np.pi * 2 * x))
    ref = tex
    sec = warp_periodic(tex, d_row, d_col)
    sigma = 10 ** (-snr_db / 20.0)
    ref = (ref + rng.normal(0, sigma * ref.std(), ref.shape)).astype(np.float32)
    sec = (sec + rng.normal(0, sigma * sec.std(), sec.shape)).astype(np.float32)
    return ref, sec, d_row, d_col


def ours(ref: np.ndarray, sec: np.ndarray, rows: np.ndarray, cols: np.ndarray, window: int,
         search: int, grid) -> tuple[np.ndarray, np.ndarray]:
    res = correlate_grid(ref, sec, grid, window, search)
    return res.drow.ravel(), res.dcol.ravel()


def skimage_pcc(ref, sec, rows, cols, window, search, grid):
    from skimage.registration import phase_cross_correlation

    h = window // 2
    dr = np.full(rows.size, np.nan)
    dc = np.full(rows.size, np.nan)
    for k, (r, c) in enumerate(zip(rows, cols, strict=True)):
        a = ref[r - h:r + h, c - h:c + h]
        b = sec[r - h:r + h, c - h:c + h]
        shift, _, _ = phase_cross_correlation(a, b, upsample_factor=100)
        # `shift` registers `b` onto `a`: the feature moved by -shift.
        if abs(shift[0]) <= search and abs(shift[1]) <= search:
            dr[k], dc[k] = -shift[0], -shift[1]
    return dr, dc


def _parabola(m1: float, m0: float, p1: float) -> float:
    den = m1 - 2 * m0 + p1
    return 0.5 * (m1 - p1) / den if den < 0 else 0.0


def opencv_ncc(ref, sec, rows, cols, window, search, grid):
    import cv2

    h = window // 2
    s = search
    dr = np.full(rows.size, np.nan)
    dc = np.full(rows.size, np.nan)
    for k, (r, c) in enumerate(zip(rows, cols, strict=True)):
        tpl = ref[r - h:r + h, c - h:c + h]
        area = sec[r - h - s:r + h + s, c - h - s:c + h + s]
        cc = cv2.matchTemplate(area, tpl, cv2.TM_CCOEFF_NORMED)
        _, _, _, (px, py) = cv2.minMaxLoc(cc)
        if 0 < py < cc.shape[0] - 1 and 0 < px < cc.shape[1] - 1:
            fy = _parabola(cc[py - 1, px], cc[py, px], cc[py + 1, px])
            fx = _parabola(cc[py, px - 1], cc[py, px], cc[py, px + 1])
            dr[k] = py - s + fy
            dc[k] = px - s + fx
    return dr, dc


def measure(name: str, func: Callable, args: tuple, truth: tuple[np.ndarray, np.ndarray],
            repeat: int) -> dict:
    times = []
    out = None
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = func(*args)
        times.append(time.perf_counter() - t0)
    assert out is not None
    dr, dc = (np.asarray(v, np.float64) for v in out)
    ok = np.isfinite(dr) & np.isfinite(dc)
    err2 = (dr - truth[0]) ** 2 + (dc - truth[1]) ** 2
    n = dr.size
    t = statistics.median(times)
    return {"name": name, "windows_per_s": n / t, "seconds": t,
            "rmse": float(np.sqrt(err2[ok].mean())) if ok.any() else float("nan"),
            "valid": float(ok.mean()), "n": n}


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--size", type=int, default=1024)
    p.add_argument("--window", type=int, default=32)
    p.add_argument("--step", type=int, default=8)
    p.add_argument("--search", type=int, default=5)
    p.add_argument("--amplitude", type=float, default=4.0, help="field amplitude, pixels")
    p.add_argument("--snr", type=float, default=30.0)
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--seed", type=int, default=3)
    p.add_argument("--skip-skimage", action="store_true", help="skip the slow scikit-image run")
    a = p.parse_args(argv)

    ref, sec, d_row, d_col = make_pair(a.size, a.amplitude, a.snr, a.seed)
    grid = window_grid(a.size, a.size, a.window, a.step, margin=a.search + 1)
    rows, cols = grid.centres()
    truth = (d_row[rows, cols], d_col[rows, cols])
    args = (ref, sec, rows, cols, a.window, a.search, grid)
    # Warm-up: compile Numba kernels and plan FFTs outside the timed runs.
    ours(*args)

    results = [measure("ours (freq, pyFFTW)", ours, args, truth, a.repeat),
               measure("OpenCV matchTemplate NCC+parabola", opencv_ncc, args, truth, a.repeat)]
    if not a.skip_skimage:
        results.append(measure("scikit-image phase_cross_correlation x100", skimage_pcc, args,
                               truth, 1))
    cv_speed = results[1]["windows_per_s"]
    print(f"bench_correlation: {a.size}x{a.size} px, {rows.size} windows of {a.window} px "
          f"every {a.step} px, search ±{a.search} px, field up to {a.amplitude} px, "
          f"{a.snr:g} dB, cores={os.cpu_count()}, median of {a.repeat}")
    print(f"{'method':44s} {'windows/s':>11s} {'vs OpenCV':>9s} {'RMSE px':>8s} {'valid':>6s}")
    for r in results:
        print(f"{r['name']:44s} {r['windows_per_s']:11.0f} {r['windows_per_s'] / cv_speed:8.2f}x "
              f"{r['rmse']:8.4f} {r['valid']:6.1%}")


if __name__ == "__main__":
    main()
