"""DSM-OPT end to end on simulated stereo acquisitions, against their truth; bad inputs."""

from __future__ import annotations

import json
import shutil
import time

import numpy as np
import pytest
import rasterio
from click.testing import CliRunner
from rasterio.warp import Resampling, reproject

from dsm_opt.catalogue import add_item, search
from dsm_opt.config import DsmConfig
from dsm_opt.pipeline import NODATA, run
from gdm.cli import main
from gdmio.cog import validate_cog
from gdmio.products import STAGING_PREFIX
from simulators.dsm import SimulateDsmConfig, simulate

GSD = 0.5


def _on_grid(src_path, like_path, band=None):
    """A truth raster resampled (nearest) onto a product's grid."""
    with rasterio.open(like_path) as like:
        shape, transform, crs = like.shape, like.transform, like.crs
    with rasterio.open(src_path) as src:
        data = src.read().astype(np.float32)
        out = np.full((data.shape[0],) + shape, np.nan, np.float32)
        for k in range(data.shape[0]):
            reproject(data[k], out[k], src_transform=src.transform, src_crs=src.crs,
                      dst_transform=transform, dst_crs=crs, resampling=Resampling.nearest,
                      dst_nodata=np.nan)
    return out


def _dsm(path):
    with rasterio.open(path) as ds:
        assert ds.nodata == NODATA
        assert ds.dtypes[0] == "float32"
        assert ds.crs.to_epsg() // 100 in (326, 327)
        d = ds.read(1)
    return np.where(d == NODATA, np.nan, d)


def scores(sim, out):
    """NMAD (m), median error (m) and completeness of a product against the truth, on the
    ground cells both views of the chosen pair see."""
    d = _dsm(out.dsm)
    truth = _on_grid(sim.truth_dsm, out.dsm)[0]
    vis = _on_grid(sim.truth_visible, out.dsm)
    i, j = out.pair
    seen = (vis[i] > 0.5) & (vis[j] > 0.5) & np.isfinite(truth)
    err = d - truth
    ok = seen & np.isfinite(err)
    med = float(np.median(err[ok]))
    nmad = float(1.4826 * np.median(np.abs(err[ok] - med)))
    return nmad, med, float(ok.sum() / seen.sum())


@pytest.fixture(scope="module")
def urban(tmp_path_factory):
    root = tmp_path_factory.mktemp("dsm_urban")
    sim = simulate(SimulateDsmConfig(out=root / "sim", size=220, scene="urban", bh=0.3,
                                     seed=1))
    out = run(DsmConfig(images=sim.images, out=root / "products", preset="urban",
                        resolution=GSD, fill_holes=True, catalogue=root / "catalogue"))
    return sim, out, root


def test_urban_pair_matches_truth(urban):
    sim, out, _ = urban
    nmad, med, completeness = scores(sim, out)
    assert nmad <= GSD, f"NMAD {nmad:.3f} m"
    assert abs(med) <= 0.2 * GSD, f"median error {med:.3f} m"
    assert completeness >= 0.90, f"completeness {completeness:.1%}"
    assert out.bh == pytest.approx(0.3, abs=0.02)


def test_products_are_valid_and_described(urban):
    _, out, _ = urban
    names = {p.name for p in out.out_dir.iterdir()}
    assert {"dsm.tif", "ortho.tif", "count.tif", "uncertainty.tif", "filled.tif",
            "dsm_hillshade.png", "item.json", "report.json"} <= names
    assert not any(n.startswith(STAGING_PREFIX) for n in names)
    for name in ("dsm.tif", "ortho.tif", "count.tif"):
        ok, errors, _ = validate_cog(out.out_dir / name)
        assert ok, errors
    with rasterio.open(out.count) as ds:
        count = ds.read(1)
    with rasterio.open(out.ortho) as ds:
        ortho = ds.read(1)
    assert 0.5 < count[count > 0].mean() < 3.0  # about one point per 0.5 m cell
    assert np.nanstd(ortho) > 0.0
    with rasterio.open(out.filled) as ds:
        filled = ds.read(1).astype(bool)
    d = _dsm(out.dsm)
    assert np.all(np.isfinite(d[filled]))
    assert 0.0 < filled.mean() < 0.1
    item = json.loads(out.item.read_text())
    assert item["properties"]["gdm:process"] == "dsm-opt"
    assert item["properties"]["datetime"].startswith("2024-05-01")
    assert set(item["assets"]) >= {"dsm", "ortho", "count", "quicklook", "report"}
    report = json.loads(out.report.read_text())
    assert report["matching"]["valid"] > 0.3
    assert report["triangulation"]["median_gap_m"] < 0.01  # lines of sight intersect


