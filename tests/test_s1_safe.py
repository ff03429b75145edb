"""Real Sentinel-1 annotation: parsing, burst IDs, geometry vs the product's geolocation grid."""

from __future__ import annotations

import shutil
import zipfile
from pathlib import Path

import numpy as np
import pytest
from shapely.geometry import box

from gdmcore import InputError
from gdmio.s1.safe import burst_id, open_safe, select_bursts
from kernels.geometry import ecef_to_llh, geo2rdr, llh_to_ecef, rdr2geo
from tests.datafiles import DATA

SAFES = DATA / "s1_safe_xarray_sentinel"
S1A = next(SAFES.glob("S1A_IW_SLC*.SAFE"))
S1B = next(SAFES.glob("S1B_IW_SLC*.SAFE"))
C = 299792458.0


@pytest.fixture(scope="module")
def s1b():
    return open_safe(S1B)


def test_manifest_and_annotation_are_parsed(s1b):
    assert (s1b.platform, s1b.mode, s1b.product_type) == ("S1B", "IW", "SLC")
    assert (s1b.relative_orbit, s1b.absolute_orbit, s1b.pass_direction) == (168, 26269,
                                                                           "DESCENDING")
    assert sorted(s1b.swaths) == [("IW1", "VH"), ("IW1", "VV"), ("IW2", "VH")]
    ann = s1b.swath("IW1", "VV")
    assert (ann.lines_per_burst, ann.samples_per_burst, len(ann.bursts)) == (1501, 21632, 9)
    assert abs(ann.azimuth_time_interval - 2.055556299999998e-03) < 1e-15
    assert abs(ann.wavelength - 0.05546576) < 1e-7
    assert len(ann.orbit_times) == 17 and len(ann.dc) == 10 and len(ann.fm) == 10
    assert len(ann.grid["latitude"]) == 210
    b = ann.bursts[0]
    assert (b.first_valid_line, b.first_valid_sample) == (19, 529)
    assert b.last_valid_sample < 21632 and b.last_valid_line < 1501


def test_burst_ids_follow_esa_convention(s1b):
    ids = [b.burst_id for b in s1b.swath("IW1", "VV").bursts]
    assert np.all(np.diff(ids) == 1), ids
    assert ids[0] == 359497  # ESA formula on relative orbit 168, 2189.7 s after ANX
    assert [b.burst_id for b in s1b.swath("IW1", "VH").bursts] == ids
    iw2 = [b.burst_id for b in s1b.swath("IW2", "VH").bursts]
    assert abs(iw2[0] - ids[0]) <= 1  # swaths of one burst cycle share (nearly) one ID
    assert burst_id(1, 2.299849 + 1e-6) == 1 and burst_id(175, 12 * 86400 / 175 + 3.0) == 1


@pytest.mark.parametrize("safe,swath,pol", [(S1B, "IW1", "VV"), (S1B, "IW2", "VH"),
                                            (S1A, "IW1", "HH")])
