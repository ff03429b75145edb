"""Readers of unwrapped interferograms made elsewhere: layout, units, sign, metadata."""

import datetime as dt
from pathlib import Path

import numpy as np
import pytest

from gdmcore import InputError
from gdmio.insar import find_interferograms
from gdmio.insar.base import dates_in_name
from gdmio.insar.read import insar_grid, read_coherence, read_metres
from tests import insarfmt
from tests.datafiles import DATA


@pytest.fixture(scope="module")
def truth():
    return insarfmt.scene()


@pytest.mark.parametrize("fmt", sorted(insarfmt.WRITERS))
def test_motion_towards_satellite_is_positive(tmp_path, truth, fmt):
    """Every format: the LOS displacement read back equals the truth, sign included."""
    dates, disp, pairs, coh = truth
    insarfmt.WRITERS[fmt](tmp_path / "in", dates, disp, pairs, coh)
    ifgs = find_interferograms([tmp_path / "in"], tmp_path / "work")
    assert [i.fmt for i in ifgs] == [fmt] * len(pairs)
    assert [(i.date1, i.date2) for i in ifgs] == [(dates[a], dates[b]) for a, b in pairs]
    grid = insar_grid(ifgs)
    assert grid.shape == disp.shape[1:]
    for k, ((a, b), ifg) in enumerate(zip(pairs, ifgs, strict=True)):
        got = read_metres(ifg, grid)
        want = disp[b] - disp[a]
        ok = np.isfinite(got)
        assert ok.mean() > 0.99
        # the bump grows: uplift (towards the satellite) must come out positive
        assert got[12, 16] > 0.003
        np.testing.assert_allclose(got[ok], want[ok], atol=2e-7)
        c = read_coherence(ifg, grid)
        assert c is not None
        tol = 0.5 / 255 + 1e-6 if fmt == "LiCSAR" else 1e-6
        np.testing.assert_allclose(c, coh[k], atol=tol)


def test_roipac_metadata(tmp_path, truth):
    dates, disp, pairs, coh = truth
    insarfmt.write_roipac(tmp_path, dates, disp, pairs, coh, wavelength=0.0562356424)
    ifgs = find_interferograms([tmp_path], tmp_path / "w")
    assert ifgs[0].wavelength == pytest.approx(0.0562356424)
    assert ifgs[0].bperp == pytest.approx(10.0)
    assert str(ifgs[0].crs) == "EPSG:4326"
    # pixel (0, 0) was written as 0 = not unwrapped
    assert np.isnan(read_metres(ifgs[0], insar_grid(ifgs))[0, 0])


def test_gamma_wavelength_from_radar_frequency(tmp_path, truth):
    dates, disp, pairs, coh = truth
    insarfmt.write_gamma(tmp_path, dates, disp, pairs, coh, freq=1.2575e9)  # L band
    ifgs = find_interferograms([tmp_path], tmp_path / "w")
    assert ifgs[0].wavelength == pytest.approx(299792458.0 / 1.2575e9)
    assert ifgs[0].incidence_deg == pytest.approx(39.7036)
    assert ifgs[0].slant_range_m == pytest.approx(878319.1947)


def test_isce_xml_without_vrt_and_wavelength_option(tmp_path, truth):
    dates, disp, pairs, coh = truth
    insarfmt.write_isce_tops(tmp_path, dates, disp, pairs, coh, xml_only=True)
    (tmp_path / "reference" / "IW1.xml").unlink()
    with pytest.raises(InputError, match="wavelength"):
        find_interferograms([tmp_path / "merged"], tmp_path / "w")
    ifgs = find_interferograms([tmp_path / "merged"], tmp_path / "w",
                               wavelength=insarfmt.S1_WL)
    grid = insar_grid(ifgs)
    assert grid.crs is None  # radar geometry
    got = read_metres(ifgs[0], grid)
    assert np.isnan(got[-1, -1])  # connected component 0: not unwrapped
    got[-1, -1] = (disp[1] - disp[0])[-1, -1]
    np.testing.assert_allclose(got, disp[1] - disp[0], atol=2e-7)


def test_hyp3_unzipped_and_metadata(tmp_path, truth):
    dates, disp, pairs, coh = truth
    insarfmt.write_hyp3(tmp_path, dates, disp, pairs, coh, zipped=False)
    ifgs = find_interferograms([tmp_path], tmp_path / "w")
    assert len(ifgs) == len(pairs)
    assert ifgs[0].bperp == pytest.approx(12.5)
    assert ifgs[0].heading_deg == pytest.approx(-12.2742586)
    assert str(ifgs[0].crs) == "EPSG:32632"


