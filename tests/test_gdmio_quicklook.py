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
