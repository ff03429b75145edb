"""DSM-OPT on real Pléiades data (Ventoux, tests/data/ventoux): RPC sources, crop offsets,
a tiled DIMAP delivery, relative pointing correction, the DSM of the pair; bad RPC input."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
import rasterio
from click.testing import CliRunner

from dsm_opt.config import DsmConfig
from dsm_opt.geometry import epipolar_grids, load_view
from dsm_opt.pipeline import NODATA, run
from dsm_opt.rpc_sources import (
    crop_offset,
    parse_dimap_rpc,
    read_rpc_file,
    rpc_agreement,
    shift_rpc,
)
from dsm_opt.sparse import correct_pointing_sparse, sparse_matches
from gdm.cli import main
from tests.datafiles import DATA

V = DATA / "ventoux"
RPC_XML = V / "RPC_PHR1B_P_201308051042194_SEN_690908101-001.XML"
FULL = (41801, 39182)  # rows, cols of the left full scene


def test_dimap_rpc_and_ossim_geom_describe_the_same_camera():
    geom = read_rpc_file(V / "left_image.geom")
    xml = parse_dimap_rpc(RPC_XML)
    worst = rpc_agreement(geom, xml, *FULL)
    print(f"\nDIMAP RPC XML vs OSSIM .geom over the full scene: {worst:.2e} px")
    assert worst < 1e-6
    # without the one-pixel DIMAP convention they would be a pixel apart
    from dataclasses import replace

    raw = replace(xml, line_off=xml.line_off + 1, samp_off=xml.samp_off + 1)
    assert rpc_agreement(geom, raw, *FULL) == pytest.approx(np.sqrt(2), abs=1e-3)


def test_crop_offset_from_the_model_transformation_tag():
    with rasterio.open(V / "left_image.tif") as ds:
        assert crop_offset(ds.transform, ds.crs) == (5000.0, 5000.0)
    with rasterio.open(V / "right_image.tif") as ds:
        assert crop_offset(ds.transform, ds.crs) == (5162.0, 4915.0)
    left = load_view(V / "left_image.tif")  # left_image.geom beside it
    assert "left_image.geom" in left.rpc_origin and (left.rows, left.cols) == (500, 500)
    full = read_rpc_file(V / "left_image.geom")
    lon, lat = left.rpc.localise(np.array([0.0]), np.array([0.0]), 1000.0)
    r, c = full.project(lon, lat, 1000.0)
    assert (r[0], c[0]) == pytest.approx((5000.0, 5000.0), abs=1e-6)


def test_crop_offset_makes_the_rpcs_consistent_with_the_images():
    """Sparse matches of the crops lie within a few pixels of their epipolar curves only
    when both crop offsets are applied (a missing offset is thousands of pixels)."""
    left = load_view(V / "left_image.tif")
    right = load_view(V / "right_image.tif")
    h0, h1 = left.rpc.height_range
    from dsm_opt.geometry import disparity_range

    grids = epipolar_grids(left, right, h0, h1)
    d_lo, d_hi = disparity_range(left, right, grids, h0, h1)
    m = sparse_matches(left, right, grids, d_lo, d_hi)
    _, report = correct_pointing_sparse(left, right, m, h0, h1)
    print(f"\n{len(m)} SIFT matches; across-epipolar residual {report['before']}")
    assert len(m) > 100
    assert abs(report["before"]["median_px"]) < 10
    assert report["before"]["nmad_px"] < 0.5  # real matches, sub-pixel


def _write_delivery(folder, tile=256):
    """A DINAMIS-like DIMAP delivery of the left crop: 2x2 JP2 tiles and its RPC XML."""
    folder.mkdir()
    with rasterio.open(V / "left_image.tif") as ds:
        img = ds.read(1)
    rows, cols = img.shape
    files = []
    for i, r0 in enumerate(range(0, rows, tile)):
        for j, c0 in enumerate(range(0, cols, tile)):
            part = img[r0:r0 + tile, c0:c0 + tile]
            name = f"IMG_PHR1B_P_201308051042194_SEN_690908101-001_R{i + 1}C{j + 1}.JP2"
            with rasterio.open(folder / name, "w", driver="JP2OpenJPEG", width=part.shape[1],
                               height=part.shape[0], count=1, dtype="uint16", QUALITY=100,
                               REVERSIBLE="YES") as out:
                out.write(part, 1)
            files.append((i + 1, j + 1, name))
    # the delivery's RPC describes the delivered image: rebase the full scene's to the crop
    text = RPC_XML.read_text()
    for key, shift in (("LINE_OFF", 5000.0), ("SAMP_OFF", 5000.0)):
        value = float(re.search(f"<{key}>([^<]+)</{key}>", text).group(1))
        text = re.sub(f"<{key}>[^<]+</{key}>", f"<{key}>{value - shift!r}</{key}>", text)
    (folder / RPC_XML.name).write_text(text)
    data_files = "".join(f'<Data_File tile_R="{r}" tile_C="{c}"><DATA_FILE_PATH href="{n}"/>'
                         "</Data_File>" for r, c, n in files)
    dim = folder / "DIM_PHR1B_P_201308051042194_SEN_690908101-001.XML"
    dim.write_text(
        '<?xml version="1.0" encoding="UTF-8"?><Dimap_Document><Metadata_Identification>'
        '<METADATA_FORMAT version="2.0">DIMAP</METADATA_FORMAT>'
        "<METADATA_PROFILE>PHR_SENSOR</METADATA_PROFILE></Metadata_Identification>"
        "<Dataset_Identification><DATASET_NAME>DS_PHR1B_201308051042194</DATASET_NAME>"
        "</Dataset_Identification><Dataset_Content><Dataset_Extent>"
        + "".join(f"<Vertex><LON>{x}</LON><LAT>{y}</LAT></Vertex>" for x, y in
                  ((5.16, 44.23), (5.41, 44.23), (5.41, 44.04), (5.16, 44.04)))
        + "</Dataset_Extent></Dataset_Content><Geoposition><Geoposition_Models>"
        "<Rational_Function_Model><Component><COMPONENT_PATH "
        f'href="{RPC_XML.name}"/></Component></Rational_Function_Model>'
        "</Geoposition_Models></Geoposition><Raster_Data><Data_Access><Data_Files>"
        f"{data_files}</Data_Files></Data_Access><Raster_Dimensions><NROWS>{rows}</NROWS>"
        f"<NCOLS>{cols}</NCOLS><NBANDS>1</NBANDS><Tile_Set><NTILES>{len(files)}</NTILES>"
        f'<Regular_Tiling><NTILES_SIZE nrows="{tile}" ncols="{tile}"/></Regular_Tiling>'
        "</Tile_Set></Raster_Dimensions></Raster_Data><Geometric_Data><Use_Area>"
        "<Located_Geometric_Values><LOCATION_TYPE>Center</LOCATION_TYPE>"
        "<TIME>2013-08-05T10:42:21.0Z</TIME></Located_Geometric_Values></Use_Area>"
        "</Geometric_Data></Dimap_Document>\n")
    return dim, img


def test_tiled_dimap_delivery_reads_as_one_image(tmp_path):
    dim, img = _write_delivery(tmp_path / "delivery")
    view = load_view(dim)
    assert (view.rows, view.cols) == img.shape
    assert np.array_equal(view.read(), img.astype(np.float32))  # lossless JP2, 4 tiles
    win = view.read((200, 300), (240, 270))  # a window across the four tiles
    assert np.array_equal(win, img[200:300, 240:270].astype(np.float32))
    ref = shift_rpc(read_rpc_file(V / "left_image.geom"), 5000.0, 5000.0)
    assert rpc_agreement(ref, view.rpc, view.rows, view.cols) < 1e-6
    assert view.date is not None and view.date.year == 2013
    # a missing tile is named
    next(dim.parent.glob("*_R2C2.JP2")).unlink()
    res = CliRunner().invoke(main, ["dsm", "run", str(dim), str(V / "right_image.tif"),
                                    "--out", str(tmp_path / "o"), "-q"])
    assert res.exit_code == 2 and "R2C2" in res.output and "Traceback" not in res.output


def _dsm(path):
    with rasterio.open(path) as ds:
        a = ds.read(1)
        return np.where(a == NODATA, np.nan, a), ds.transform


def _aligned(a, ta, b, tb):
    """b on a's grid (same cell size, origins on the same lattice)."""
    res = ta.a
    dx, dy = round((tb.c - ta.c) / res), round((ta.f - tb.f) / res)
    out = np.full(a.shape, np.nan, np.float32)
    r0, r1 = max(dy, 0), min(a.shape[0], b.shape[0] + dy)
    c0, c1 = max(dx, 0), min(a.shape[1], b.shape[1] + dx)
    out[r0:r1, c0:c1] = b[r0 - dy:r1 - dy, c0 - dx:c1 - dx]
    return out


