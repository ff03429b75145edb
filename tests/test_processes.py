"""The process registry: inputs are files by URL or upload, never server paths."""

from __future__ import annotations

import pytest

from gdmcore import InputError
from gdmio.process import JobContext
from workflows.processes import get_process


def _ctx(tmp_path):
    uploads = tmp_path / "uploads"
    uploads.mkdir()
    for name in ("a_20230101.tif", "b_20230201.tif"):
        (uploads / name).write_bytes(b"not read in this test")
    return JobContext(job_id="j", workdir=tmp_path / "work", uploads_dir=uploads,
                      progress=lambda f, m: None)


@pytest.mark.parametrize("stable", ["/etc/passwd", "../secret.tif", "file:///etc/passwd"])
def test_gdm_opt_stable_mask_cannot_name_a_server_file(tmp_path, stable):
    spec = get_process("gdm-opt")
    inputs = spec.validate_inputs({"images": ["a_20230101.tif", "b_20230201.tif"],
                                   "stable": stable})
    with pytest.raises(InputError, match="refused|unsupported|no uploaded"):
        spec.execute(inputs, _ctx(tmp_path))


def test_unknown_process_names_the_known_ones():
    with pytest.raises(KeyError, match="gdm-opt"):
        get_process("nope")


# ------------------------------------------------- jobs asked by area and dates
STAC_SIZE = 1098
STAC_AOI = "5.60,45.06,5.625,45.08"  # ~2 km inside the fake tile


@pytest.fixture(scope="module")
def moving_tiles(tmp_path_factory):
    """Two dates of one tile; on the second the ground has moved 2 pixels (20 m) east."""
    from tests.fakestac import write_cog_tile

    root = tmp_path_factory.mktemp("tiles")
    return (write_cog_tile(root / "a.tif", STAC_SIZE).read_bytes(),
            write_cog_tile(root / "b.tif", STAC_SIZE, shift_east_px=2).read_bytes())


@pytest.fixture
def stac_archive(moving_tiles, monkeypatch):
    import datetime as dt

    from tests.fakestac import running_stac, tile_footprint

    t0 = dt.datetime(2023, 4, 1, 10, 30, tzinfo=dt.UTC)
    with running_stac() as fake:
        for day, data in ((0, moving_tiles[0]), (10, moving_tiles[1])):
            iid = f"S2A_31TGL_{t0 + dt.timedelta(days=day):%Y%m%d}_0_L2A"
            href = fake.serve_file(f"/d/{iid}/B04.tif", data)
            fake.add_item(iid, "sentinel-2-l2a", t0 + dt.timedelta(days=day),
                          tile_footprint(STAC_SIZE), 5.0,
                          {"red": {"href": href,
                                   "type": "image/tiff; profile=cloud-optimized",
                                   "eo:bands": [{"name": "red", "common_name": "red"}]}})
        monkeypatch.setenv("GDM_STAC_URL", fake.url)
        yield fake


@pytest.mark.slow
def test_gdm_opt_by_area_and_dates_measures_the_known_shift(tmp_path, stac_archive):
    import numpy as np
    import rasterio

    spec = get_process("gdm-opt")
    inputs = spec.validate_inputs({"scenes": {"aoi": STAC_AOI, "start": "2023-03-30",
                                              "end": "2023-04-30", "max_cloud": 20},
                                   "step": 8})
    ctx = JobContext(job_id="j", workdir=tmp_path / "work", uploads_dir=tmp_path / "up",
                     progress=lambda f, m: None, scene_cache=tmp_path / "cache")
    out = spec.execute(inputs, ctx)
    with rasterio.open(ctx.workdir / out["east"]) as e, \
            rasterio.open(ctx.workdir / out["north"]) as n:
        east, north = e.read(1, masked=True), n.read(1, masked=True)
    # the crops came from the archive through the scene cache, AOI windows only
    assert len(list((tmp_path / "cache").rglob("*.tif"))) == 2
    assert east.count() > 0.8 * east.size
    assert abs(float(np.ma.median(east)) - 20.0) < 0.5  # 2 px of 10 m, east positive
    assert abs(float(np.ma.median(north))) < 0.5


