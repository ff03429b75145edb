import datetime as dt

import pytest
from shapely.geometry import shape

from gdmcore import InputError
from gdmio.providers import SceneQuery, parse_aoi, parse_date
from gdmio.providers.pleiades import PleiadesProvider, parse_dimap
from tests.fakedimap import write_stereo_delivery, write_view

T = dt.datetime(2023, 5, 30, 10, 35, 17, 500000, tzinfo=dt.UTC)
BBOX = (5.70, 45.10, 5.85, 45.22)


def _q(aoi="5.75,45.15,5.76,45.16", start="2023-05-01", end="2023-06-30"):
    return SceneQuery(parse_aoi(aoi), parse_date(start), parse_date(end, end=True))


def test_parse_dimap_fields(tmp_path):
    dim = write_view(tmp_path, "PHR1A_P_X", T, BBOX, incidence=12.0, along=-9.5)
    s = parse_dimap(dim)
    assert s.id == "DS_PHR1A_P_X" and s.provider == "pleiades"
    assert s.datetime == T  # centre line time, not the strip start
    assert s.properties["incidence_angle"] == pytest.approx(12.0)
    assert s.properties["incidence_angle_along_track"] == pytest.approx(-9.5)
    assert s.properties["incidence_angle_across_track"] == pytest.approx(7.2)
    assert s.properties["sun_elevation"] == pytest.approx(55.1)
    assert s.properties["platform"] == "PHR1A" and s.properties["rows"] == 64
    assert shape(s.geometry).bounds == pytest.approx(BBOX)
    assert s.assets["image1"].href.endswith("IMG_PHR1A_P_X_R1C1.TIF")
    assert s.assets["rpc"].href.endswith("RPC_PHR1A_P_X.XML")


def test_register_delivery_and_search_by_area_and_dates(tmp_path):
    write_stereo_delivery(tmp_path / "delivery", T, BBOX)
    write_view(tmp_path / "other", "PHR1B_P_FAR", T, (2.0, 48.7, 2.1, 48.8), 20.0, 1.0, "1B")
    prov = PleiadesProvider(cache_root=tmp_path / "cache")
    assert sorted(s.id for s in prov.register(tmp_path / "delivery")) == ["DS_PHR1A_P_B",
                                                                          "DS_PHR1A_P_F"]
    prov.register(tmp_path / "other")
    prov.register(tmp_path / "delivery")  # again: updated, not doubled
    assert len(prov.index) == 3
    assert (tmp_path / "cache" / "pleiades.sqlite").exists()
    found = prov.search(_q())
    assert [s.id for s in found] == ["DS_PHR1A_P_F", "DS_PHR1A_P_B"]  # by time
    assert [round(s.properties["incidence_angle"], 1) for s in found] == [12.0, 13.5]
    assert prov.search(_q(aoi="2.05,48.75,2.06,48.76"))[0].id == "DS_PHR1B_P_FAR"
    assert prov.search(_q(aoi="5.9,45.3,5.95,45.35")) == []  # bbox overlap would not do
    assert prov.search(_q(start="2023-06-01")) == []
    (dim,) = prov.fetch(found[0])
    assert dim.name == "DIM_PHR1A_P_F.XML" and dim.exists()
    # A second worker sees the same index.
    assert len(PleiadesProvider(tmp_path / "cache" / "pleiades.sqlite").search(_q())) == 2


def test_bad_deliveries_are_input_errors(tmp_path):
    prov = PleiadesProvider(tmp_path / "idx.sqlite")
    with pytest.raises(InputError, match="does not exist"):
        prov.register(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="no DIM_"):
        prov.register(tmp_path / "empty")
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "DIM_X.XML").write_text("<Dimap_Document><Dataset_Content/></Dimap_Document>")
    with pytest.raises(InputError, match="DIM_X.XML: no footprint"):
        prov.register(bad)
    dims = write_stereo_delivery(tmp_path / "d", T, BBOX)
    scene = next(s for s in prov.register(tmp_path / "d") if s.id == "DS_PHR1A_P_B")
    (dims[1].parent / "IMG_PHR1A_P_B_R1C1.TIF").unlink()
    with pytest.raises(InputError, match="missing"):
        prov.fetch(scene)
