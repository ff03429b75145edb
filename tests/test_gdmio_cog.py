"""gdmio.cog: valid COGs (tiles, compression, overviews, nodata, descriptions), atomicity."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import rasterio
from affine import Affine

from gdmcore import InputError
from gdmio.blocks import iter_blocks
from gdmio.cog import CogWriter, validate_cog, write_cog

CRS_UTM = "EPSG:32631"
T = Affine(10.0, 0.0, 700_000.0, 0.0, -10.0, 5_010_000.0)


def _field(height: int, width: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width]
    data = (np.sin(x / 50.0) * np.cos(y / 70.0) + 0.01 * rng.normal(size=(height, width)))
    data = data.astype(np.float32)
    data[100:140, 200:260] = np.nan
    return data


def test_write_cog_float(tmp_path: Path) -> None:
    data = _field(1100, 1300)
    out = write_cog(tmp_path / "east.tif", data, CRS_UTM, T, descriptions=["east (m)"],
                    tags={"UNITS": "m", "WINDOW": 32}, band_tags=[{"STATS": "none"}])
    assert out == tmp_path / "east.tif"
    valid, errors, warnings = validate_cog(out)
    assert valid and errors == [] and warnings == []
    assert sorted(p.name for p in tmp_path.iterdir()) == ["east.tif"]  # no temp files left
    with rasterio.open(out) as ds:
        assert ds.block_shapes == [(512, 512)]
        assert ds.compression is not None and ds.compression.name.upper() == "DEFLATE"
        assert ds.tags(ns="IMAGE_STRUCTURE")["PREDICTOR"] == "3"
        assert ds.tags(ns="IMAGE_STRUCTURE")["LAYOUT"] == "COG"
        assert ds.overviews(1) == [2, 4]  # 1300 -> 650 -> 325 (< 512)
        assert np.isnan(ds.nodata)
        assert ds.descriptions == ("east (m)",)
        assert ds.tags()["UNITS"] == "m" and ds.tags()["WINDOW"] == "32"
        assert ds.tags(1)["STATS"] == "none"
        assert ds.crs.to_epsg() == 32631 and ds.transform == T
        back = ds.read(1)
    assert np.array_equal(back, data, equal_nan=True)
    # First overview = 2x2 average of the data.
    with rasterio.open(out, overview_level=0) as ov:
        o = ov.read(1)
    blocks = data[:1100, :1300].reshape(550, 2, 650, 2)
    full = np.isfinite(blocks).all(axis=(1, 3))
    mean = blocks.mean(axis=(1, 3))
    assert o.shape == (550, 650)
    assert np.abs(o[full] - mean[full]).max() < 1e-5
    assert np.isnan(o[55:65, 105:125]).all()  # all-NaN 2x2 cells stay NaN


def test_write_cog_multiband_int_and_zstd(tmp_path: Path) -> None:
    data = np.stack([np.arange(300 * 200, dtype=np.int32).reshape(200, 300) % 1000 + i
                     for i in range(3)]).astype(np.int16)
    data[:, 0, 0] = -1
    out = write_cog(tmp_path / "ts.tif", data, CRS_UTM, T, nodata=-1, dtype="int16",
                    descriptions=["2020-01-01", "2020-02-01", "2020-03-01"], compress="ZSTD")
    assert validate_cog(out)[0]
    with rasterio.open(out) as ds:
        assert ds.count == 3 and ds.dtypes == ("int16",) * 3 and ds.nodata == -1
        assert ds.compression is not None and ds.compression.name.upper() == "ZSTD"
        assert ds.tags(ns="IMAGE_STRUCTURE")["PREDICTOR"] == "2"
        assert ds.descriptions == ("2020-01-01", "2020-02-01", "2020-03-01")
        assert ds.overviews(1) == []  # already smaller than one tile
        np.testing.assert_array_equal(ds.read(), data)


def test_cog_writer_blockwise_equals_in_memory(tmp_path: Path) -> None:
    data = np.stack([_field(900, 700, 1), _field(900, 700, 2)])
    path = tmp_path / "sub" / "blocks.tif"
    with CogWriter(path, 700, 900, 2, CRS_UTM, T, descriptions=["a", "b"]) as writer:
        for blk in iter_blocks(700, 900, block_size=300):
            writer.write(data[0][blk.core.toslices()], blk.core, band=1)
            writer.write(data[1][blk.core.toslices()], blk.core, band=2)
    valid, errors, _ = validate_cog(path)
    assert valid and errors == []
    with rasterio.open(path) as ds:
        assert ds.descriptions == ("a", "b")
        assert np.array_equal(ds.read(), data, equal_nan=True)
    assert [p.name for p in path.parent.iterdir()] == ["blocks.tif"]


def test_cog_writer_unwritten_pixels_are_nodata(tmp_path: Path) -> None:
    path = tmp_path / "partial.tif"
    with CogWriter(path, 600, 600, 1, CRS_UTM, T) as writer:
        writer.write(np.ones((10, 20), np.float32), rasterio.windows.Window(5, 7, 20, 10))
    with rasterio.open(path) as ds:
        arr = ds.read(1)
    assert np.isfinite(arr).sum() == 200 and np.all(arr[7:17, 5:25] == 1.0)


def test_exception_inside_cog_writer_leaves_nothing(tmp_path: Path) -> None:
    path = tmp_path / "fail.tif"
    with pytest.raises(RuntimeError, match="boom"):
        with CogWriter(path, 600, 600, 1, CRS_UTM, T) as writer:
            writer.write(np.zeros((600, 600), np.float32))
            raise RuntimeError("boom")
    assert list(tmp_path.iterdir()) == []


def test_failed_rewrite_keeps_old_file(tmp_path: Path) -> None:
    path = write_cog(tmp_path / "keep.tif", np.zeros((50, 60), np.float32), CRS_UTM, T)
    before = path.read_bytes()
    with pytest.raises(ValueError, match="does not match window"):
        with CogWriter(path, 60, 50, 1, CRS_UTM, T) as writer:
            writer.write(np.ones((10, 10), np.float32), rasterio.windows.Window(0, 0, 20, 20))
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["keep.tif"]
    # A successful rewrite replaces it.
    write_cog(path, np.ones((50, 60), np.float32), CRS_UTM, T)
    with rasterio.open(path) as ds:
        assert float(ds.read(1).mean()) == 1.0


def test_argument_checks(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="nodata NaN is not valid for uint8"):
        write_cog(tmp_path / "m.tif", np.zeros((20, 20), np.uint8), CRS_UTM, T, dtype="uint8")
    with pytest.raises(ValueError, match="2 descriptions for 1 band"):
        write_cog(tmp_path / "m.tif", np.zeros((20, 20)), CRS_UTM, T, descriptions=["a", "b"])
    with pytest.raises(ValueError, match="2-D or 3-D"):
        write_cog(tmp_path / "m.tif", np.zeros(20), CRS_UTM, T)
    with pytest.raises(RuntimeError, match="outside its 'with' block"):
        CogWriter(tmp_path / "m.tif", 10, 10, 1, CRS_UTM, T).write(np.zeros((10, 10)))
    assert list(tmp_path.iterdir()) == []


def test_validate_cog_rejects_plain_tiff(tmp_path: Path) -> None:
    plain = tmp_path / "plain.tif"
    with rasterio.open(plain, "w", driver="GTiff", width=1200, height=1200, count=1,
                       dtype="float32", crs=CRS_UTM, transform=T) as ds:
        ds.write(np.zeros((1, 1200, 1200), np.float32))
    valid, errors, _ = validate_cog(plain)
    assert not valid and errors
    with pytest.raises(InputError, match="file not found"):
        validate_cog(tmp_path / "missing.tif")