def test_range_doppler_matches_the_geolocation_grid(safe, swath, pol):
    ann = open_safe(safe).swath(swath, pol)
    orbit = ann.orbit()
    g = ann.grid
    tg = np.array([orbit.seconds(t) for t in ann.grid_times])
    poly = orbit.polynomial(tg.min(), tg.max())
    xyz = llh_to_ecef(g["latitude"], g["longitude"], g["height"])
    t, r = geo2rdr(xyz, poly.coef, poly.t_mid, poly.t_scale)
    az_px = np.abs(t - tg) / ann.azimuth_time_interval
    rg_px = np.abs(2 * r / C - g["slantRangeTime"]) * ann.range_sampling_rate
    # burst timing (burst azimuthTime + line * interval) against the grid's azimuth times
    lpb = ann.lines_per_burst
    burst_px = []
    for when, line in zip(ann.grid_times, g["line"], strict=True):
        b = min(int(line) // lpb, len(ann.bursts) - 1)
        tb = (orbit.seconds(ann.bursts[b].azimuth_time)
              + (line - b * lpb) * ann.azimuth_time_interval)
        burst_px.append(abs(tb - orbit.seconds(when)) / ann.azimuth_time_interval)
    # and back: grid (time, range, height) -> ground, distance in range pixels
    back = rdr2geo(tg, 0.5 * C * g["slantRangeTime"], poly.coef, poly.t_mid, poly.t_scale,
                   height=g["height"])
    dist_px = np.linalg.norm(back - xyz, axis=1) / ann.range_pixel_spacing
    print(f"\n{safe.name[:3]} {swath} {pol}: geo2rdr max error azimuth {az_px.max():.4f} px, "
          f"range {rg_px.max():.5f} px; burst timing vs grid {max(burst_px):.3f} px; "
          f"rdr2geo {dist_px.max():.4f} range px")
    assert az_px.max() < 1.0 and rg_px.max() < 1.0 and max(burst_px) < 1.0
    assert dist_px.max() < 1.0


def test_burst_footprints_and_aoi_selection(s1b):
    ann = s1b.swath("IW1", "VV")
    g = ann.grid
    lpb = ann.lines_per_burst
    # a small AOI around the middle of burst 4 (grid points on its first and last lines)
    sel = (g["line"] >= 4 * lpb) & (g["line"] <= 5 * lpb) & (g["pixel"] > 8000) & (
        g["pixel"] < 12000)
    lat, lon = g["latitude"][sel].mean(), g["longitude"][sel].mean()
    aoi = box(lon - 0.01, lat - 0.01, lon + 0.01, lat + 0.01)
    twin = open_safe(S1B)
    twin.start = twin.start.replace(year=2021, month=4, day=13)  # a fake second date
    chosen = select_bursts([s1b, twin], aoi, polarisation="VV")
    assert chosen.swath == "IW1" and chosen.polarisation == "VV"
    assert chosen.keys == [f"IW1_{ann.bursts[4].burst_id}"], chosen.keys
    with pytest.raises(InputError, match="covers the AOI"):
        select_bursts([s1b, twin], box(0, 0, 0.1, 0.1))


def test_measurement_bursts_read_with_valid_margins(s1b):
    ann = s1b.swath("IW1", "VV")
    b = ann.bursts[2]
    data = ann.read_burst(b)
    assert data.shape == (1501, 21632) and data.dtype == np.complex64
    inside = data[b.first_valid_line:b.last_valid_line + 1,
                  b.first_valid_sample:b.last_valid_sample + 1]
    assert inside[0, 0] != 0 and np.all(inside == inside[0, 0])  # the file's placeholder
    assert np.all(data[:b.first_valid_line] == 0) and np.all(data[:, :b.first_valid_sample] == 0)


def test_zip_reads_like_the_folder(tmp_path):
    z = tmp_path / f"{S1A.stem}.zip"
    with zipfile.ZipFile(z, "w") as f:
        for p in S1A.rglob("*"):
            if p.is_file():
                f.write(p, f"{S1A.name}/{p.relative_to(S1A).as_posix()}")
    a, b = open_safe(S1A).swath("IW1", "HH"), open_safe(z).swath("IW1", "HH")
    assert [x.burst_id for x in a.bursts] == [x.burst_id for x in b.bursts]
    assert b.measurement.startswith("/vsizip/")
    assert b.read_burst(b.bursts[0]).shape == (1500, a.samples_per_burst)


def _copy(src: Path, dest: Path, old: str = "", new: str = "") -> Path:
    out = shutil.copytree(src, dest / src.name)
    if old:
        man = out / "manifest.safe"
        man.write_text(man.read_text().replace(old, new))
    return out


def test_bad_products_are_input_errors(tmp_path, s1b):
    ew = _copy(S1A, tmp_path / "ew", "<s1sarl1:mode>IW</s1sarl1:mode>",
               "<s1sarl1:mode>EW</s1sarl1:mode>")
    with pytest.raises(InputError, match="mode EW"):
        open_safe(ew)
    grd = _copy(S1A, tmp_path / "grd", "<s1sarl1:productType>SLC<",
                "<s1sarl1:productType>GRD<")
    with pytest.raises(InputError, match="GRD"):
        open_safe(grd)
    empty = tmp_path / "x.SAFE"
    empty.mkdir()
    with pytest.raises(InputError, match="manifest"):
        open_safe(empty)
    with pytest.raises(InputError, match="mixed tracks"):
        select_bursts([s1b, open_safe(S1A)])
    with pytest.raises(InputError, match="same date"):
        select_bursts([s1b, open_safe(S1B)])
    with pytest.raises(InputError, match="at least 2"):
        select_bursts([s1b])
    _ = ecef_to_llh  # geometry helpers are exercised in test_kernels_geometry