def test_catalogue_search_by_area_and_date(urban):
    _, out, root = urban
    item = json.loads(out.item.read_text())
    w, s, e, n = item["bbox"]
    cat = root / "catalogue"
    assert [it["id"] for it in search(cat, bbox=(w, s, e, n))] == [item["id"]]
    assert search(cat, bbox=(w + 1, s, e + 1, n)) == []
    import datetime as dt

    assert len(search(cat, start=dt.date(2024, 5, 1), end=dt.date(2024, 5, 1))) == 1
    assert search(cat, start=dt.date(2024, 5, 2)) == []
    add_item(cat, out.item)  # a rerun replaces, it does not duplicate
    assert len(search(cat)) == 1
    found = search(cat)[0]
    assert (root / "catalogue" / "items").is_dir()
    assert found["assets"]["dsm"]["href"] == str(out.dsm.resolve())
    runner = CliRunner()
    res = runner.invoke(main, ["dsm", "catalogue", "search", str(cat), "--bbox",
                               str(w), str(s), str(e), str(n)])
    assert res.exit_code == 0, res.output
    assert "1 DSM(s)" in res.output


def test_flat_ground_is_flat(tmp_path):
    sim = simulate(SimulateDsmConfig(out=tmp_path / "sim", size=160, scene="flat",
                                     base_height=250.0, seed=2))
    # asymmetric height bounds: the ground is not at the zero-disparity height
    out = run(DsmConfig(images=sim.images, out=tmp_path / "out", preset="flat",
                        resolution=GSD, height_min=215.0, height_max=300.0))
    d = _dsm(out.dsm)
    v = d[np.isfinite(d)]
    spread = float(np.std(v))
    p99 = float(np.percentile(np.abs(v - 250.0), 99))
    print(f"\nflat ground: std {spread:.3f} m, mean {v.mean() - 250:+.3f} m, "
          f"99th percentile |dev| {p99:.3f} m over {v.size} cells")
    assert spread <= 0.2
    assert abs(v.mean() - 250.0) <= 0.1
    _, _, completeness = scores(sim, out)
    assert completeness > 0.9


def test_triplet_pair_selection_follows_the_preset(tmp_path):
    sim = simulate(SimulateDsmConfig(out=tmp_path / "sim", size=128, views=3, bh=0.4,
                                     scene="urban", seed=3))
    urban = run(DsmConfig(images=sim.images, out=tmp_path / "u", preset="urban",
                          resolution=GSD))
    flat = run(DsmConfig(images=sim.images, out=tmp_path / "f", preset="flat",
                         resolution=GSD))
    assert urban.bh == pytest.approx(0.2, abs=0.02)  # an adjacent pair (nadir involved)
    assert 1 in urban.pair
    assert flat.pair == (0, 2)  # the outer pair, B/H 0.4
    assert flat.bh == pytest.approx(0.4, abs=0.02)
    nmad, _, completeness = scores(sim, flat)
    assert nmad <= GSD and completeness >= 0.85


# ------------------------------------------------------------------- bad input
@pytest.fixture(scope="module")
def two_places(tmp_path_factory):
    root = tmp_path_factory.mktemp("dsm_bad")
    a = simulate(SimulateDsmConfig(out=root / "a", size=96, seed=4))
    b = simulate(SimulateDsmConfig(out=root / "b", size=96, seed=5, lon=5.8))
    same = simulate(SimulateDsmConfig(out=root / "same", size=96, seed=6, bh=0.0))
    plain = root / "plain.tif"
    with rasterio.open(plain, "w", driver="GTiff", width=96, height=96, count=1,
                       dtype="uint16") as ds:
        ds.write(np.ones((96, 96), np.uint16), 1)
    return root, a, b, same, plain


def _cli_bad(args, out):
    res = CliRunner().invoke(main, ["dsm", "run", *map(str, args), "--out", str(out), "-q"])
    assert res.exit_code == 2, res.output
    assert "Traceback" not in res.output
    assert not out.exists() or not any(out.iterdir()), "partial product left"
    return res.output