@pytest.mark.slow
def test_pointing_bias_of_60_lines_is_removed(tmp_path):
    """right_image_bias.geom moves the right RPC by +60 lines: after the correction the
    across-epipolar residual is below 0.1 px and the DSM equals the unbiased one."""
    images = [V / "left_image.tif", V / "right_image.tif"]
    good = run(DsmConfig(images=images, out=tmp_path / "good"))
    biased = run(DsmConfig(images=images, rpcs=[None, V / "right_image_bias.geom"],
                           out=tmp_path / "biased"))
    rg = json.loads(good.report.read_text())
    rb = json.loads(biased.report.read_text())
    pb = rb["pointing"]
    a, ta = _dsm(good.dsm)
    b, tb = _dsm(biased.dsm)
    b = _aligned(a, ta, b, tb)
    both = np.isfinite(a) & np.isfinite(b)
    d = b[both] - a[both]
    med = float(np.median(d))
    nmad = float(1.4826 * np.median(np.abs(d - med)))
    print(f"\nVentoux, right RPC +60 lines: across-epipolar residual "
          f"{pb['before']['median_px']:+.3f} px before, {pb['after']['median_px']:+.3f} px "
          f"after ({pb['inliers']} matches, {pb['direction']}, shift at centre "
          f"{pb['shift_at_centre_px']}); unbiased pair: "
          f"{rg['pointing']['before']['median_px']:+.3f} -> "
          f"{rg['pointing']['after']['median_px']:+.3f} px; DSM difference median "
          f"{med:+.3f} m, NMAD {nmad:.3f} m over {both.sum()} cells "
          f"({both.sum() / np.isfinite(a).sum():.1%} of the unbiased DSM)")
    assert abs(pb["before"]["median_px"]) > 10
    assert abs(pb["after"]["median_px"]) <= 0.1
    assert nmad <= 0.2
    assert both.sum() >= 0.9 * np.isfinite(a).sum()
    assert rb["heights"]["source"] == "rpc"  # no bounds given
    assert rb["epipolar"]["range_source"].get("tile", 0) >= 1


