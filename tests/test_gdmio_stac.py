"""gdmio.stac: item geometry/bbox in WGS84, projection fields, datetimes, asset hrefs."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import numpy as np
import pystac
import pytest
from affine import Affine
from pyproj import Transformer

from gdmio.stac import write_item

T = Affine(10.0, 0.0, 700_000.0, 0.0, -10.0, 5_010_000.0)
W, H = 400, 300


def _assets(folder: Path) -> dict[str, dict]:
    (folder / "east.tif").write_bytes(b"x")
    (folder / "east.png").write_bytes(b"x")
    (folder / "pairs").mkdir()
    (folder / "pairs" / "p_east.tif").write_bytes(b"x")
    cog = pystac.MediaType.COG
    return {
        "east": {"href": "east.tif", "title": "east", "roles": ["data"], "type": cog},
        "east_quicklook": {"href": "east.png", "title": "east quicklook",
                           "roles": ["overview"], "type": pystac.MediaType.PNG},
        "pair": {"href": str(folder / "pairs" / "p_east.tif"), "title": "pair",
                 "roles": ["data"], "type": cog, "gdm:pair": ["2023-01-01", "2023-02-01"]},
    }


def test_item_geometry_and_fields(tmp_path: Path) -> None:
    path = write_item(tmp_path / "item.json", "gdm-opt-test", "EPSG:32631", T, W, H,
                      _assets(tmp_path), dt.datetime(2023, 1, 1, 10, 30),
                      dt.datetime(2023, 2, 1, 10, 30), properties={"gdm:process": "gdm-opt"})
    item = pystac.Item.from_file(str(path))
    assert item.id == "gdm-opt-test"
    # Hand computation with pyproj: grid corners and centre in lon/lat.
    to_ll = Transformer.from_crs(32631, 4326, always_xy=True)
    xs = [T.c, T.c + W * T.a]
    ys = [T.f, T.f + H * T.e]
    lons, lats = zip(*(to_ll.transform(x, y) for x in xs for y in ys), strict=True)
    expected = [min(lons), min(lats), max(lons), max(lats)]
    assert item.bbox is not None
    np.testing.assert_allclose(item.bbox, expected, atol=1e-6, rtol=0)
    clon, clat = to_ll.transform(T.c + W * T.a / 2, T.f + H * T.e / 2)
    assert item.bbox[0] < clon < item.bbox[2] and item.bbox[1] < clat < item.bbox[3]
    assert item.geometry is not None
    ring = np.array(item.geometry["coordinates"][0])
    assert np.allclose(ring[0], ring[-1])
    area2 = np.sum(ring[:-1, 0] * ring[1:, 1] - ring[1:, 0] * ring[:-1, 1])
    assert area2 > 0  # counter-clockwise exterior ring
    props = item.properties
    assert item.datetime is None
    assert props["start_datetime"] == "2023-01-01T10:30:00Z"
    assert props["end_datetime"] == "2023-02-01T10:30:00Z"
    assert props["gdm:process"] == "gdm-opt"
    assert props["proj:code"] == "EPSG:32631"
    assert props["proj:shape"] == [H, W]
    assert props["proj:transform"] == [10.0, 0.0, 700000.0, 0.0, -10.0, 5010000.0]
    for key, asset in item.assets.items():
        assert not Path(asset.href).is_absolute(), key
        assert Path(asset.get_absolute_href() or "").is_file(), key
    assert item.assets["pair"].href == "pairs/p_east.tif"
    assert item.assets["pair"].extra_fields["gdm:pair"] == ["2023-01-01", "2023-02-01"]
    assert item.assets["east"].media_type == pystac.MediaType.COG
    assert item.assets["east_quicklook"].roles == ["overview"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["east.png", "east.tif", "item.json",
                                                          "pairs"]


def test_single_date_and_timezones(tmp_path: Path) -> None:
    paris = dt.timezone(dt.timedelta(hours=2))
    path = write_item(tmp_path / "i.json", "one", "EPSG:32631", T, W, H, {},
                      dt.datetime(2023, 4, 20, 12, 0, tzinfo=paris))
    data = json.loads(path.read_text())
    assert data["properties"]["datetime"] == "2023-04-20T10:00:00Z"
    assert "start_datetime" not in data["properties"]
    with pytest.raises(ValueError, match="before start"):
        write_item(tmp_path / "j.json", "bad", "EPSG:32631", T, W, H, {},
                   dt.date(2023, 2, 1), dt.date(2023, 1, 1))
    assert not (tmp_path / "j.json").exists()
