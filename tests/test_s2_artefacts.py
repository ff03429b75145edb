"""Sentinel-2 artefacts: jitter and detector offsets, detector footprints, SCL masking."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import rasterio
from rasterio.crs import CRS
from rasterio.transform import from_origin

from gdm_opt.config import OptConfig
from gdm_opt.pipeline import run
from gdmcore import InputError
from gdmio.grid import Grid
from gdmio.raster import open_info
from gdmio.s2meta import find_detfoo, find_scl, read_detector_map, read_scl_mask
from kernels.s2artefacts import (
    detector_labels,
    estimate_artefacts,
    estimate_detector_boundaries,
    track_angle_from_labels,
)
from simulators.opt import PushbroomArtefacts, SimulateConfig, pushbroom_artefacts, simulate

# ------------------------------------------------------------------ kernel on simulated fields


def _landslide(shape: tuple[int, int]) -> np.ndarray:
    """A deforming zone: a smooth bump of about 1.5 px moving south-east."""
    ny, nx = shape
    i, j = np.mgrid[0:ny, 0:nx]
    bump = np.exp(-(((i - 0.45 * ny) / (0.12 * ny)) ** 2 + ((j - 0.55 * nx) / (0.15 * nx)) ** 2))
    return np.stack([1.0 * bump, 1.2 * bump])


CASES = {
    "one-period-4-detectors": PushbroomArtefacts((0.3, 0.15), (40.0,), 4, 0.15),
    "two-periods-6-detectors": PushbroomArtefacts((0.1, 0.2), (25.0, 70.0), 6, 0.2),
    "long-period-3-detectors": PushbroomArtefacts((0.2, 0.2), (90.0,), 3, 0.1),
    "small-jitter-12-detectors": PushbroomArtefacts((0.15, 0.1), (30.0,), 12, 0.15),
    "tilted-track": PushbroomArtefacts((0.25, 0.1), (50.0,), 4, 0.15, angle_deg=12.0),
}


def _case(name: str, seed: int, noise=0.03):
    shape = (160, 360 if CASES[name].detectors > 6 else 192)
    art, labels, bounds = pushbroom_artefacts(shape, CASES[name], seed=seed)
    rng = np.random.default_rng(seed + 100)
    truth = _landslide(shape)
    field = truth + art + noise * rng.standard_normal(art.shape)
    field[:, rng.random(shape) < 0.1] = np.nan  # failed windows
    return truth, field, labels, bounds


def _rmse(a: np.ndarray, b: np.ndarray) -> float:
    ok = np.all(np.isfinite(a), axis=0) & np.all(np.isfinite(b), axis=0)
    return float(np.sqrt(np.mean((a - b)[:, ok] ** 2)))


@pytest.mark.parametrize("name", list(CASES))
@pytest.mark.parametrize("footprints", [False, True])
def test_correction_reduces_error_at_least_3x(name, footprints):
    """Jitter 0.1-0.3 px and detector steps around a landslide: error / 3 or better.

    With the footprints known (labels given) or estimated from the field (steps across the
    track), the deforming zone left in the usable mask (the fit rejects it).
    """
    truth, field, labels, _ = _case(name, seed=len(name))
    usable = np.all(np.isfinite(field), axis=0)
    angle = CASES[name].angle_deg
    fit = estimate_artefacts(field, usable, labels if footprints else None, angle_deg=angle,
                             find_detectors=not footprints)
    before = _rmse(field, truth)
    after = _rmse(field - fit.correction, truth)
    assert before / after >= 3.0, (before, after)
    # The deforming zone was rejected from the fit, the landslide kept in the field.
    zone = np.hypot(*truth) > 0.5
    assert not fit.used[zone].any()
    corrected = field - fit.correction
    assert np.nanmedian(corrected[1][zone]) == pytest.approx(np.median(truth[1][zone]), abs=0.05)


def test_estimated_boundaries_match_the_simulated_ones():
    _, field, _, bounds = _case("one-period-4-detectors", seed=3)
    usable = np.all(np.isfinite(field), axis=0)
    fit = estimate_artefacts(field, usable, find_detectors=True)
    assert fit.boundaries.size == bounds.size
    assert np.abs(fit.boundaries - bounds).max() <= 1.5


def test_jitter_amplitude_is_reported():
    shape = (200, 150)
    art, _, _ = pushbroom_artefacts(shape, PushbroomArtefacts((0.3, 0.1), (50.0,), 1, 0.0))
    fit = estimate_artefacts(art, np.ones(shape, bool), smooth=0.0)
    assert fit.jitter_amplitude == pytest.approx([0.3, 0.1], rel=0.05)


def test_no_artefact_gives_no_correction():
    """Negative control: white noise only, no step found, correction at the noise level."""
    rng = np.random.default_rng(5)
    field = 0.05 * rng.standard_normal((2, 150, 180))
    fit = estimate_artefacts(field, np.ones((150, 180), bool), find_detectors=True)
    assert fit.boundaries.size == 0
    assert np.sqrt(np.mean(fit.correction ** 2)) < 0.02


def test_boundaries_of_tilted_strips_and_track_angle():
    shape = (120, 150)
    labels = detector_labels(shape, np.array([40.0, 90.0]), angle_deg=10.0)
    assert track_angle_from_labels(labels) == pytest.approx(10.0, abs=0.6)
    art, lab, _ = pushbroom_artefacts(shape, PushbroomArtefacts((0.0, 0.0), (50.0,), 3, 0.2,
                                                               angle_deg=10.0), seed=2)
    found = estimate_detector_boundaries(art, np.ones(shape, bool), angle_deg=10.0)
    assert found.size == 2


def test_kernel_rejects_bad_inputs():
    f = np.zeros((2, 20, 20))
    with pytest.raises(ValueError, match="usable"):
        estimate_artefacts(f, np.ones((20, 21), bool))
    with pytest.raises(ValueError, match="usable windows"):
        estimate_artefacts(f, np.zeros((20, 20), bool))
    with pytest.raises(ValueError, match="labels"):
        estimate_artefacts(f, np.ones((20, 20), bool), labels=np.zeros((20, 20)))
    with pytest.raises(ValueError, match="float"):
        estimate_artefacts(np.zeros((20, 20), int), np.ones((20, 20), bool))


# ------------------------------------------------------------------ detector footprint masks

EPSG = 32631
X0, Y0, RES = 600000.0, 4900000.0, 10.0


def _detfoo_gml(path: Path, strips: list[tuple[int, float, float]], height: float,
                tilt: float = 0.0) -> Path:
    """A MSK_DETFOO GML as older L1C products have: one 3-D polygon per detector.

    ``strips``: (detector, x_left, x_right) at the top; edges move east by ``tilt`` m per
    metre southwards.
    """
    feats = []
    for det, xl, xr in strips:
        yb = Y0 - height
        dx = tilt * height
        pts = [(xl, Y0), (xr, Y0), (xr + dx, yb), (xl + dx, yb), (xl, Y0)]
        pos = " ".join(f"{x} {y} 0" for x, y in pts)
        feats.append(f"""
  <eop:maskMembers>
    <eop:MaskFeature gml:id="detector_footprint-B04-{det:02d}-0">
      <eop:maskType codeSpace="urn:gs2:S2PDGS:maskType">DETECTOR_FOOTPRINT</eop:maskType>
      <eop:extentOf>
        <gml:Polygon gml:id="detector_footprint-B04-{det:02d}-0-polygon"
            srsName="urn:ogc:def:crs:EPSG::{EPSG}">
          <gml:exterior><gml:LinearRing>
            <gml:posList srsDimension="3">{pos}</gml:posList>
          </gml:LinearRing></gml:exterior>
        </gml:Polygon>
      </eop:extentOf>
    </eop:MaskFeature>
  </eop:maskMembers>""")
    path.write_text(f"""<?xml version="1.0" encoding="UTF-8"?>