def test_bad_rpc_input_exits_2(tmp_path):
    bad = tmp_path / "bad.geom"
    bad.write_text("line_num_coeff_00: 1\nline_off: x\n")
    garbage = tmp_path / "garbage.xml"
    garbage.write_text("<Dimap_Document><oops>")
    images = [str(V / "left_image.tif"), str(V / "right_image.tif")]
    for args, words in (
            (["--rpc", "-", "--rpc", str(bad)], "bad.geom"),
            (["--rpc", "-", "--rpc", str(garbage)], "garbage.xml"),
            (["--rpc", "-", "--rpc", str(tmp_path / "none.geom")], "no such file"),
            (["--rpc", str(bad)], "once per image")):
        out = tmp_path / f"o{len(words)}"
        res = CliRunner().invoke(main, ["dsm", "run", *images, *args, "--out", str(out),
                                        "-q"])
        assert res.exit_code == 2, res.output
        assert words in res.output and "Traceback" not in res.output
        assert len(res.output.strip().splitlines()) == 1
        assert not out.exists() or not any(out.iterdir())
    # an image with no RPC anywhere
    plain = tmp_path / "plain.tif"
    with rasterio.open(plain, "w", driver="GTiff", width=64, height=64, count=1,
                       dtype="uint16") as ds:
        ds.write(np.ones((64, 64), np.uint16), 1)
    res = CliRunner().invoke(main, ["dsm", "run", images[0], str(plain), "--out",
                                    str(tmp_path / "p"), "-q"])
    assert res.exit_code == 2 and "no RPC" in res.output
