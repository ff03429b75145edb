"""A second real Sentinel-2 tile with known shifts (T50JML, tests/data/s2_t50jml): the
kernel on every shift, the image-domain refinement's interpolation bias on the same
texture, and ``gdm opt run`` on georeferenced copies. RMSE is over all valid windows,
against the known shift, per component; nothing is excluded. The printed figures are
quoted in the report of issue 13."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from kernels import subpixel
from kernels.pyramid import correlate_grid, window_grid
from tests.datafiles import DATA
from tests.test_opt_t19ker import opt_run_figures
from tests.test_subpixel_accuracy import fourier_shift_mirrored, real_pairs

TILES = {"T19KER": DATA / "s2_t19ker", "T50JML": DATA / "s2_t50jml"}


def tile_pairs(tile: str) -> list[tuple[str, float, float, np.ndarray, np.ndarray]]:
    """(name, row shift, col shift, left, right) of a tile's four real pairs."""
    return real_pairs(TILES[tile])


def _figures(er: np.ndarray, ec: np.ndarray) -> tuple[float, float]:
    bias = max(abs(np.nanmedian(er)), abs(np.nanmedian(ec)))
    rmse = max(np.sqrt(np.nanmean(er**2)), np.sqrt(np.nanmean(ec**2)))
    return float(bias), float(rmse)


def test_t50jml_all_shifts_kernel() -> None:
    """32-px windows every 4 px. Measured: worst |median bias| 0.0076 px, RMSE 0.0142 px
    (r+0.25c+0.25): short of the issue's 0.005 / 0.01 px (see PROVENANCE.md: this pair is
    not a clean shift of its left image at mid frequencies)."""
    worst_bias = worst_rmse = 0.0
    for name, sr, sc, left, right in tile_pairs("T50JML"):
        g = window_grid(*left.shape, 32, 4)
        res = correlate_grid(left, right, g, 32, 4)
        er, ec = res.drow - sr, res.dcol - sc
        assert np.isfinite(er).mean() > 0.95, name
        bias, rmse = _figures(er, ec)
        print(f"T50JML {name}: |median bias| {bias:.4f} px, RMSE {rmse:.4f} px")
        worst_bias, worst_rmse = max(worst_bias, bias), max(worst_rmse, rmse)
    assert worst_bias <= 0.01
    assert worst_rmse <= 0.018


@pytest.mark.xfail(reason="issue 13 target on T50JML not met yet (0.0076 / 0.0142 px)",
                   strict=True)
def test_t50jml_issue_target() -> None:
    worst_bias = worst_rmse = 0.0
    for _, sr, sc, left, right in tile_pairs("T50JML"):
        g = window_grid(*left.shape, 32, 4)
        res = correlate_grid(left, right, g, 32, 4)
        bias, rmse = _figures(res.drow - sr, res.dcol - sc)
        worst_bias, worst_rmse = max(worst_bias, bias), max(worst_rmse, rmse)
    assert worst_bias <= 0.005 and worst_rmse <= 0.01


def test_preshift_removes_the_spline_bias_on_t50jml_texture() -> None:
    """The T50JML left image moved by Fourier phase ramps (band-limited truth): the
    quintic spline's phase error at a quarter pixel shows on this fine texture; resampling
    the common fractional shift away first (``preshift``) removes it."""
    left = tile_pairs("T50JML")[0][3]
    rng = np.random.default_rng(2)
    g = window_grid(*left.shape, 32, 8, margin=3)
    rows, cols = (a.ravel() for a in g.centres())
    worst = {False: 0.0, True: 0.0}
    for s in (-0.4, -0.25, 0.25, 0.4):
        sec = fourier_shift_mirrored(left, s, -0.5 * s)
        sec = (sec + rng.normal(0, 0.01 * left.std(), sec.shape)).astype(np.float32)
        images = subpixel.prepare(left, sec)
        init_r = np.full(rows.size, float(round(s)))
        init_c = np.full(rows.size, float(round(-0.5 * s)))
        for pre in (False, True):
            dr, dc, _ = subpixel.refine(images, rows, cols, 32, init_r, init_c, preshift=pre)
            b = max(abs(np.nanmedian(dr) - s), abs(np.nanmedian(dc) + 0.5 * s))
            worst[pre] = max(worst[pre], b)
    print(f"T50JML texture, Fourier shifts: worst |median bias| {worst[False]:.4f} px "
          f"(spline), {worst[True]:.4f} px (preshift)")
    assert worst[True] <= 0.002
    assert worst[True] < 0.6 * worst[False]


@pytest.mark.slow
def test_t50jml_through_gdm_opt_run(tmp_path: Path) -> None:
    worst_bias = worst_rmse = 0.0
    for name, bias, rmse, _ in opt_run_figures(tile_pairs("T50JML"), tmp_path):
        print(f"gdm opt run, T50JML {name}: |median bias| {bias:.4f} px, RMSE {rmse:.4f} px")
        worst_bias, worst_rmse = max(worst_bias, bias), max(worst_rmse, rmse)
    assert worst_bias <= 0.01
    assert worst_rmse <= 0.018
