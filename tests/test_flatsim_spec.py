"""Campaign spec: YAML loading, validation messages, AOI splitting, process inputs."""

from __future__ import annotations

import datetime as dt

import pytest

from flatsim.plan import network_gaps, pair_name, plan_frame, step_id
from flatsim.spec import CampaignSpec, campaign_id, load_spec, parse_bytes
from gdmcore import InputError

YAML = """
name: etna-2023
start: 2023-01-01
end: 2024-06-30
frames:
  - {id: A044_N37, track: 44}
  - {id: D124_N37, track: 124, pass_direction: descending, source: folder, path: /data/D124}
network: {mode: nearest, neighbours: 3}
products: [velocity, quality, stac]
memory_limit: 1GB
priority: 8
"""


def test_yaml_spec_loads_with_defaults(tmp_path):
    path = tmp_path / "spec.yaml"
    path.write_text(YAML)
    spec = load_spec(path)
    assert [f.id for f in spec.all_frames()] == ["A044_N37", "D124_N37"]
    assert spec.memory_bytes == 2**30 and spec.priority == 8
    assert spec.processing.azimuth_looks == 2 and spec.simulation.dates == 30
    assert spec.frame("D124_N37").source == "folder"
    # deterministic id: same spec, same id; any change, another id
    assert campaign_id(spec) == campaign_id(load_spec(path))
    other = load_spec(YAML.replace("priority: 8", "priority: 7"))
    assert campaign_id(other) != campaign_id(spec)
    assert campaign_id(spec).startswith("etna-2023-") and len(campaign_id(spec)) == 18


@pytest.mark.parametrize(("change", "replacement", "expected"), [
    ("priority: 8", "priority: 12", "priority: Input should be less than or equal to 9"),
    ("memory_limit: 1GB", "memory_limit: 10MB", "memory_limit: Value error, memory_limit "
     "10MB is below"),
    ("network: {mode: nearest, neighbours: 3}", "network: {mode: span}",
     "network: Value error, network mode 'span' needs max_days"),
    ("products: [velocity, quality, stac]", "products: [velocity, gold]", "products.1:"),
    ("end: 2024-06-30", "end: 2022-06-30", "end 2022-06-30 is before start 2023-01-01"),
    ("priority: 8", "priority: 8\ncolour: red", "colour: Extra inputs are not permitted"),
])
def test_bad_fields_are_named(change, replacement, expected):
    with pytest.raises(InputError) as exc:
        load_spec(YAML.replace(change, replacement))
    assert str(exc.value).startswith("campaign spec: ")
    assert expected in str(exc.value), str(exc.value)