<eop:Mask xmlns:eop="http://www.opengis.net/eop/2.0" xmlns:gml="http://www.opengis.net/gml/3.2"
    gml:id="MSK_DETFOO_B04">
  <gml:boundedBy><gml:Envelope srsName="urn:ogc:def:crs:EPSG::{EPSG}">
    <gml:lowerCorner>{X0} {Y0 - height}</gml:lowerCorner>
    <gml:upperCorner>{X0 + 10000} {Y0}</gml:upperCorner>
  </gml:Envelope></gml:boundedBy>{''.join(feats)}
</eop:Mask>
""")
    return path


def _grid(n: int = 64, res: float = RES) -> Grid:
    return Grid(CRS.from_epsg(EPSG), from_origin(X0, Y0, res, res), n, n)


def test_detfoo_gml_is_rasterised_on_the_grid(tmp_path):
    gml = _detfoo_gml(tmp_path / "MSK_DETFOO_B04.gml",
                      [(3, X0 - 100, X0 + 200), (4, X0 + 200, X0 + 450),
                       (5, X0 + 450, X0 + 900)], height=640)
    det = read_detector_map(str(gml), _grid())
    x = X0 + (np.arange(64) + 0.5) * RES
    expected = np.where(x < X0 + 200, 3, np.where(x < X0 + 450, 4, np.where(x < X0 + 900, 5, -1)))
    assert np.array_equal(det[10], expected)
    assert np.array_equal(det[0], det[63])


def test_detfoo_gml_tilt_gives_the_track_angle(tmp_path):
    tilt = np.tan(np.radians(12.0))
    gml = _detfoo_gml(tmp_path / "MSK_DETFOO_B04.gml",
                      [(1, X0 - 500, X0 + 300), (2, X0 + 300, X0 + 2000)], height=1280,
                      tilt=tilt)
    det = read_detector_map(str(gml), _grid(128))
    assert track_angle_from_labels(det.astype(np.int64)) == pytest.approx(12.0, abs=0.7)


def _write_raster(path: Path, data: np.ndarray, res: float = RES, epsg: int = EPSG,
                  x0: float = X0, y0: float = Y0, nodata=None) -> Path:
    with rasterio.open(path, "w", driver="GTiff", width=data.shape[1], height=data.shape[0],
                       count=1, dtype=data.dtype, crs=CRS.from_epsg(epsg),
                       transform=from_origin(x0, y0, res, res), nodata=nodata) as dst:
        dst.write(data, 1)
    return path


def test_detfoo_raster_is_read_at_nearest_neighbour(tmp_path):
    """Newer products: a raster of detector numbers (at 20 m here, read on a 10 m grid)."""
    raw = np.zeros((32, 32), np.uint8)
    raw[:, :10], raw[:, 10:25] = 7, 8
    path = _write_raster(tmp_path / "T31TGL_20230115_MSK_DETFOO_B04.tif", raw, res=20.0)
    det = read_detector_map(str(path), _grid())
    assert set(np.unique(det[:, :20])) == {7}
    assert set(np.unique(det[:, 20:50])) == {8}
    assert set(np.unique(det[:, 50:])) == {-1}


def test_corrupt_detfoo_masks_are_bad_input(tmp_path):
    bad = tmp_path / "MSK_DETFOO_B04.gml"
    bad.write_text("<eop:Mask xmlns:eop='x'><unclosed>")
    with pytest.raises(InputError, match="corrupt GML"):
        read_detector_map(str(bad), _grid())
    no_id = _detfoo_gml(tmp_path / "b.gml", [(3, X0, X0 + 300)], 640)
    no_id.write_text(no_id.read_text().replace("detector_footprint-B04-03-0\"", "x\""))
    with pytest.raises(InputError, match="names no detector"):
        read_detector_map(str(no_id), _grid())
    raw = np.full((32, 32), 40, np.uint8)
    with pytest.raises(InputError, match="not a detector mask"):
        read_detector_map(str(_write_raster(tmp_path / "d.tif", raw)), _grid())
    trunc = tmp_path / "t.tif"
    trunc.write_bytes(_write_raster(tmp_path / "ok.tif", raw).read_bytes()[:300])
    with pytest.raises(InputError):
        read_detector_map(str(trunc), _grid())


def test_detfoo_found_in_a_safe(tmp_path):
    qi = tmp_path / "S2A_MSIL1C_20230115T103021_N0509_R108_T31TGL_20230115T141222.SAFE" \
        / "GRANULE" / "L1C_T31TGL" / "QI_DATA"
    qi.mkdir(parents=True)
    _detfoo_gml(qi / "MSK_DETFOO_B04.gml", [(3, X0, X0 + 300)], 640)
    name = find_detfoo(qi.parents[2], "B04", None)
    assert name is not None and name.endswith("MSK_DETFOO_B04.gml")
    assert find_detfoo(qi.parents[2], "B08", None) is None
    import shutil

    safe = qi.parents[2]
    zipped = Path(shutil.make_archive(str(tmp_path / "z" / safe.name), "zip", safe.parent,
                                      safe.name))
    zname = find_detfoo(zipped, "B04", None)
    assert zname is not None and zname.startswith("/vsizip/")
    det = read_detector_map(zname, _grid())
    assert set(np.unique(det)) == {-1, 3}


# ------------------------------------------------------------------ SCL


def test_scl_classes_are_masked(tmp_path):
    scl = np.arange(12, dtype=np.uint8).repeat(4)[None, :].repeat(48, axis=0)
    img = _write_raster(tmp_path / "S2_20230115_B04.tif", np.ones((48, 48), np.uint16))
    _write_raster(tmp_path / "S2_20230115_SCL.tif", scl)
    _write_raster(tmp_path / "S2_20230316_SCL.tif", scl)  # another date: not this one's
    info = find_scl(img, open_info(img).date)
    assert info is not None and info.name == "S2_20230115_SCL.tif"
    mask = read_scl_mask(info, Grid(CRS.from_epsg(EPSG), from_origin(X0, Y0, RES, RES), 48, 48))
    masked_classes = set(scl[mask].tolist())
    assert masked_classes == {0, 1, 3, 6, 8, 9, 10, 11}
    assert not mask[scl == 4].any()


# ------------------------------------------------------------------ pipeline


@pytest.fixture(scope="module")
def sim(tmp_path_factory):
    out = tmp_path_factory.mktemp("s2art")
    return simulate(SimulateConfig(case="landslide", size=256, dates=2, seed=21), out / "in")


def _copy_inputs(sim, dest: Path) -> list[Path]:
    dest.mkdir(parents=True, exist_ok=True)
    paths = []
    for p in sim.images:
        q = dest / p.name
        q.write_bytes(p.read_bytes())
        paths.append(q)
    return paths


def test_pipeline_scl_detfoo_and_quality_in_report(sim, tmp_path):
    images = _copy_inputs(sim, tmp_path / "in")
    with rasterio.open(images[0]) as src:
        t = src.transform
    x0, y0 = t.c, t.f
    scl = np.full((128, 128), 4, np.uint8)
    scl[10:40, 80:120] = 9  # a cloud on the first date
    for p, d in zip(images, sim.dates, strict=True):
        _write_raster(p.parent / f"T31_{d:%Y%m%d}_SCL_20m.tif", scl, res=20.0, x0=x0, y0=y0)
        gml = _detfoo_gml(p.parent / f"T31_{d:%Y%m%d}_MSK_DETFOO_B04.gml",
                          [(3, x0 - 100, x0 + 1200), (4, x0 + 1200, x0 + 3000)], 2560)
        gml.write_text(gml.read_text().replace(str(X0), str(x0)).replace(str(Y0), str(y0)))
    out = run(OptConfig(images=images, out=tmp_path / "out", preset="slide", window=32,
                        step=8))
    report = json.loads(out.report.read_text())
    pair = report["pairs"][0]
    assert pair["quality"]["scl_masked_fraction"] == pytest.approx(30 * 40 / 128 ** 2, abs=0.02)
    assert 0 < pair["quality"]["sigma_px"] < 0.1
    assert pair["artefacts"]["detectors_from"] == "footprints"
    assert len(pair["artefacts"]["detector_offsets_px"]) == 2
    with rasterio.open(out.east) as src:
        east = src.read(1)
    # Windows centred on the cloud are no-data.
    assert np.isnan(east[3:8, 22:28]).all()


def _gdm(*args) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "gdm.cli", *map(str, args)],
                          capture_output=True, text=True, timeout=300)


def _bad(proc: subprocess.CompletedProcess, out: Path, word: str) -> None:
    assert proc.returncode == 2, proc.stderr
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr
    assert word.lower() in lines[0].lower(), lines[0]
    assert not out.exists() or not any(out.iterdir())


@pytest.mark.parametrize("problem", ["scl-crs", "scl-float", "scl-values", "detfoo-corrupt"])
def test_bad_quality_layers_exit_2_without_products(sim, tmp_path, problem):
    images = _copy_inputs(sim, tmp_path / "in")
    d = sim.dates[1]
    with rasterio.open(images[0]) as src:
        x0, y0 = src.transform.c, src.transform.f
    word = "scene classification"
    if problem == "scl-crs":  # right size, wrong place (another UTM zone)
        _write_raster(images[1].parent / f"X_{d:%Y%m%d}_SCL.tif", np.full((128, 128), 4,
                      np.uint8), res=20.0, epsg=32632, x0=x0, y0=y0)
        word = "does not cover"
    elif problem == "scl-float":
        _write_raster(images[1].parent / f"X_{d:%Y%m%d}_SCL.tif",
                      np.full((128, 128), 4, np.float32), res=20.0, x0=x0, y0=y0)
    elif problem == "scl-values":
        _write_raster(images[1].parent / f"X_{d:%Y%m%d}_SCL.tif",
                      np.full((128, 128), 200, np.uint8), res=20.0, x0=x0, y0=y0)
    else:
        (images[1].parent / f"X_{d:%Y%m%d}_MSK_DETFOO_B04.gml").write_text("<a><b></a>")
        word = "corrupt GML"
    out = tmp_path / "out"
    _bad(_gdm("opt", "run", *images, "--out", out, "--preset", "slide", "-q"), out, word)


# ------------------------------------------------------------------ time-series uncertainty


def _network(kind: str, n: int = 6) -> np.ndarray:
    if kind == "chain":
        return np.array([(k, k + 1) for k in range(n - 1)])
    return np.array([(i, j) for i in range(n) for j in range(i + 1, n)])


@pytest.mark.parametrize("kind", ["chain", "all"])
def test_series_std_predicts_the_error(kind):
    """Per-date formal sigma against the measured scatter (pairs with 0.1 px of noise)."""
    from kernels.timeseries import invert_timeseries

    rng = np.random.default_rng(1)
    t = np.arange(6) * 0.2
    pairs = _network(kind)
    sigma = 0.1
    obs = np.stack([(t[j] - t[i]) * 1.5 + sigma * rng.standard_normal((60, 60))
                    for i, j in pairs]).astype(np.float32)
    w = np.full(obs.shape, 1 / sigma ** 2, np.float32)
    res = invert_timeseries(pairs, obs, w, t, inverse_variance=True)
    slow = invert_timeseries(pairs, obs, w, t, inverse_variance=True, use_shared=False)
    np.testing.assert_allclose(res.series_std, slow.series_std, rtol=1e-5)
    np.testing.assert_allclose(res.velocity_formal_std, slow.velocity_formal_std, rtol=1e-5)
    err = (res.series - (t * 1.5)[:, None, None]).std(axis=(1, 2))
    pred = res.series_std.mean(axis=(1, 2))
    assert pred[0] == 0
    np.testing.assert_allclose(pred[1:], err[1:], rtol=0.15)
    vel_err = np.sqrt(np.mean((res.velocity - 1.5) ** 2))
    assert res.velocity_formal_std.mean() == pytest.approx(vel_err, rel=0.15)
    rel = invert_timeseries(pairs, obs, w, t)
    if kind == "chain":  # no redundancy: no a-posteriori factor
        assert np.isnan(rel.series_std[1:]).all()
    else:
        np.testing.assert_allclose(rel.series_std.mean(axis=(1, 2))[1:], err[1:], rtol=0.15)


def test_series_std_with_varying_pair_weights():
    """A noisier pair, down-weighted: the per-pixel path and the prediction still agree."""
    from kernels.timeseries import invert_timeseries

    rng = np.random.default_rng(2)
    t = np.arange(5) * 0.25
    pairs = _network("all", 5)
    sig = np.where(np.arange(len(pairs)) % 3 == 0, 0.3, 0.05)
    obs = np.stack([(t[j] - t[i]) + s * rng.standard_normal((50, 50))
                    for (i, j), s in zip(pairs, sig, strict=True)]).astype(np.float32)
    w = np.broadcast_to((1 / sig ** 2)[:, None, None], obs.shape).astype(np.float32)
    res = invert_timeseries(pairs, obs, w, t, inverse_variance=True)
    err = (res.series - t[:, None, None]).std(axis=(1, 2))
    np.testing.assert_allclose(res.series_std.mean(axis=(1, 2))[1:], err[1:], rtol=0.2)
    flat = invert_timeseries(pairs, obs, None, t)
    flat_err = (flat.series - t[:, None, None]).std(axis=(1, 2))
    assert np.all(err[1:] < flat_err[1:])


# ------------------------------------------------------------------ end to end, image level


def _write_footprints(sim_cfg: SimulateConfig, images: list[Path]) -> None:
    """The simulated detector strips as MSK_DETFOO rasters (detector 1..n) beside the images."""
    art = PushbroomArtefacts((0.0, 0.0), (100.0,), sim_cfg.detectors, 0.0,
                             sim_cfg.track_angle_deg)
    _, labels, _ = pushbroom_artefacts((sim_cfg.size, sim_cfg.size), art, seed=0,
                                       layout_seed=sim_cfg.seed)
    for p in images:
        with rasterio.open(p) as src:
            profile = {"driver": "GTiff", "width": src.width, "height": src.height,
                       "count": 1, "dtype": "uint8", "crs": src.crs,
                       "transform": src.transform}
        d = open_info(p).date
        with rasterio.open(p.parent / f"T31_{d:%Y%m%d}_MSK_DETFOO_B04.tif", "w",
                           **profile) as dst:
            dst.write((labels + 1).astype(np.uint8), 1)


E2E = {
    "landslide, jitter 0.25 px P=160, 3 detectors estimated":
        ({"case": "landslide", "jitter_px": 0.25, "jitter_period_px": 160.0, "detectors": 3,
          "detector_step_px": 0.15, "seed": 4}, False),
    "landslide, jitter 0.2 px P=240, 4 detectors tilted 10 deg, from footprints":
        ({"case": "landslide", "jitter_px": 0.2, "jitter_period_px": 240.0, "detectors": 4,
          "detector_step_px": 0.2, "track_angle_deg": 10.0, "seed": 8}, True),
}


@pytest.mark.slow
@pytest.mark.parametrize("name", list(E2E))
def test_pipeline_removes_simulated_image_artefacts(tmp_path, name):
    """Images rendered with jitter and detector offsets: error of gdm opt / 3 or better."""
    from gdm_opt.demo import accuracy_against_truth

    kw, footprints = E2E[name]
    cfg = SimulateConfig(size=384, dates=2, **kw)
    sim = simulate(cfg, tmp_path / "in")
    if footprints:
        _write_footprints(cfg, sim.images)
    rmse = {}
    for mode in ("none", "all"):
        out = run(OptConfig(images=sim.images, out=tmp_path / mode, preset="slide",
                            artefacts=mode))
        rmse[mode] = accuracy_against_truth(out.east, out.north, sim.truth_east,
                                            sim.truth_north, band=2, resolution=10.0).rmse_px
    report = json.loads(out.report.read_text())["pairs"][0]["artefacts"]
    assert report["detectors_from"] == ("footprints" if footprints else "estimated steps")
    if footprints:
        assert report["track_angle_deg"] == pytest.approx(cfg.track_angle_deg, abs=1.0)
    assert rmse["none"] / rmse["all"] >= 3.0, rmse


# ------------------------------------------------------------------ L2A SAFE (folder and zip)


def _jp2(path: Path, data: np.ndarray, crs, transform) -> None:
    with rasterio.open(path, "w", driver="JP2OpenJPEG", width=data.shape[1],
                       height=data.shape[0], count=1, dtype=data.dtype, crs=crs,
                       transform=transform, QUALITY=100, REVERSIBLE="YES") as dst:
        dst.write(data, 1)


def _make_l2a(folder: Path, tif: Path, date: str, cloud: bool) -> Path:
    """A minimal L2A SAFE: B04 at R10m, SCL at R20m, MSK_DETFOO_B04.jp2 in QI_DATA."""
    safe = folder / f"S2B_MSIL2A_{date}T103021_N0509_R108_T31TGL_{date}T141222.SAFE"
    gran = safe / "GRANULE" / f"L2A_T31TGL_A040000_{date}T103021"
    (gran / "IMG_DATA" / "R10m").mkdir(parents=True)
    (gran / "IMG_DATA" / "R20m").mkdir(parents=True)
    (gran / "QI_DATA").mkdir(parents=True)
    with rasterio.open(tif) as src:
        data, crs, t = src.read(1), src.crs, src.transform
    _jp2(gran / "IMG_DATA" / "R10m" / f"T31TGL_{date}T103021_B04_10m.jp2", data, crs, t)
    n = data.shape[0] // 2
    scl = np.full((n, n), 5, np.uint8)
    if cloud:
        scl[5:25, 5:40] = 8
    t20 = t * rasterio.Affine.scale(2)
    _jp2(gran / "IMG_DATA" / "R20m" / f"T31TGL_{date}T103021_SCL_20m.jp2", scl, crs, t20)
    det = np.ones((n, n), np.uint8)
    det[:, n // 2:] = 2
    _jp2(gran / "QI_DATA" / "MSK_DETFOO_B04.jp2", det, crs, t20)
    return safe


def test_l2a_safe_scl_and_footprints_folder_and_zip(sim, tmp_path):
    import shutil

    safes = [_make_l2a(tmp_path / "safe", p, f"{d:%Y%m%d}", cloud=k == 1)
             for k, (p, d) in enumerate(zip(sim.images, sim.dates, strict=True))]
    scl = find_scl(safes[1], None)
    assert scl is not None and "SCL" in scl.name
    det = find_detfoo(safes[0], "B04", None)
    assert det is not None and det.endswith("MSK_DETFOO_B04.jp2")
    zips = [Path(shutil.make_archive(str(tmp_path / "zip" / s.name), "zip", s.parent, s.name))
            for s in safes]
    assert find_scl(zips[1], None) is not None
    zdet = find_detfoo(zips[0], "B04", None)
    assert zdet is not None and zdet.startswith("/vsizip/")
    for inputs, label in ((safes, "folder"), (zips, "zip")):
        out = run(OptConfig(images=inputs, out=tmp_path / label, preset="slide"))
        pair = json.loads(out.report.read_text())["pairs"][0]
        assert pair["quality"]["scl_masked_fraction"] == pytest.approx(20 * 35 / 128 ** 2,
                                                                        abs=0.02)
        assert pair["artefacts"]["detectors_from"] == "footprints"


# ------------------------------------------------------------ ground motion is not an artefact


@pytest.mark.slow
def test_whole_scene_fault_is_left_alone(tmp_path):
    """slide preset (artefacts on) on an earthquake: the fault is not 'corrected' away."""
    from gdm_opt.demo import accuracy_against_truth

    sim = simulate(SimulateConfig(case="fault", size=512, dates=2, amplitude_px=2.0,
                                  seed=16), tmp_path / "in")
    rmse = {}
    for mode in ("none", "all", "jitter"):
        out = run(OptConfig(images=sim.images, out=tmp_path / mode, preset="slide",
                            artefacts=mode))
        rmse[mode] = accuracy_against_truth(out.east, out.north, sim.truth_east,
                                            sim.truth_north, band=2, resolution=10.0).rmse_px
        art = json.loads(out.report.read_text())["pairs"][0]["artefacts"]
        if mode != "none":
            assert art.get("skipped") or art.get("rejected"), art
    assert rmse["all"] < 1.2 * rmse["none"], rmse
    assert rmse["jitter"] < 1.2 * rmse["none"], rmse