@pytest.mark.parametrize("sep,yymmdd", [("_", False), ("-", True), ("_", True)])
def test_geotiff_date_forms(tmp_path, truth, sep, yymmdd):
    dates, disp, pairs, coh = truth
    insarfmt.write_geotiff(tmp_path, dates, disp, pairs, coh, sep=sep, yymmdd=yymmdd)
    ifgs = find_interferograms([tmp_path], tmp_path / "w")
    assert [(i.date1, i.date2) for i in ifgs] == [(dates[a], dates[b]) for a, b in pairs]
    assert all(i.coherence is not None for i in ifgs)


def test_dates_in_name():
    assert dates_in_name("cropA_20180106-20180130_VV_8rlks_eqa_unw.tif") == (
        dt.date(2018, 1, 6), dt.date(2018, 1, 30))
    assert dates_in_name("geo_960825-970918.unw") == (dt.date(1996, 8, 25),
                                                      dt.date(1997, 9, 18))
    assert dates_in_name("S1AA_20190610T135156_20190622T135157_VVP012_INT80_G_ueF_F8BF") == (
        dt.date(2019, 6, 10), dt.date(2019, 6, 22))
    assert dates_in_name("S2_20200101.tif") is None


def test_bad_inputs(tmp_path, truth):
    dates, disp, pairs, coh = truth
    insarfmt.write_geotiff(tmp_path / "a", dates, disp, pairs, coh, tags=False)
    with pytest.raises(InputError, match="wavelength"):
        find_interferograms([tmp_path / "a"], tmp_path / "w")
    one = tmp_path / "b" / "ifg_20200101.tif"
    insarfmt._tif(one, np.zeros((4, 4), np.float32))
    with pytest.raises(InputError, match="two dates"):
        find_interferograms([one], tmp_path / "w")
    odd = tmp_path / "c" / "20200101_20200113.xyz"
    odd.parent.mkdir()
    odd.write_text("x")
    with pytest.raises(InputError, match="unknown interferogram format"):
        find_interferograms([odd], tmp_path / "w")
    with pytest.raises(InputError, match="not found"):
        find_interferograms([tmp_path / "missing"], tmp_path / "w")
    with pytest.raises(InputError, match="no unwrapped interferogram"):
        find_interferograms([tmp_path / "c"], tmp_path / "w")
    insarfmt.write_geotiff(tmp_path / "d", dates, disp, pairs, coh)
    insarfmt.write_geotiff(tmp_path / "e", dates, disp, pairs[:1], coh, sep="_")
    with pytest.raises(InputError, match="given twice"):
        find_interferograms([tmp_path / "d", tmp_path / "e"], tmp_path / "w")


def test_grids_of_different_extents_meet(tmp_path, truth):
    dates, disp, pairs, coh = truth
    insarfmt.write_licsar(tmp_path / "f", dates, disp, pairs, coh)
    # crop one product by 3 columns and 2 rows (still on the same pixel lattice)
    import rasterio
    p = next((tmp_path / "f").rglob("*.geo.unw.tif"))
    with rasterio.open(p) as ds:
        data, prof = ds.read(1)[2:, 3:], ds.profile
    prof.update(width=data.shape[1], height=data.shape[0],
                transform=prof["transform"] * prof["transform"].translation(3, 2))
    with rasterio.open(p, "w", **prof) as ds:
        ds.write(data, 1)
    ifgs = find_interferograms([tmp_path / "f"], tmp_path / "w")
    grid = insar_grid(ifgs)
    assert grid.shape == (disp.shape[1] - 2, disp.shape[2] - 3)
    got = read_metres(ifgs[1], grid)
    a, b = pairs[1]
    np.testing.assert_allclose(got, (disp[b] - disp[a])[2:, 3:], atol=2e-7)


def test_radar_grids_of_different_sizes_refused(tmp_path, truth):
    dates, disp, pairs, coh = truth
    insarfmt.write_isce_tops(tmp_path / "x", dates, disp, pairs[:1], coh)
    insarfmt.write_isce_tops(tmp_path / "y", dates, disp[:, :20], pairs[1:2], coh[:, :20])
    ifgs = find_interferograms([tmp_path / "x" / "merged", tmp_path / "y" / "merged"],
                               tmp_path / "w")
    with pytest.raises(InputError, match="different sizes"):
        insar_grid(ifgs)


def test_pyrate_gamma_real_data(tmp_path):
    src = Path(DATA) / "pyrate_cropA"
    ifgs = find_interferograms([src], tmp_path)
    assert len(ifgs) == 30
    assert len({d for i in ifgs for d in (i.date1, i.date2)}) == 13
    assert {i.fmt for i in ifgs} == {"GAMMA"}
    # C band from radar_frequency 5.4050005e9 Hz in the slc.par headers
    assert ifgs[0].wavelength == pytest.approx(299792458.0 / 5.4050005e9, rel=1e-9)
    assert all(i.bperp is not None and abs(i.bperp) < 200 for i in ifgs)
    assert all(i.coherence is not None for i in ifgs)