def test_bad_inputs_exit_2_without_products(two_places):
    root, a, b, same, plain = two_places
    msg = _cli_bad([a.images[0]], root / "o1")
    assert "2 or 3 images" in msg
    msg = _cli_bad([a.images[0], plain], root / "o2")
    assert "no RPC" in msg
    msg = _cli_bad([a.images[0], b.images[1]], root / "o3")
    assert "do not overlap" in msg
    msg = _cli_bad([same.images[0], same.images[1]], root / "o4")
    assert "degenerate" in msg
    msg = _cli_bad([a.images[0], root / "missing.tif"], root / "o5")
    assert "no such file" in msg
    msg = _cli_bad([a.images[0], a.images[0]], root / "o6")
    assert "twice" in msg


def test_grid_limits_are_clear_errors(two_places, monkeypatch):
    """The grid size cap and the scratch-disk check: exit 2, a sentence, no product."""
    import dsm_opt.pipeline as pipeline

    root, a, _, _, _ = two_places
    # the 96-px pair at 0.5 m is a ~100x100-cell grid: 10,000 cells, 200 kB of sums
    monkeypatch.setattr(pipeline, "MAX_DSM_CELLS", 5_000)
    msg = _cli_bad(a.images, root / "o7")
    assert "too large (more than 5,000 cells)" in msg and "coarser resolution" in msg
    monkeypatch.setattr(pipeline, "MAX_DSM_CELLS", 10**9)
    monkeypatch.setattr(pipeline, "_SUMS_BYTES_PER_CELL", 2**40)
    msg = _cli_bad(a.images, root / "o8")
    assert "GiB of temporary disk" in msg and "TMPDIR" in msg


def test_cli_run_succeeds_and_publishes(two_places, tmp_path):
    _, a, _, _, _ = two_places
    out = tmp_path / "prod"
    res = CliRunner().invoke(main, ["dsm", "run", *map(str, a.images), "--out", str(out),
                                    "--preset", "urban", "--resolution", "1.0", "-q"])
    assert res.exit_code == 0, res.output
    with rasterio.open(out / "dsm.tif") as ds:
        assert ds.res == (1.0, 1.0)
    product = type("P", (), {"dsm": out / "dsm.tif", "pair": (0, 1)})
    nmad, _, completeness = scores(a, product)
    # a 96-pixel scene: the rim lost to the matching windows weighs ~10 %
    assert nmad <= 2 * GSD and completeness >= 0.8


def test_simulate_command(tmp_path):
    res = CliRunner().invoke(main, ["dsm", "simulate", str(tmp_path / "s"), "--size", "64",
                                    "--views", "3"])
    assert res.exit_code == 0, res.output
    assert len(list((tmp_path / "s" / "images").glob("*.tif"))) == 3
    meta = json.loads((tmp_path / "s" / "truth" / "meta.json").read_text())
    assert max(meta["rpc_fit_max_residual_px"]) < 1e-3


@pytest.mark.slow
def test_full_size_validation(tmp_path):
    """The validation figures at 0.5 m GSD, B/H 0.3 (printed with -s)."""
    t0 = time.perf_counter()
    sim = simulate(SimulateDsmConfig(out=tmp_path / "sim", size=800, scene="urban", bh=0.3,
                                     seed=11))
    t1 = time.perf_counter()
    out = run(DsmConfig(images=sim.images, out=tmp_path / "out", preset="urban",
                        resolution=GSD))
    t2 = time.perf_counter()
    nmad, med, completeness = scores(sim, out)
    print(f"\nurban 800x800 px pair, B/H {out.bh:.3f}: NMAD {nmad:.3f} m, median "
          f"{med:+.3f} m, completeness {completeness:.1%} (outside occlusions); "
          f"simulate {t1 - t0:.1f} s, run {t2 - t1:.1f} s")
    assert nmad <= GSD and completeness >= 0.9


