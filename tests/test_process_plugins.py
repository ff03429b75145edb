"""Processes are plugins: one ProcessSpec per service, found through an entry-point group."""

from __future__ import annotations

import subprocess
import sys
from importlib.metadata import entry_points

import pytest

from gdmio.process import ProcessSpec
from workflows.processes import ENTRY_POINT_GROUP, PROCESSES, ProcessRegistry

SERVICE_PROCESSES = {"echo": "workflows.echo", "gdm-opt": "gdm_opt.process",
                     "gdm-sar": "gdm_sar.process", "dsm-opt": "dsm_opt.process",
                     "flatsim-campaign": "flatsim.process"}


def test_each_service_exports_its_process_from_its_own_module():
    eps = {ep.name: ep for ep in entry_points(group=ENTRY_POINT_GROUP)}
    assert {name: ep.value for name, ep in eps.items()} == \
        {pid: f"{module}:PROCESS" for pid, module in SERVICE_PROCESSES.items()}
    for pid, module in SERVICE_PROCESSES.items():
        spec = PROCESSES[pid]
        assert isinstance(spec, ProcessSpec) and spec.id == pid
        assert spec.execute.__module__ == module  # one template: PROCESS + execute
        assert sys.modules[module].PROCESS is spec


def test_importing_the_registry_registers_nothing():
    code = ("import sys, workflows.processes as p, wps.app\n"
            "ours = ('workflows', 'wps', 'gdmio', 'gdm_opt', 'gdm_sar', 'dsm_opt', 'flatsim')\n"
            "loaded = [m for m in sys.modules if m.split('.')[0] in ours and "
            "(m.endswith('.process') or m == 'workflows.echo')]\n"
            "assert loaded == ['gdmio.process'], loaded\n"
            "assert p.PROCESSES._specs is None\n"
            "assert 'gdm-opt' in p.PROCESSES and 'gdm_opt.process' in sys.modules\n")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)


def _distribution(root, name, entries):
    """A minimal installed distribution on ``root`` declaring ``entries`` in a group."""
    info = root / f"{name}-1.0.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text(
        "[test.gdm.processes]\n" + "".join(f"{k} = {v}\n" for k, v in entries.items()))


def test_a_third_party_distribution_adds_a_process(tmp_path, monkeypatch):
    (tmp_path / "thirdparty_proc.py").write_text(
        "from workflows.echo import PROCESS as ECHO\n"
        "import dataclasses\n"
        "PROCESS = dataclasses.replace(ECHO, id='shout', title='Shout')\n"
        "NOT_A_SPEC = 42\n")
    _distribution(tmp_path, "thirdparty", {"shout": "thirdparty_proc:PROCESS"})
    monkeypatch.syspath_prepend(str(tmp_path))
    registry = ProcessRegistry("test.gdm.processes")
    assert list(registry) == ["shout"] and registry["shout"].title == "Shout"


@pytest.mark.parametrize(("value", "error"), [
    ("thirdparty_bad:PROCESS", "has id 'echo'"),
    ("thirdparty_bad:NOT_A_SPEC", "is not a ProcessSpec"),
])
def test_a_wrong_entry_point_is_named(tmp_path, monkeypatch, value, error):
    (tmp_path / "thirdparty_bad.py").write_text(
        "from workflows.echo import PROCESS\nNOT_A_SPEC = 42\n")
    _distribution(tmp_path, "badparty", {"shout": value})
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises((TypeError, ValueError), match=error):
        list(ProcessRegistry("test.gdm.processes"))


def test_an_empty_group_says_to_install():
    with pytest.raises(RuntimeError, match="make install"):
        len(ProcessRegistry("test.gdm.nothing-here"))
