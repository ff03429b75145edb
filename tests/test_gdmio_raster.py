"""gdmio.raster: opening GeoTIFF / JP2 / SAFE inputs, dates, bands, bad input."""

from __future__ import annotations

import datetime as dt
import zipfile
from pathlib import Path

import numpy as np
import pytest
from affine import Affine
from rasterio.windows import Window

from gdmcore import InputError
from gdmio.raster import date_from_name, open_info, read_band
from gdmio.testing import make_safe, write_raster

T10 = Affine(10.0, 0.0, 700_000.0, 0.0, -10.0, 5_010_000.0)
SAFE_DATE = dt.date(2023, 4, 20)


def _uint16(shape: tuple[int, int], seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(1, 4000, size=shape, dtype=np.uint16)


def test_geotiff_read_with_nodata(tmp_path: Path) -> None:
    data = np.random.default_rng(0).integers(-500, 500, size=(60, 80)).astype(np.int16)
    data[5:9, 10:20] = -9999
    path = write_raster(tmp_path / "scene_20220301.tif", data, "EPSG:32631", T10, nodata=-9999)
    info = open_info(path)
    assert info.crs.to_epsg() == 32631
    assert info.transform == T10
    assert (info.width, info.height, info.band, info.dtype) == (80, 60, 1, "int16")
    assert info.nodata == -9999.0
    assert info.name == "scene_20220301.tif"
    assert info.date == dt.date(2022, 3, 1)
    arr = read_band(info)
    assert arr.dtype == np.float32 and arr.shape == (60, 80)
    nan = np.isnan(arr)
    assert nan.sum() == 40 and nan[5:9, 10:20].all()
    np.testing.assert_array_equal(arr[~nan], data[~nan].astype(np.float32))
    part = read_band(info, Window(7, 3, 11, 5))
    np.testing.assert_array_equal(part, arr[3:8, 7:18])


def test_jp2_read_lossless(tmp_path: Path) -> None:
    data = _uint16((64, 96), 1)
    path = write_raster(tmp_path / "T31TGL_20230101T103019_B03.jp2", data, "EPSG:32631", T10,
                        driver="JP2OpenJPEG")
    info = open_info(path)
    assert info.crs.to_epsg() == 32631
    assert info.transform.almost_equals(T10)
    assert info.date == dt.date(2023, 1, 1)
    np.testing.assert_array_equal(read_band(info), data.astype(np.float32))


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("S2A_MSIL1C_20230415T103021_N0509_R108_T31TGL_20230415T141222.SAFE",
         dt.date(2023, 4, 15)),
        ("img_20191231.tif", dt.date(2019, 12, 31)),
        ("20200229_ortho.jp2", dt.date(2020, 2, 29)),
        ("id123456789_20210102.tif", dt.date(2021, 1, 2)),  # 9 digits are not a date
        ("x_20211340_20210105.tif", dt.date(2021, 1, 5)),  # month 13 skipped
        ("ortho.tif", None),
        ("dem_12345678.tif", None),  # year 1234 out of range
    ],
)
def test_date_from_name(name: str, expected: dt.date | None) -> None:
    assert date_from_name(name) == expected


def test_date_from_tiff_tag(tmp_path: Path) -> None:
    data = _uint16((32, 32), 2)
    tagged = write_raster(tmp_path / "ortho.tif", data, "EPSG:32631", T10,
                          tags={"TIFFTAG_DATETIME": "2021:07:14 10:30:00"})
    plain = write_raster(tmp_path / "plain.tif", data, "EPSG:32631", T10)
    named = write_raster(tmp_path / "o_20200101.tif", data, "EPSG:32631", T10,
                         tags={"TIFFTAG_DATETIME": "2021:07:14 10:30:00"})
    assert open_info(tagged).date == dt.date(2021, 7, 14)
    assert open_info(plain).date is None
    assert open_info(named).date == dt.date(2020, 1, 1)  # the name wins


def test_multiband_selection(tmp_path: Path) -> None:
    data = np.stack([np.full((20, 30), v, np.float32) for v in (1.0, 2.0, 3.0)])
    path = write_raster(tmp_path / "rgb.tif", data, "EPSG:32631", T10,
                        descriptions=["red", "green", "blue"])
    assert open_info(path).band == 1
    assert open_info(path, 2).band == 2
    assert open_info(path, "3").band == 3
    info = open_info(path, "Green")
    assert info.band == 2
    assert float(np.nanmean(read_band(info))) == 2.0
    with pytest.raises(InputError, match="band 4 not found in rgb.tif"):
        open_info(path, 4)
    with pytest.raises(InputError, match="band 'nir' not found in rgb.tif"):
        open_info(path, "nir")


def _make_l1c(folder: Path, zipped: bool) -> tuple[Path, np.ndarray, np.ndarray]:
    b04, b08 = _uint16((48, 64), 3), _uint16((48, 64), 4)
    return make_safe(folder, SAFE_DATE, {"B04": b04, "B08": b08}, T10, zipped=zipped), b04, b08


