"""gdmio.quicklook: PNG written, sized, not blank; robust colour limits."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from affine import Affine
from matplotlib.image import imread

from gdmcore import InputError
from gdmio.cog import write_cog
from gdmio.quicklook import display_limits, quicklook

T = Affine(10.0, 0.0, 700_000.0, 0.0, -10.0, 5_010_000.0)


def test_display_limits() -> None:
    values = np.linspace(-10.0, 10.0, 2001)
    lo, hi = display_limits(values, symmetric=True)
    assert hi == -lo and abs(hi - 9.8) < 1e-9
    lo, hi = display_limits(values + 100.0, symmetric=False)
    assert abs(lo - 90.4) < 1e-9 and abs(hi - 109.6) < 1e-9
    assert display_limits(values, vmin=-1.0, vmax=3.0) == (-1.0, 3.0)
    lo, hi = display_limits(np.full(10, 5.0), symmetric=False)
    assert lo < 5.0 < hi
    assert display_limits(np.array([np.nan, np.inf])) == (-1.0, 1.0)
    values_with_nan = np.concatenate([values, [np.nan] * 100])
    assert display_limits(values_with_nan) == display_limits(values)


def _pattern(height: int, width: int) -> np.ndarray:
    y, x = np.mgrid[0:height, 0:width]
    data = (np.sin(x / 40.0) * np.cos(y / 30.0)).astype(np.float32)
    data[: height // 4, : width // 4] = np.nan
    return data


def test_quicklook_png(tmp_path: Path) -> None:
    tif = write_cog(tmp_path / "east.tif", _pattern(1500, 2400), "EPSG:32631", T)
    png = quicklook(tif, tmp_path / "east.png", "East displacement", "m", max_size=512)
    assert png == tmp_path / "east.png"
    img = imread(png)
    h, w = img.shape[:2]
    # 800 px image long side + margins for the colour bar and the title.
    assert 850 <= w <= 1000 and 550 <= h <= 650
    assert img[..., :3].std() > 0.1
    grey = np.all(np.abs(img[..., :3] - 200 / 255) < 0.01, axis=-1)
    assert grey.mean() > 0.03  # the NaN quarter is drawn grey
    assert sorted(p.name for p in tmp_path.iterdir()) == ["east.png", "east.tif"]


def test_quicklook_tall_small_raster_and_fixed_limits(tmp_path: Path) -> None:
    tif = write_cog(tmp_path / "score.tif", np.abs(_pattern(90, 30)), "EPSG:32631", T)
    png = quicklook(tif, tmp_path / "q" / "score.png", "Score", "", cmap="gray",
                    symmetric=False, vmin=0.0, vmax=1.0)
    img = imread(png)
    h, w = img.shape[:2]
    assert 850 <= h <= 900 and 600 <= w <= 700  # 800 px tall narrow image, room for title
    assert img[..., :3].std() > 0.1


def test_quicklook_all_nan_and_missing(tmp_path: Path) -> None:
    tif = write_cog(tmp_path / "nan.tif", np.full((40, 40), np.nan, np.float32),
                    "EPSG:32631", T)
    png = quicklook(tif, tmp_path / "nan.png", "Nothing", "m")
    assert imread(png)[..., :3].std() > 0  # text and colour bar still drawn
    with pytest.raises(InputError, match="file not found"):
        quicklook(tmp_path / "missing.tif", tmp_path / "x.png", "x", "m")
    with pytest.raises(InputError, match="band 2 not found"):
        quicklook(tif, tmp_path / "x.png", "x", "m", band=2)
    assert not (tmp_path / "x.png").exists()


def _bump(n: int = 400, peak: float = 41.0, radius: float = 8.0) -> np.ndarray:
    y, x = np.mgrid[0:n, 0:n]
    return peak * np.exp(-((x - 0.7 * n) ** 2 + (y - 0.3 * n) ** 2) / (2 * radius**2))


def test_limits_keep_a_small_signal_and_ignore_isolated_outliers() -> None:
    rng = np.random.default_rng(0)
    field = _bump() + rng.normal(0, 1.5, (400, 400))  # 41 mm/yr bump on 0.2 % of pixels
    assert (field > 20).mean() < 0.003
    old = float(np.percentile(np.abs(field), 98))  # the former rule: +-4 mm/yr here
    spikes = field.copy()
    idx = rng.choice(spikes.size, 400, replace=False)  # 0.25 % isolated +-1000 outliers
    spikes.flat[idx] = rng.choice([-1000.0, 1000.0], idx.size)
    spikes[::50, :] = np.nan
    for arr in (field, spikes):
        lo, hi = display_limits(arr, symmetric=True)
        assert hi == -lo
        assert 0.9 * 41.0 <= hi <= 45.0, hi  # the peak is in range, the outliers are not
    assert old < 0.25 * 41.0
    # noise alone: limits a few sigma, not the extreme value
    noise = rng.normal(0, 1.0, (400, 400))
    lo, hi = display_limits(noise, symmetric=True)
    assert 1.0 < hi < 3.0 < np.abs(noise).max()
    # one-sided (coherence, heights): the block extremes
    coh = np.clip(0.6 + 0.3 * _bump(peak=1.0) + rng.normal(0, 0.02, (400, 400)), 0, 1)
    coh.flat[idx] = 0.0
    lo, hi = display_limits(coh, symmetric=False)
    assert 0.5 < lo < 0.6 and 0.85 < hi < 0.95


def test_quicklook_in_mm_with_the_reference_marked(tmp_path: Path) -> None:
    from insar.products import layer

    vel = (_bump(200, peak=0.041, radius=6.0)).astype(np.float32)
    tif = write_cog(tmp_path / "velocity.tif", vel, "EPSG:32631", T,
                    tags=layer("velocity").tags("150,40"))
    png = tmp_path / "velocity.png"
    from gdmio.quicklook import quicklook_layer

    quicklook_layer(tif, png, layer("velocity"), "LOS velocity")
    img = imread(png)[..., :3]
    # The marker: black and white square outlines around pixel (150, 40) of the 800 px image
    # 60 px title margin, 10 px left margin, 4 PNG pixels per raster pixel
    rows, cols = slice(60 + 4 * 150 - 14, 60 + 4 * 150 + 16), slice(10 + 4 * 40 - 14,
                                                                    10 + 4 * 40 + 16)
    box = img[rows, cols]
    dark = np.all(box < 0.15, axis=-1).sum()
    assert dark > 30, dark
    blank = quicklook(tif, tmp_path / "no_marker.png", "v", "mm/yr", scale=1000.0,
                      mark_reference=False)
    plain = imread(blank)[..., :3][rows, cols]
    assert np.all(plain < 0.15, axis=-1).sum() < dark / 3


def test_interferogram_overview_grid(tmp_path: Path) -> None:
    from gdmio.quicklook import interferogram_grid

    dirs = []
    for k in range(7):
        d = tmp_path / f"2023010{k}_2023020{k}"
        y, x = np.mgrid[0:60, 0:80]
        write_cog(d / "wrapped.tif", np.angle(np.exp(1j * (x + k * y) / 6.0)).astype(
            np.float32), "EPSG:32631", T)
        write_cog(d / "coherence.tif", np.full((60, 80), 0.1 * k, np.float32), "EPSG:32631", T)
        dirs.append(d)
    png = interferogram_grid(dirs, tmp_path / "ifgs.png", "Interferograms")
    img = imread(png)
    assert img.shape[0] > 300 and img.shape[1] > 600
    assert img[..., :3].std() > 0.1
    small = interferogram_grid(dirs, tmp_path / "ifgs3.png", "Interferograms", max_tiles=3)
    assert imread(small).shape[0] < img.shape[0]
    with pytest.raises(InputError):
        interferogram_grid([], tmp_path / "none.png", "x")


def test_network_edges_coloured_by_coherence(tmp_path: Path) -> None:
    import datetime as dt

    from matplotlib import colormaps

    from gdmio.quicklook import network_plot

    dates = [dt.date(2023, 1, 1) + dt.timedelta(days=12 * k) for k in range(4)]
    pairs = [(0, 1), (1, 2), (2, 3), (0, 2)]
    coherence = [0.1, 0.5, 0.9, None]
    png = network_plot(dates, [0.0, 40.0, -30.0, 10.0], pairs, tmp_path / "net.png",
                       "network", coherence=coherence, failed=[False, False, False, True])
    img = imread(png)[..., :3]
    w = img.shape[1]
    img = img[:, int(0.1 * w):int(0.84 * w)]  # the plot, not its colour bar
    for c in coherence[:3]:
        want = np.array(colormaps["viridis"](c)[:3])
        close = np.all(np.abs(img - want) < 0.03, axis=-1).sum()
        assert close > 40, (c, close)  # the edge of that pair, in its colour
    red = np.all(np.abs(img - np.array([0.839, 0.153, 0.157])) < 0.03, axis=-1).sum()
    assert red > 20  # the failed pair, dashed red
