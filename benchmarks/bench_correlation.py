"""Sub-pixel correlation: our correlator against OpenCV and scikit-image on the same data.

1. Speed and accuracy (``--size`` px): the GDM-OPT simulator's fractal texture and the
   same texture warped by a smooth field of up to ``--amplitude`` px, independent noise
   at ``--snr`` dB. Every method measures the same windows (``--window`` px every
   ``--step`` px, search ``±--search`` px); the truth at a window centre p is the
   displacement of the feature at p (``q = p + d(q)``, the field being given at the
   secondary's pixels). Windows/s are medians of ``--repeat`` runs, in one run of this
   script (the speed ratio is the figure to quote; the machine may be shared).
2. Real Sentinel-2 texture: the four T19KER and the four T50JML pairs (known shifts,
   tests/data/s2_t19ker and s2_t50jml), 32-px windows every 4 px, search ±4 px: worst
   |median bias| and RMSE (over all windows, against the known shift) per method, next to
   CNES's MEDICIS figure on the same patches (65-px windows, 16 x 16 central points).
3. The aliased texture class: amplitude spectrum k^-1.3 with field patches and roads,
   rendered 4x finer and box-averaged, gain 1.07 between dates, a smooth fault, 30 and
   20 dB (``simulators.textures.pair``).
4. Bias curves: median error against a constant true shift from -0.5 to +0.5 px every
   0.05 px on three textures (real S2 moved by Fourier phase ramps, the aliased red
   texture, the GDM-OPT simulator), for ours, the previous estimator (frequency-domain
   peak) and OpenCV; plotted into ``--plot`` (PNG).

Methods:

- ours: ``kernels.pyramid.correlate_grid`` with its defaults (frequency-domain integer
  stage with pyFFTW, image-domain Gauss-Newton refinement with quintic-spline
  interpolation and gain/offset, deformation correction);
- previous: the same integer stage refined on the continuous correlation surface
  (``refine="spectrum"``, no deformation correction), the estimator before issue 13;
- OpenCV: ``matchTemplate`` (TM_CCOEFF_NORMED) over the search area + parabolic peak;
- scikit-image: ``phase_cross_correlation(upsample_factor=100)`` per window (speed table).

It prints figures; it asserts nothing.

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
from simulators import textures as tx  # noqa: E402
from simulators.opt import fractal_texture, warp_periodic  # noqa: E402

Method = Callable[..., tuple[np.ndarray, np.ndarray]]


def make_pair(size: int, amplitude: float, snr_db: float, seed: int
              ) -> tuple[np.ndarray, np.ndarray, tx.Field]:
    """Reference, secondary, and the true field."""
    rng = np.random.default_rng(seed)
    tex = fractal_texture((size, size), 2.0, 0.3, rng)

    def func(r: np.ndarray, c: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        y, x = r / size, c / size
        return (amplitude * (0.6 * np.sin(2 * np.pi * (x + 0.3)) + 0.4 * np.cos(4 * np.pi * y)),
                amplitude * (0.5 * np.cos(2 * np.pi * (y - 0.1)) + 0.5 * np.sin(4 * np.pi * x)))

    field = tx.Field(func)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float64)
    d_row, d_col = field(yy, xx)
    sec = warp_periodic(tex, d_row, d_col)  # sec(q) = tex(q - d(q))
    sigma = 10 ** (-snr_db / 20.0)
    ref = (tex + rng.normal(0, sigma * tex.std(), tex.shape)).astype(np.float32)
    sec = (sec + rng.normal(0, sigma * sec.std(), sec.shape)).astype(np.float32)
    return ref, sec, field


def ours(ref, sec, rows, cols, window, search, grid, **kw):
    res = correlate_grid(ref, sec, grid, window, search, **kw)
    return res.drow.ravel(), res.dcol.ravel()


def previous(ref, sec, rows, cols, window, search, grid):
    return ours(ref, sec, rows, cols, window, search, grid, refine="spectrum", deform=False)


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
        if r - h - s < 0 or c - h - s < 0 or r + h + s > ref.shape[0] or c + h + s > ref.shape[1]:
            continue
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


METHODS: dict[str, Method] = {"ours": ours, "previous (spectrum peak)": previous,
                              "OpenCV matchTemplate+parabola": opencv_ncc}


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


def speed_table(a: argparse.Namespace) -> None:
    ref, sec, field = make_pair(a.size, a.amplitude, a.snr, a.seed)
    grid = window_grid(a.size, a.size, a.window, a.step, margin=a.search + 1)
    rows, cols = grid.centres()
    truth = field.truth(rows, cols)
    args = (ref, sec, rows, cols, a.window, a.search, grid)
    ours(*args)  # warm-up: compile Numba kernels and plan FFTs outside the timed runs
    previous(*args)
    results = [measure("ours", ours, args, truth, a.repeat),
               measure("OpenCV matchTemplate NCC+parabola", opencv_ncc, args, truth, a.repeat),
               measure("previous (spectrum peak)", previous, args, truth, a.repeat)]
    if not a.skip_skimage:
        results.append(measure("scikit-image phase_cross_correlation x100", skimage_pcc, args,
                               truth, 1))
    cv_speed = results[1]["windows_per_s"]
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"1. speed: {a.size}x{a.size} px, {rows.size} windows of {a.window} px every "
          f"{a.step} px, search ±{a.search} px, field up to {a.amplitude} px, {a.snr:g} dB, "
          f"cores={os.cpu_count()}, load average {load:.1f}, median of {a.repeat}")
    print(f"   {'method':44s} {'windows/s':>11s} {'vs OpenCV':>9s} {'RMSE px':>8s} {'valid':>6s}")
    for r in results:
        print(f"   {r['name']:44s} {r['windows_per_s']:11.0f} "
              f"{r['windows_per_s'] / cv_speed:8.2f}x {r['rmse']:8.4f} {r['valid']:6.1%}")


def real_table(tile: str) -> None:
    from tests.test_opt_t50jml import tile_pairs

    pairs = tile_pairs(tile)
    print(f"2. real Sentinel-2 ({tile}, 110x110 px, four known shifts), 32-px windows every 4 "
          "px, search ±4 px, RMSE over all windows: worst over the pairs and the two components")
    print(f"   {'method':44s} {'|median bias| px':>17s} {'RMSE px':>8s} {'valid':>6s}")
    for name, func in METHODS.items():
        worst_b = worst_r = 0.0
        valid = []
        for _, sr, sc, left, right in pairs:
            g = window_grid(*left.shape, 32, 4)
            rows, cols = g.centres()
            dr, dc = func(left, right, rows, cols, 32, 4, g)
            er, ec = dr - sr, dc - sc
            valid.append(np.isfinite(er).mean())
            worst_b = max(worst_b, abs(np.nanmedian(er)), abs(np.nanmedian(ec)))
            worst_r = max(worst_r, np.sqrt(np.nanmean(er**2)), np.sqrt(np.nanmean(ec**2)))
        print(f"   {name:44s} {worst_b:17.4f} {worst_r:8.4f} {min(valid):6.1%}")
    if tile == "T19KER":
        print(f"   {'CNES MEDICIS (published, 65-px windows)':44s} {'':>17s} "
              f"{'0.0014-0.0019':>13s}")
    else:
        print(f"   {'CNES MEDICIS sinc (its grids, 65-px windows)':44s} {'':>17s} "
              f"{'0.0012-0.0015':>13s}")


def aliased_table() -> None:
    print("3. aliased k^-1.3 texture with field patches and roads (4x, box-averaged), gain "
          "1.07, smooth fault, 256x256, 32-px windows every 8 px, search ±5: RMSE px")
    print(f"   {'method':44s} {'30 dB':>8s} {'20 dB':>8s}")
    rows_out = {name: [] for name in METHODS}
    for snr in (30.0, 20.0):
        ref, sec, fld = tx.pair(256, 0, snr_db=snr)
        g = window_grid(256, 256, 32, 8, margin=6)
        rows, cols = g.centres()
        tr, tc = fld.truth(rows, cols)
        for name, func in METHODS.items():
            dr, dc = func(ref, sec, rows, cols, 32, 5, g)
            rows_out[name].append(np.sqrt(np.nanmean((dr - tr) ** 2 + (dc - tc) ** 2)))
    for name, v in rows_out.items():
        print(f"   {name:44s} {v[0]:8.4f} {v[1]:8.4f}")


def bias_curves(plot: Path) -> None:
    from tests.test_subpixel_accuracy import fourier_shift_mirrored, t19ker_pairs

    shifts = np.round(np.arange(-0.5, 0.501, 0.05), 2)
    left = t19ker_pairs()[0][3]
    scene = tx.make_scene(128, 8, slope=1.3)
    aliased_ref = tx.render(scene).astype(np.float32)
    tex = fractal_texture((128, 128), 2.0, 0.3, np.random.default_rng(9))
    rng = np.random.default_rng(0)

    def real(s: float) -> tuple[np.ndarray, np.ndarray]:
        sec = fourier_shift_mirrored(left, s, -0.5 * s)
        return left, (sec + rng.normal(0, 0.01 * left.std(), sec.shape)).astype(np.float32)

    def aliased(s: float) -> tuple[np.ndarray, np.ndarray]:
        sec = tx.render(scene, tx.shift_field(s, -0.5 * s))
        return aliased_ref, (sec + rng.normal(0, 0.003 * sec.std(), sec.shape)).astype(
            np.float32)

    def simulator(s: float) -> tuple[np.ndarray, np.ndarray]:
        return tex.astype(np.float32), warp_periodic(tex, s, -0.5 * s).astype(np.float32)

    textures = {"real S2 (T19KER, Fourier shifts)": real,
                "aliased k^-1.3 (4x, box-averaged)": aliased,
                "GDM-OPT simulator": simulator}
    curves: dict[str, dict[str, np.ndarray]] = {}
    print("4. bias curves: median error (row, column) for shifts (s, -s/2), s = -0.5 .. 0.5 "
          "every 0.05 px; largest |median error| px")
    print(f"   {'texture':36s} " + " ".join(f"{m[:24]:>24s}" for m in METHODS))
    for tname, make in textures.items():
        curves[tname] = {}
        line = []
        for mname, func in METHODS.items():
            errs = []
            for s in shifts:
                ref, sec = make(float(s))
                g = window_grid(*ref.shape, 32, 8, margin=3)
                rows, cols = g.centres()
                dr, dc = func(ref, sec, rows, cols, 32, 2, g)
                errs.append((np.nanmedian(dr) - s, np.nanmedian(dc) + 0.5 * s))
            curves[tname][mname] = np.array(errs)
            line.append(np.abs(curves[tname][mname]).max())
        print(f"   {tname:36s} " + " ".join(f"{v:24.4f}" for v in line))
    _plot(curves, shifts, plot)
    print(f"   plotted: {plot}")


def _plot(curves: dict[str, dict[str, np.ndarray]], shifts: np.ndarray, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(curves), figsize=(5 * len(curves), 4), sharey=True)
    for ax, (tname, by_method) in zip(np.atleast_1d(axes), curves.items(), strict=True):
        for mname, err in by_method.items():
            ax.plot(shifts, err[:, 0], "-o", ms=3, label=f"{mname}, rows")
            ax.plot(shifts, err[:, 1], "--", lw=1, label=f"{mname}, columns")
        ax.axhspan(-0.005, 0.005, color="0.9", zorder=0)
        ax.axhline(0, color="k", lw=0.5)
        ax.set_title(tname, fontsize=10)
        ax.set_xlabel("true shift s (px); rows s, columns -s/2")
        ax.set_ylim(-0.08, 0.08)
    np.atleast_1d(axes)[0].set_ylabel("median error (px)")
    np.atleast_1d(axes)[0].legend(fontsize=7, loc="lower left")
    fig.suptitle("GDM-OPT bias curves (grey band: ±0.005 px)")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


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
    p.add_argument("--speed-only", action="store_true", help="only the speed table")
    p.add_argument("--plot", type=Path, default=Path("bench-output/bias_curves.png"))
    a = p.parse_args(argv)
    speed_table(a)
    if a.speed_only:
        return
    real_table("T19KER")
    real_table("T50JML")
    aliased_table()
    bias_curves(a.plot)


if __name__ == "__main__":
    main()
