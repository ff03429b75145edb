"""The shared SAR steps: one set of options and product names, the corrections seam."""

from __future__ import annotations

import json

import numpy as np
import pytest
import rasterio

from flatsim.spec import CampaignSpec
from gdm_sar.config import SarConfig
from insar.corrections import REGISTRY, pair_corrections, register
from insar.inversion import StackFacts, invert_stack
from insar.network import select_network
from insar.options import NetworkOptions, ProcessingOptions
from insar.pairs import process_pair
from insar.products import PAIR_FILES, layer
from insar.stack import read_stack
from simulators.sar import SimulateSarConfig, simulate


def test_one_set_of_options_for_gdm_sar_and_flatsim():
    proc = set(ProcessingOptions.model_fields)
    assert proc <= set(SarConfig.model_fields)
    assert CampaignSpec.model_fields["processing"].annotation is ProcessingOptions
    assert CampaignSpec.model_fields["network"].annotation is NetworkOptions
    for name in proc:  # the same declaration (description, bounds) on both sides
        assert SarConfig.model_fields[name].description == \
            ProcessingOptions.model_fields[name].description
    cfg = SarConfig(stack="s", out="o", network="span", max_days=30, neighbours=4)
    assert cfg.network_options() == NetworkOptions(mode="span", max_days=30, neighbours=4)
    assert cfg.processing().model_dump() == {k: getattr(cfg, k) for k in proc}


def test_pair_corrections_are_applied_recorded_and_seen_by_the_inversion(tmp_path):
    sim = simulate(SimulateSarConfig(out=tmp_path / "sim", dates=5, size=64, seed=2))
    stack = read_stack(sim.stack_dir)
    opts = ProcessingOptions(filter_alpha=0.0)
    pairs = select_network(stack.dates, stack.bperp, NetworkOptions(neighbours=2))
    tr = stack.transform * stack.transform.scale(2, 2)

    @register("plus_one_radian")
    def plus_one_radian(unw, ctx):  # noqa: ANN001 - the PairCorrection signature
        assert ctx.coherence.shape == unw.shape and ctx.name.count("_") == 1
        return unw + 1.0

    try:
        corr = pair_corrections(["plus_one_radian"])
        with pytest.raises(ValueError, match="unknown correction 'nope'"):
            pair_corrections(["nope"])
        dirs = {}
        for tag, cs in (("raw", ()), ("corrected", corr)):
            dirs[tag] = []
            for i, j in pairs:
                d = tmp_path / tag / f"{i}_{j}"
                doc = process_pair(stack.paths[i], stack.paths[j], d, d.name,
                                   (stack.dates[i], stack.dates[j]), opts, stack.crs, tr,
                                   64 * 2**20, corrections=cs)
                dirs[tag].append(d)
            assert doc["corrections"] == ([] if not cs else ["plus_one_radian"])
        a = rasterio.open(dirs["raw"][0] / "unwrapped.tif").read(1)
        b = rasterio.open(dirs["corrected"][0] / "unwrapped.tif").read(1)
        ok = np.isfinite(a)
        assert np.allclose(b[ok] - a[ok], 1.0, atol=1e-5) and np.isnan(b[~ok]).all()
        # every file of a pair and of the inversion is named in the products table
        assert sorted(p.name for p in dirs["raw"][0].glob("*.tif")) == sorted(PAIR_FILES)
        facts = StackFacts(list(stack.dates), stack.bperp, stack.wavelength,
                           stack.incidence_deg, stack.slant_range)
        inv = invert_stack(dirs["raw"], pairs, facts, opts, tmp_path / "ts", stack.crs, tr,
                           (32, 32), 64 * 2**20)
        for name in inv["layers"]:
            assert (tmp_path / "ts" / f"{name}.tif").is_file() and layer(name).units
        json.dumps(inv)  # the record is plain JSON
    finally:
        REGISTRY.pop("plus_one_radian", None)


def test_snaphu_unwrapper_without_the_package_is_bad_input(monkeypatch):
    import importlib.util

    import pydantic
    import pytest

    from insar.options import SarOptions

    assert SarOptions(unwrapper="snaphu").unwrapper == "snaphu"  # installed in the test env
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "snaphu" else real(name, *a))
    with pytest.raises(pydantic.ValidationError, match="snaphu package, which is not installed"):
        SarOptions(unwrapper="snaphu")
