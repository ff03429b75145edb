"""The campaign watchdog: a running campaign on which nothing moves is resumed, once."""

from __future__ import annotations

import time

import workflows.campaign_tasks as campaign_tasks
from flatsim import register
from flatsim.spec import load_spec
from flatsim.state import get_state
from workflows.settings import get_settings


def _spec(out, name):
    return load_spec({"name": name, "start": "2023-01-01", "end": "2023-12-31",
                      "frames": [{"id": "F1", "track": 5}], "out": str(out),
                      "simulation": {"dates": 6, "size": 48, "seed": 1},
                      "memory_limit": "1GB"})


def test_stalled_campaign_is_resumed_once_and_live_ones_are_left_alone(tmp_path,
                                                                        monkeypatch):
    settings = get_settings({"GDM_HOME": str(tmp_path / "home")})
    settings.ensure_dirs()
    state = get_state(settings.database_url)
    stalled, _, _ = register(state, _spec(tmp_path / "a", "stalled"))
    stopped, _, _ = register(state, _spec(tmp_path / "b", "stopped"))
    state.set_campaign_status(stopped, "stopped")
    resumed: list[str] = []
    monkeypatch.setattr(campaign_tasks, "resume",
                        lambda cid, settings_=None: resumed.append(cid) or [])
    assert campaign_tasks.revive_stalled(settings, stall_seconds=30) == []  # all fresh
    time.sleep(1.2)
    live, _, _ = register(state, _spec(tmp_path / "c", "live"))  # just started
    assert campaign_tasks.revive_stalled(settings, stall_seconds=1) == [stalled]
    assert resumed == [stalled]
    # claimed: a second watchdog (another worker) does not resume it again
    assert campaign_tasks.revive_stalled(settings, stall_seconds=1) == []
    assert state.campaign(stalled)["message"] == "resumed: no step progressed"
    assert live not in resumed and stopped not in resumed
    assert campaign_tasks.revive_stalled(settings, stall_seconds=0) == []  # disabled
