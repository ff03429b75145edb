"""Every raster product of every service carries the metadata of the one table.

Each service writes a small product here (GDM-OPT 3 dates, GDM-SAR simulated stack,
``gdm sar timeseries`` on HyP3 interferograms, the real SNAP Amsterdam pair with its
geocoded copies, a FLATSIM frame, DSM-OPT); every GeoTIFF found is looked up in
:data:`workflows.products.PRODUCT_TABLE` and its UNITS tag, band descriptions, sign
convention tag and reference tag must be those of its record (conventions and references
only where the record has them), and every NetCDF variable has the units of its layer.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import numpy as np
import pytest
import rasterio
from click.testing import CliRunner

from gdmio.writer import LayerMeta
from tests.datafiles import DATA
from workflows.products import PRODUCT_TABLE, layer_for

pytestmark = pytest.mark.slow


def _opt(root: Path) -> Path:
    from gdm_opt.config import OptConfig
    from gdm_opt.pipeline import run
    from simulators.opt import SimulateConfig, simulate

    sim = simulate(SimulateConfig(case="fault", size=96, dates=3, seed=3), root / "sim")
    return run(OptConfig(images=sim.images, out=root / "p", window=16, step=8)).out_dir


def _sar(root: Path) -> Path:
    from gdm_sar.config import SarConfig
    from gdm_sar.pipeline import run
    from simulators.sar import SimulateSarConfig, simulate

    sim = simulate(SimulateSarConfig(out=root / "sim", dates=6, size=48, seed=2))
    return run(SarConfig(stack=sim.stack_dir, out=root / "p")).out_dir


def _sar_timeseries(root: Path) -> Path:
    from gdm_sar.timeseries import TimeseriesConfig, run_timeseries
    from tests import insarfmt

    dates, disp, pairs, coh = insarfmt.scene(ny=40, nx=48, dates=6, seed=0)
    insarfmt.WRITERS["HyP3"](root / "in", dates, disp, pairs, coh)
    run_timeseries(TimeseriesConfig(interferograms=[root / "in"], out=root / "p"))
    return root / "p"


def _snap_geocoded(root: Path) -> Path:
    from gdm.cli import main

    res = CliRunner().invoke(main, ["sar", "run", str(DATA / "s1_amsterdam_snap"), "--out",
                                    str(root / "p"), "--looks", "5", "5", "-q"],
                             catch_exceptions=False)
    assert res.exit_code == 0, res.output
    assert list((root / "p" / "geocoded").glob("*.tif"))
    return root / "p"


def _flatsim(root: Path) -> Path:
    from flatsim import register
    from flatsim.spec import load_spec
    from flatsim.state import CampaignState
    from flatsim.steps import run_campaign_local

    spec = load_spec({"name": "m", "start": "2023-01-01", "end": "2023-12-31",
                      "frames": [{"id": "F1", "track": 5}], "out": str(root / "out"),
                      "simulation": {"dates": 8, "size": 48, "seed": 1},
                      "network": {"mode": "nearest", "neighbours": 2},
                      "memory_limit": "1GB"})
    state = CampaignState(f"sqlite:///{root / 'state.sqlite'}")
    cid, out, _ = register(state, spec)
    run_campaign_local(state, spec, cid, out)
    return out


def _dsm(root: Path) -> Path:
    from dsm_opt.config import DsmConfig
    from dsm_opt.pipeline import run
    from simulators.dsm import SimulateDsmConfig, simulate

    sim = simulate(SimulateDsmConfig(out=root / "sim", size=160, seed=1))
    return run(DsmConfig(images=sim.images, out=root / "p", preset="urban", resolution=0.5,
                         fill_holes=True)).out_dir


SERVICES = {"gdm-opt": _opt, "gdm-sar": _sar, "gdm-sar timeseries": _sar_timeseries,
            "gdm-sar snap geocoded": _snap_geocoded, "flatsim-campaign": _flatsim,
            "dsm-opt": _dsm}


def _is_date(text: str) -> bool:
    try:
        dt.date.fromisoformat(text)
    except (TypeError, ValueError):
        return False
    return True


def check_raster(process: str, root: Path, path: Path) -> LayerMeta:
    rel = path.relative_to(root).as_posix()
    meta = layer_for(process, rel)
    assert meta is not None, f"{process} {rel}: not in the product table"
    with rasterio.open(path) as ds:
        tags, descriptions, count = ds.tags(), list(ds.descriptions), ds.count
        first = ds.read(1, masked=True).filled(np.nan)
    assert tags.get("UNITS") == meta.units, (rel, tags.get("UNITS"), meta.units)
    if meta.per_date:
        assert count >= 2 and all(_is_date(d) for d in descriptions), (rel, descriptions)
        assert descriptions == sorted(descriptions), rel
    else:
        assert count == 1 and descriptions == [meta.title], (rel, descriptions)
    if meta.convention:
        assert tags.get("CONVENTION") == meta.convention, (rel, tags.get("CONVENTION"))
    else:
        assert "CONVENTION" not in tags, (rel, tags["CONVENTION"])
    for other in ("REFERENCE_PIXEL", "REFERENCE_DATE"):
        if other == meta.reference:
            assert tags.get(other), (rel, f"no {other}")
        else:
            assert other not in tags, (rel, f"{other} does not apply")
    if meta.reference == "REFERENCE_PIXEL" and "REFERENCE_RADAR_PIXEL" in tags:
        # a geocoded copy: its reference pixel is on the map grid, where the layer is ~0
        row, col = (int(v) for v in tags["REFERENCE_PIXEL"].split(","))
        scale = np.nanpercentile(np.abs(first), 99)
        print(f"{rel}: reference value {first[row, col]:.3g}, 99th percentile {scale:.3g}")
        assert abs(first[row, col]) <= 0.1 * scale, (rel, first[row, col], scale)
    return meta


@pytest.mark.parametrize("service", list(SERVICES))
def test_every_product_matches_the_table(service, tmp_path):
    process = service.split()[0]
    root = SERVICES[service](tmp_path)
    rasters = sorted(root.rglob("*.tif"))
    rasters = [p for p in rasters if not any(part.startswith(".") for part in p.parts)
               and not {"stack", "sim"} & set(p.relative_to(root).parts)]  # inputs
    assert len(rasters) >= 5, rasters
    seen = {check_raster(process, root, p).name for p in rasters}
    print(f"{service}: {len(rasters)} rasters, {len(seen)} layers: {sorted(seen)}")
    if service in ("gdm-sar", "flatsim-campaign"):  # the InSAR quicklooks
        for png in ("velocity", "displacement", "mean_coherence", "dem_error",
                    "interferograms", "network", "temporal_coherence"):
            assert list(root.rglob(f"{png}.png")), png
    netcdfs = sorted(root.rglob("*.nc"))
    for nc_path in netcdfs:
        import netCDF4

        with netCDF4.Dataset(nc_path) as nc:
            for var in nc.variables.values():
                if var.dimensions[-2:] != ("y", "x"):
                    continue
                meta = next((m for m in PRODUCT_TABLE[process]
                             if m.name == var.name or m.title == var.long_name), None)
                assert meta is not None, (nc_path.name, var.name)
                assert var.units == meta.units, (var.name, var.units, meta.units)


def test_table_refuses_tags_that_do_not_apply():
    from insar.products import layer

    vel = layer("velocity")
    assert vel.tags("3,4") == {"UNITS": "m/yr", "CONVENTION": vel.convention,
                               "REFERENCE_PIXEL": "3,4"}
    with pytest.raises(ValueError, match="reference"):
        vel.tags()
    coh = layer("temporal_coherence")
    assert coh.tags() == {"UNITS": "1"}
    with pytest.raises(ValueError, match="reference"):
        coh.tags("3,4")
    assert layer("timeseries").descriptions([dt.date(2023, 1, 3)]) == ["2023-01-03"]
    assert layer_for("gdm-opt", "pairs/20230101_20230301_score.tif").units == "1"
    assert layer_for("gdm-opt", "score.tif").name == "score"
    assert layer_for("gdm-sar", "geocoded/velocity.tif").shown_units == "mm/yr"
    assert layer_for("gdm-sar", "nothing.tif") is None
    # one record per name and process, and every SAR quantity in metres is shown in mm
    for process, layers in PRODUCT_TABLE.items():
        names = [m.name for m in layers]
        assert len(names) == len(set(names)), process
    for m in PRODUCT_TABLE["gdm-sar"]:
        if m.units in ("m", "m/yr") and m.name not in ("dem_error", "height"):
            assert m.display_scale == 1000 and m.shown_units == f"m{m.units}", m.name
    assert np.isfinite(vel.display_scale)