def test_scenes_and_files_are_exclusive_and_one_is_needed():
    from pydantic import ValidationError

    spec = get_process("gdm-opt")
    with pytest.raises(ValidationError, match="either as files"):
        spec.validate_inputs({})
    with pytest.raises(ValidationError, match="not both"):
        spec.validate_inputs({"images": ["a.tif", "b.tif"],
                              "scenes": {"aoi": STAC_AOI, "start": "2023-01-01",
                                         "end": "2023-02-01"}})
    with pytest.raises(ValidationError, match="provider"):
        spec.validate_inputs({"scenes": {"provider": "s1", "aoi": STAC_AOI,
                                         "start": "2023-01-01", "end": "2023-02-01"}})
    sar = get_process("gdm-sar")
    assert sar.validate_inputs({"scenes": {"aoi": STAC_AOI, "start": "2023-01-01",
                                           "end": "2023-02-01"}}).scenes.provider == "s1"


def test_scene_preview_lists_what_a_job_would_process(stac_archive):
    from workflows.scenes import preview_scenes
    from workflows.submit import SubmitError

    doc = preview_scenes({"provider": "s2", "aoi": STAC_AOI, "start": "2023-03-30",
                          "end": "2023-04-30"})
    assert doc["numberMatched"] == 2
    assert [s["datetime"][:10] for s in doc["scenes"]] == ["2023-04-01", "2023-04-11"]
    assert doc["scenes"][0]["properties"]["eo:cloud_cover"] == 5.0
    assert doc["scenes"][0]["assets"] == ["red"]  # names only, no hrefs
    with pytest.raises(SubmitError, match="AOI .not an area. is neither") as err:
        preview_scenes({"provider": "s2", "aoi": "not an area", "start": "2023-03-30",
                        "end": "2023-04-30"})
    assert err.value.status == 400


@pytest.mark.slow
@pytest.mark.parametrize("orbits", ["annotation", "precise"])
def test_gdm_sar_by_area_ingests_sentinel1_products_and_geocodes(tmp_path, monkeypatch,
                                                                 orbits):
    """ASF search -> SAFE zips in the cache (+ precise orbits from the orbit archive)
    -> ingest -> GDM-SAR -> UTM velocity."""
    import datetime as dt
    import shutil

    import rasterio

    from simulators.sar_safe import SimulateSafeConfig, map_velocity_error, simulate_safe
    from tests.fakeasf import running_asf
    from tests.fakes3 import running_bucket

    sim = simulate_safe(SimulateSafeConfig(out=tmp_path / "sim", dates=6, seed=3, zip=True))
    with rasterio.open(sim.dem) as ds:
        w, s, e, n = ds.bounds
    uploads = tmp_path / "up"
    uploads.mkdir()
    shutil.copy(sim.dem, uploads / "dem.tif")
    with running_asf() as asf, running_bucket() as bucket:
        if orbits == "precise":
            for eof in sim.orbit_dir.rglob("*.EOF"):
                bucket.put(f"AUX_POEORB/{eof.name}", eof.read_bytes())
            monkeypatch.setenv("GDM_ORBIT_URL", bucket.url)
        else:
            monkeypatch.delenv("GDM_ORBIT_URL", raising=False)
        for path, day in zip(sim.products, sim.dates, strict=True):
            asf.add_slc(dt.datetime.combine(day, dt.time(5, 26, 18), tzinfo=dt.UTC),
                        (w, s, e, n), path=37, name=path.stem, data=path.read_bytes())
        monkeypatch.setenv("GDM_ASF_URL", asf.url)
        spec = get_process("gdm-sar")
        lon, lat = sim.truth["velocity_model"]["lon"], sim.truth["velocity_model"]["lat"]
        inputs = spec.validate_inputs({
            "scenes": {"aoi": f"{lon - 0.2},{lat - 0.15},{lon + 0.2},{lat + 0.15}",
                       "start": "2023-03-01",
                       "end": "2023-05-31", "relative_orbit": 37},
            "dem": "dem.tif"})
        ctx = JobContext(job_id="j", workdir=tmp_path / "work", uploads_dir=uploads,
                         progress=lambda f, m: None, scene_cache=tmp_path / "cache")
        out = spec.execute(inputs, ctx)
    assert len(list((tmp_path / "cache").rglob("*.zip"))) == 6  # fetched once, cached
    fetched = sorted(p.name for p in (ctx.workdir / "inputs" / "orbits").glob("*.EOF")) \
        if orbits == "precise" else []
    assert fetched == (sorted(p.name for p in sim.orbit_dir.rglob("*.EOF"))
                       if orbits == "precise" else [])
    rmse, n_valid = map_velocity_error(ctx.workdir / out["velocity_geocoded"], sim.truth)
    print(f"\ngdm-sar by area from Sentinel-1 products ({orbits} orbits): geocoded "
          "velocity RMSE "
          f"{rmse * 1000:.2f} mm/yr over {n_valid} map pixels")
    assert n_valid > 1000 and rmse < 0.002