def _dimap(folder, image, when):
    """A minimal DIMAP V2 document pointing at an image with RPC tags."""
    folder.mkdir(parents=True, exist_ok=True)
    dim = folder / f"DIM_{image.stem}.XML"
    verts = "".join(f"<Vertex><LON>{x}</LON><LAT>{y}</LAT></Vertex>"
                    for x, y in ((5.71, 45.2), (5.73, 45.2), (5.73, 45.18), (5.71, 45.18)))
    dim.write_text(
        '<?xml version="1.0" encoding="UTF-8"?>\n<Dimap_Document>'
        f"<Dataset_Identification><DATASET_NAME>DS_{image.stem}</DATASET_NAME>"
        f"</Dataset_Identification><Dataset_Content><Dataset_Extent>{verts}"
        "</Dataset_Extent></Dataset_Content><Geometric_Data><Use_Area>"
        "<Located_Geometric_Values><LOCATION_TYPE>Center</LOCATION_TYPE>"
        f"<TIME>{when}</TIME></Located_Geometric_Values></Use_Area></Geometric_Data>"
        "<Raster_Data><Data_Access><Data_Files><Data_File>"
        f'<DATA_FILE_PATH href="{image.resolve()}"/></Data_File></Data_Files></Data_Access>'
        "</Raster_Data></Dimap_Document>\n")
    return dim


def test_dimap_input_is_read(two_places, tmp_path):
    _, a, _, _, _ = two_places
    dims = [_dimap(tmp_path / f"v{k}", p, "2023-06-02T10:20:30.5Z")
            for k, p in enumerate(a.images)]
    out = run(DsmConfig(images=dims, out=tmp_path / "out", preset="urban", resolution=GSD))
    item = json.loads(out.item.read_text())
    assert item["properties"]["datetime"].startswith("2023-06-02T10:20:30")
    nmad, _, completeness = scores(a, out)
    assert nmad <= GSD and completeness >= 0.8  # a 96-pixel scene (see above)


def test_tiles_bound_memory_without_changing_the_dsm(urban, tmp_path, monkeypatch):
    import tracemalloc

    from dsm_opt import pipeline

    sim, ref, _ = urban
    # the memory that matching a tile takes (images, cost and sum volumes of the tile):
    # what the tile size bounds; the rest of the run (grids, sparse matches, products)
    # does not depend on it
    peaks: dict[int, int] = {}
    inner = pipeline._match_tile

    def traced(*args, **kwargs):
        base = tracemalloc.get_traced_memory()[0]
        tracemalloc.reset_peak()
        out = inner(*args, **kwargs)
        peaks[tile] = max(peaks.get(tile, 0), tracemalloc.get_traced_memory()[1] - base)
        return out

    monkeypatch.setattr(pipeline, "_match_tile", traced)
    outs = {}
    # small tiles against one tile for the whole scene
    for tile in (64, 1024):
        tracemalloc.start()
        outs[tile] = run(DsmConfig(images=sim.images, out=tmp_path / f"t{tile}",
                                   preset="urban", resolution=GSD, tile=tile))
        tracemalloc.stop()
    print(f"\npeak traced memory of a tile's matching: tiles of 64: {peaks[64] / 2**20:.1f} "
          f"MiB; one tile: {peaks[1024] / 2**20:.1f} MiB")
    assert peaks[64] < 0.5 * peaks[1024]
    a, b = _dsm(outs[64].dsm), _dsm(ref.dsm)
    both = np.isfinite(a) & np.isfinite(b)
    assert both.sum() > 0.9 * np.isfinite(b).sum()
    assert np.median(np.abs(a[both] - b[both])) < 0.02
    nmad, _, completeness = scores(sim, outs[64])
    assert nmad <= GSD and completeness >= 0.9


def test_coarse_dem_bounds_the_search(two_places, tmp_path):
    from rasterio.transform import from_origin

    _, a, _, _, _ = two_places
    dem = tmp_path / "dem.tif"
    z = np.linspace(240.0, 290.0, 40 * 40, dtype=np.float32).reshape(40, 40)
    with rasterio.open(dem, "w", driver="GTiff", width=40, height=40, count=1,
                       dtype="float32", crs="EPSG:4326",
                       transform=from_origin(5.70, 45.21, 0.001, 0.001)) as ds:
        ds.write(z, 1)
    out = run(DsmConfig(images=a.images, out=tmp_path / "out", preset="urban",
                        resolution=GSD, dem=dem))
    report = json.loads(out.report.read_text())
    margin = 80.0  # the urban preset's
    assert report["heights"]["source"] == "dem"
    lo, hi = report["heights"]["min"], report["heights"]["max"]
    assert 240.0 - margin - 0.1 <= lo <= 290.0 - margin
    assert 240.0 + margin <= hi <= 290.0 + margin + 0.1
    nmad, _, completeness = scores(a, out)
    assert nmad <= GSD and completeness >= 0.8


