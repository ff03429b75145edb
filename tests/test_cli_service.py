"""`gdm users`, `gdm jobs`, and the argument checks of `gdm serve` / `gdm worker`."""

from __future__ import annotations

import json
import os

import pytest
from click.testing import CliRunner

from gdm.cli import main
from workflows.jobstore import JobStore
from workflows.settings import get_settings


@pytest.fixture
def store(tmp_path, monkeypatch):
    for key in list(os.environ):
        if key.startswith("GDM_"):
            monkeypatch.delenv(key)
    monkeypatch.setenv("GDM_HOME", str(tmp_path / "home"))
    settings = get_settings()
    settings.ensure_dirs()
    return JobStore(settings.database_url)


def _run(*args: str):
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


def test_users_add_prints_a_working_token(store):
    res = _run("users", "add", "alice", "--role", "operator", "--max-jobs", "7")
    assert res.exit_code == 0, res.output
    token = res.stdout.strip()
    assert len(token) >= 40 and "\n" not in token
    user = store.user_for_token(token)
    assert user is not None and user.name == "alice" and user.role == "operator"
    assert user.max_active_jobs == 7 and user.may_use_rapid
    listed = _run("users", "list")
    assert listed.exit_code == 0 and "alice" in listed.stdout and "operator" in listed.stdout


def test_users_add_refuses_bad_role_and_name(store):
    assert _run("users", "add", "bob", "--role", "root").exit_code == 2
    res = _run("users", "add", "../evil")
    assert res.exit_code == 2 and "invalid user name" in res.stderr
    assert store.count_users() == 0


def test_jobs_list_show_dismiss(store):
    a = store.create_job("alice", "echo", {"message": "a"}, "ondemand")
    b = store.create_job("bob", "gdm-opt", {"images": ["x", "y"]}, "batch")
    store.claim(b.id, "w1", lease_seconds=60)

    res = _run("jobs", "list")
    assert res.exit_code == 0
    lines = res.stdout.splitlines()
    assert lines[0].startswith("ID") and len(lines) == 3
    assert any(a.id in ln and "accepted" in ln for ln in lines)
    assert any(b.id in ln and "running" in ln for ln in lines)

    res = _run("jobs", "list", "--status", "running", "--json")
    rows = [json.loads(ln) for ln in res.stdout.splitlines()]
    assert [r["id"] for r in rows] == [b.id] and rows[0]["worker"] == "w1"
    res = _run("jobs", "list", "--owner", "alice", "--json")
    assert [json.loads(ln)["id"] for ln in res.stdout.splitlines()] == [a.id]

    res = _run("jobs", "show", b.id)
    shown = json.loads(res.stdout)
    assert shown["process"] == "gdm-opt" and shown["attempts"] == 1
    assert shown["workdir"].endswith(b.id)

    res = _run("jobs", "dismiss", b.id)
    assert res.exit_code == 0 and "dismissed (was running)" in res.stdout
    assert store.get(b.id).status == "dismissed"
    res = _run("jobs", "dismiss", b.id)
    assert res.exit_code == 0 and "already dismissed" in res.stdout


def test_jobs_unknown_id_exits_2(store):
    for cmd in ("show", "dismiss"):
        res = _run("jobs", cmd, "no-such-job")
        assert res.exit_code == 2 and "no job 'no-such-job'" in res.stderr


def test_serve_refuses_public_address_without_accounts(store):
    res = _run("serve", "--host", "0.0.0.0", "--port", "1")
    assert res.exit_code == 2
    assert "only listens on 127.0.0.1" in res.stderr


def test_worker_refuses_unknown_queue(store):
    res = _run("worker", "--queues", "rapid,urgent")
    assert res.exit_code == 2 and "unknown queue 'urgent'" in res.stderr


def test_serve_on_a_busy_port_says_so_in_one_line(store):
    import socket
    import subprocess
    import sys

    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        port = busy.getsockname()[1]
        env = {k: v for k, v in os.environ.items() if not k.startswith("GDM_")}
        env["GDM_HOME"] = os.environ["GDM_HOME"]
        res = subprocess.run([sys.executable, "-m", "gdm.cli", "serve", "--port", str(port),
                              "--no-workers"], capture_output=True, text=True, env=env,
                             timeout=120)
    assert res.returncode == 2, res.stderr
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1, res.stderr
    assert f"127.0.0.1:{port}" in lines[0] and "in use" in lines[0], lines[0]
    assert "Traceback" not in res.stderr and res.stdout == ""