@pytest.mark.parametrize("zipped", [False, True])
def test_safe_l1c(tmp_path: Path, zipped: bool) -> None:
    safe, b04, b08 = _make_l1c(tmp_path, zipped)
    assert (safe.suffix == ".zip") == zipped
    info = open_info(safe)
    assert info.path.endswith(
        "GRANULE/L1C_T31TGL_A032000_20230420T103019/IMG_DATA/T31TGL_20230420T103019_B04.jp2"
    )
    assert info.path.startswith("/vsizip/") == zipped
    assert info.date == SAFE_DATE
    assert info.nodata == 0.0
    assert info.name == (
        "S2B_MSIL1C_20230420T103019_N0509_R108_T31TGL_20230420T123456.SAFE:B04"
    )
    np.testing.assert_array_equal(read_band(info), b04.astype(np.float32))
    nir = open_info(safe, band="b8")
    assert nir.path.endswith("_B08.jp2")
    np.testing.assert_array_equal(read_band(nir), b08.astype(np.float32))
    with pytest.raises(InputError, match="band B02 not found in S2B_MSIL1C"):
        open_info(safe, band="B02")
    with pytest.raises(InputError, match="unknown Sentinel-2 band 'B99'"):
        open_info(safe, band="B99")


def test_safe_l2a_picks_finest_resolution(tmp_path: Path) -> None:
    b04_10 = _uint16((40, 40), 5)
    b04_20 = _uint16((20, 20), 6)
    t20 = Affine(20.0, 0.0, T10.c, 0.0, -20.0, T10.f)
    make_safe(tmp_path, SAFE_DATE, {"B04": b04_20, "B05": b04_20}, t20, level="L2A")
    safe = make_safe(tmp_path, SAFE_DATE, {"B04": b04_10}, T10, level="L2A")
    info = open_info(safe, "B04")
    assert info.path.endswith("IMG_DATA/R10m/T31TGL_20230420T103019_B04_10m.jp2")
    assert info.resolution == 10.0
    np.testing.assert_array_equal(read_band(info), b04_10.astype(np.float32))
    assert open_info(safe, "B05").resolution == 20.0


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="input file not found: .*nothere_20200101.tif"):
        open_info(tmp_path / "nothere_20200101.tif")


def test_text_file(tmp_path: Path) -> None:
    path = tmp_path / "notes.tif"
    path.write_text("this is not an image\n1 2 3\n")
    with pytest.raises(InputError, match="cannot read notes.tif") as err:
        open_info(path)
    assert "\n" not in str(err.value)


def test_empty_file(tmp_path: Path) -> None:
    path = tmp_path / "empty.jp2"
    path.write_bytes(b"")
    with pytest.raises(InputError, match="cannot read empty.jp2"):
        open_info(path)


@pytest.mark.parametrize("keep", [0.5, 0.002])
def test_truncated_tiff(tmp_path: Path, keep: float) -> None:
    good = write_raster(tmp_path / "good.tif", _uint16((256, 256), 7), "EPSG:32631", T10,
                        tiled=True, blockxsize=64, blockysize=64)
    raw = good.read_bytes()
    bad = tmp_path / "bad.tif"
    bad.write_bytes(raw[: int(len(raw) * keep)])
    with pytest.raises(InputError, match="cannot read bad.tif") as err:
        open_info(bad)
    assert "\n" not in str(err.value)


def test_no_crs(tmp_path: Path) -> None:
    path = write_raster(tmp_path / "nocrs.tif", _uint16((16, 16), 8), None, T10)
    with pytest.raises(InputError, match="nocrs.tif has no CRS"):
        open_info(path)


def test_no_geotransform(tmp_path: Path) -> None:
    path = write_raster(tmp_path / "nogt.tif", _uint16((16, 16), 9), "EPSG:32631", None)
    with pytest.raises(InputError, match="nogt.tif has no CRS"):
        open_info(path)


def test_folder_and_zip_that_are_not_safe(tmp_path: Path) -> None:
    folder = tmp_path / "photos"
    folder.mkdir()
    with pytest.raises(InputError, match="photos is a folder"):
        open_info(folder)
    z = tmp_path / "stuff.zip"
    with zipfile.ZipFile(z, "w") as zf:
        zf.writestr("readme.txt", "hello")
    with pytest.raises(InputError, match="stuff.zip is a zip without a Sentinel-2 SAFE"):
        open_info(z)
    safe = tmp_path / "S2A_MSIL1C_20230415T103021_N0509_R108_T31TGL_20230415T141222.SAFE"
    (safe / "GRANULE").mkdir(parents=True)
    with pytest.raises(InputError, match="band B04 not found"):
        open_info(safe)


def test_read_band_window_outside(tmp_path: Path) -> None:
    path = write_raster(tmp_path / "a.tif", _uint16((16, 16), 10), "EPSG:32631", T10)
    info = open_info(path)
    with pytest.raises(ValueError, match="not inside"):
        read_band(info, Window(10, 10, 8, 8))


def test_internal_mask_becomes_nan(tmp_path: Path) -> None:
    import rasterio

    from gdmio.grid import common_grid, read_on_grid

    data = _uint16((40, 50), 11)
    path = tmp_path / "masked.tif"
    with rasterio.open(path, "w", driver="GTiff", width=50, height=40, count=1,
                       dtype="uint16", crs="EPSG:32631", transform=T10) as ds:
        ds.write(data, 1)
        mask = np.full((40, 50), 255, np.uint8)
        mask[:10, :] = 0
        ds.write_mask(mask)
    info = open_info(path)
    arr = read_band(info)
    assert np.isnan(arr[:10]).all() and np.isfinite(arr[10:]).all()
    np.testing.assert_array_equal(arr[10:], data[10:].astype(np.float32))
    on_grid = read_on_grid(info, common_grid([info]))
    assert np.array_equal(on_grid, arr, equal_nan=True)
    # The warper honours the mask too (Lambert-93 grid, ~1 px of rotation).
    lam = common_grid([info], crs="EPSG:2154")
    warped = read_on_grid(info, lam, resampling="bilinear")
    assert np.isnan(warped[:9]).all() and np.isfinite(warped[12:-2, 2:-2]).all()