def _biased_pair(sim, folder, d_line: float, d_samp: float) -> list:
    """The pair with the second view's RPC off by (d_line, d_samp) pixels."""
    from rasterio.rpc import RPC

    folder.mkdir(parents=True, exist_ok=True)
    right = folder / sim.images[1].name
    shutil.copy(sim.images[1], right)
    with rasterio.open(right, "r+") as ds:
        d = ds.rpcs.to_dict()
        d["line_off"] += d_line
        d["samp_off"] += d_samp
        ds.rpcs = RPC(**d)
    return [sim.images[0], right]


def test_relative_pointing_error_is_measured_and_removed(urban, tmp_path):
    """An RPC off by 1.5 lines and 1 sample (real Pléiades pairs are off by about that)."""
    sim, _, _ = urban
    images = _biased_pair(sim, tmp_path / "biased", 1.5, 1.0)
    fixed = run(DsmConfig(images=images, out=tmp_path / "fixed", preset="urban",
                          resolution=GSD, fill_holes=True))
    raw = run(DsmConfig(images=images, out=tmp_path / "raw", preset="urban",
                        resolution=GSD, fill_holes=True, pointing_correction=False))
    report = json.loads(fixed.report.read_text())["pointing"]
    nmad, _, completeness = scores(sim, fixed)
    nmad_raw, _, completeness_raw = scores(sim, raw)
    print(f"\npointing: {report['matches']} matches, across-epipolar residual "
          f"{report['before']['median_px']:+.3f} px before, {report['after']['median_px']:+.3f}"
          f" after ({report['direction']}); NMAD {nmad:.3f} m, completeness "
          f"{completeness:.1%}; uncorrected: NMAD {nmad_raw:.3f} m, completeness "
          f"{completeness_raw:.1%}")
    assert report["applied"] and abs(report["before"]["median_px"]) > 0.5
    assert abs(report["after"]["median_px"]) < 0.05
    assert nmad <= GSD and completeness >= 0.9
    assert completeness - completeness_raw > 0.02 or nmad_raw - nmad > 0.05


def test_triplet_fusion_against_the_best_pair(tmp_path):
    """Every pair of a triplet matched and fused per cell, against the pair alone."""
    sim = simulate(SimulateDsmConfig(out=tmp_path / "sim", size=180, views=3, bh=0.5,
                                     scene="urban", seed=7))
    t0 = time.perf_counter()
    fused = run(DsmConfig(images=sim.images, out=tmp_path / "fused", preset="urban",
                          resolution=GSD))
    t1 = time.perf_counter()
    single = run(DsmConfig(images=sim.images, out=tmp_path / "single", preset="urban",
                           resolution=GSD, fusion=False))
    t2 = time.perf_counter()
    truth = _on_grid(sim.truth_dsm, fused.dsm)[0]
    vis = _on_grid(sim.truth_visible, fused.dsm)
    seen = (vis.sum(axis=0) >= 2) & np.isfinite(truth)  # seen by some pair
    res = {}
    for name, out in (("fused", fused), ("single", single)):
        d = _dsm(out.dsm)
        err = (d - truth)[seen & np.isfinite(d)]
        med = float(np.median(err))
        res[name] = (float(1.4826 * np.median(np.abs(err - med))),
                     float(np.isfinite(d)[seen].mean()))
    report = json.loads(fused.report.read_text())
    print(f"\ntriplet, urban, B/H 0.25/0.25/0.5: fused 3 pairs: NMAD {res['fused'][0]:.3f} m, "
          f"completeness {res['fused'][1]:.1%} ({t1 - t0:.1f} s); best pair "
          f"{single.pair}: NMAD {res['single'][0]:.3f} m, completeness "
          f"{res['single'][1]:.1%} ({t2 - t1:.1f} s); cells by pairs "
          f"{report['fusion']['cells_by_pairs']}, rejected pair heights "
          f"{report['fusion']['rejected_pair_heights']}")
    assert len(report["pairs"]) == 3
    assert res["fused"][1] >= res["single"][1] + 0.01  # occlusions of one pair filled
    assert res["fused"][0] <= 1.05 * res["single"][0]