def test_yaml_syntax_error_names_the_line(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("name: x\nframes: [\n  - {id: a\n")
    with pytest.raises(InputError, match=r"bad.yaml: not valid YAML \(line \d+\)"):
        load_spec(path)
    with pytest.raises(InputError, match="not found"):
        load_spec(tmp_path / "missing.yaml")
    with pytest.raises(InputError, match="expected a mapping"):
        load_spec("- just\n- a list\n")


def test_frames_rules():
    base = {"name": "c", "start": "2023-01-01", "end": "2024-12-31"}
    with pytest.raises(InputError, match="needs frames or an aoi"):
        load_spec(base)
    with pytest.raises(InputError, match="duplicate frame"):
        load_spec({**base, "frames": [{"id": "a", "track": 1}, {"id": "a", "track": 2}]})
    with pytest.raises(InputError, match="needs a path"):
        load_spec({**base, "frames": [{"id": "a", "track": 1, "source": "folder"}]})
    with pytest.raises(InputError, match="after the end"):
        load_spec({**base, "end": "2023-03-01", "frames": [{"id": "a", "track": 1}]})


def test_aoi_split_into_frames():
    spec = load_spec({"name": "c", "start": "2023-01-01", "end": "2024-12-31",
                      "aoi": {"bbox": [14.5, 36.8, 15.5, 38.3], "tracks": [44, 124],
                              "frame_deg": 0.5}})
    frames = spec.all_frames()
    assert len(frames) == 6  # 3 latitude bands x 2 tracks
    ids = [f.id for f in frames]
    assert len(set(ids)) == 6 and ids[0] == "A044_N36p80"
    assert frames[2].bbox == pytest.approx((14.5, 37.8, 15.5, 38.3))
    seeds = {spec.frame_seed(i) for i in ids}
    assert len(seeds) == 6


def test_parse_bytes():
    assert parse_bytes("1GB") == 2**30
    assert parse_bytes("150 MiB") == 150 * 2**20
    assert parse_bytes("1.5G") == int(1.5 * 2**30)
    assert parse_bytes(4096) == 4096
    with pytest.raises(ValueError, match="memory size"):
        parse_bytes("lots")


def test_plan_ids_are_deterministic_and_gaps_reported():
    dates = [dt.date(2023, 1, 1) + dt.timedelta(days=12 * k) for k in range(6)]
    pairs = [(i, j) for i in range(6) for j in range(i + 1, min(i + 3, 6))]
    steps = plan_frame("camp-1", "F1", dates, pairs)
    assert [s.kind for s in steps].count("pair") == len(pairs) == 9
    assert steps[1].id == "camp-1/F1/pair/20230101_20230113"
    assert steps == plan_frame("camp-1", "F1", dates, pairs)
    assert step_id("camp-1", "F1", "invert") == "camp-1/F1/invert"
    # remove every pair crossing the boundary between dates 2 and 3
    kept = [p for p in pairs if not (p[0] <= 2 < p[1])]
    gaps = network_gaps(dates, pairs, kept)
    assert gaps["components"] == 2 and not gaps["connected"]
    assert gaps["gaps"] == [{"after": "2023-01-25", "before": "2023-02-06"}]
    assert sorted(gaps["missing_pairs"]) == sorted(
        pair_name(dates[i], dates[j]) for i, j in pairs if i <= 2 < j)
    assert network_gaps(dates, pairs, pairs)["connected"]


def test_process_inputs_generated_from_spec():
    from flatsim.process import PROCESS as FLATSIM_PROCESS

    schemas = FLATSIM_PROCESS.input_schemas()
    assert FLATSIM_PROCESS.id == "flatsim-campaign" and FLATSIM_PROCESS.default_queue == "batch"
    assert set(CampaignSpec.model_fields) - {"out"} <= set(schemas)
    assert "out" not in schemas and schemas["execution"]["default"] == "inline"
    assert schemas["priority"]["maximum"] == 9 and schemas["name"]["x-required"]
    ok = FLATSIM_PROCESS.validate_inputs({"name": "x", "start": "2023-01-01",
                                          "end": "2024-01-01",
                                          "frames": [{"id": "a", "track": 3}]})
    assert ok.execution == "inline"
    with pytest.raises(ValueError, match="out"):
        FLATSIM_PROCESS.validate_inputs({"name": "x", "start": "2023-01-01",
                                         "end": "2024-01-01", "out": "/etc",
                                         "frames": [{"id": "a", "track": 3}]})


def test_archive_frames_need_a_bbox_and_share_the_sar_step_options():
    from insar.options import NetworkOptions, ProcessingOptions

    base = {"name": "a", "start": "2023-01-01", "end": "2023-12-31"}
    with pytest.raises(InputError, match="source 'archive' needs a bbox"):
        load_spec({**base, "frames": [{"id": "F", "track": 3, "source": "archive"}]})
    with pytest.raises(InputError, match="bbox must be"):
        load_spec({**base, "frames": [{"id": "F", "track": 3, "source": "archive",
                                       "bbox": [15, 38, 14, 37]}]})
    with pytest.raises(InputError, match="archive frame takes no path"):
        load_spec({**base, "frames": [{"id": "F", "track": 3, "source": "archive",
                                       "bbox": [14, 37, 15, 38], "path": "/x"}]})
    spec = load_spec({**base, "frames": [{"id": "F", "track": 3, "source": "archive",
                                          "bbox": [14, 37, 15, 38]}],
                      "processing": {"azimuth_looks": 2, "range_looks": 8,
                                     "series_looks": 4},
                      "archive": {"swath": "all", "orbit_source": "precise"}})
    assert type(spec.processing) is ProcessingOptions and type(spec.network) is NetworkOptions
    assert spec.processing.looks == (2, 8) and spec.processing.grid_looks == (8, 32)
    # the aoi form gives archive frames with their bbox
    spec = load_spec({**base, "aoi": {"bbox": [14.0, 37.0, 15.0, 38.5], "tracks": [44],
                                      "source": "archive"}})
    assert [f.bbox for f in spec.all_frames()] == [(14.0, 37.0, 15.0, 38.0),
                                                  (14.0, 38.0, 15.0, 38.5)]
