"""Service runtime: runner, lease reaper, Celery config, and real workers on every broker.

Unit tests run :func:`workflows.runner.run_job` in-process (it forks the job's child).
Integration tests start real ``celery worker`` processes (and ``gdm serve``) on the
embedded SQLite broker, Redis, RabbitMQ and a PostgreSQL job store, and measure the
dismissal latency, the kill -9 recovery and the rapid-queue start latency.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import http.server
import json
import os
import shutil
import signal
import threading
import time
import uuid
from pathlib import Path

import pytest
import rasterio
from kombu.transport import sqlalchemy as kombu_sqla

from simulators.opt import SimulateConfig, simulate
from tests.serverutil import running_server
from workflows.celery_app import EMBEDDED_BUSY_POLL_S, EMBEDDED_BUSY_S, make_celery, queue_name
from workflows.jobstore import JobStore, User
from workflows.runner import OUTPUTS_MARKER, run_job, status_document
from workflows.settings import get_settings
from workflows.submit import dismiss, job_dir, submit, wait
from workflows.worker import reap_once, start_worker, stop_worker, wait_ready

OPERATOR = User("tester", "operator", 1000)
REDIS_DB = 11


# ----------------------------------------------------------------- fixtures
@pytest.fixture
def gdm_env(tmp_path, monkeypatch):
    """A fresh embedded GDM_HOME in os.environ; returns a function adding settings."""
    for key in list(os.environ):
        if key.startswith("GDM_"):
            monkeypatch.delenv(key)
    env = {"GDM_HOME": str(tmp_path / "home")}

    def configure(**extra: str) -> dict[str, str]:
        env.update(extra)
        for k, v in env.items():
            monkeypatch.setenv(k, v)
        get_settings().ensure_dirs()
        return dict(env)

    configure()
    return configure


@pytest.fixture(scope="module")
def pair_scenes(tmp_path_factory):
    """A small simulated pair (a job of a few seconds)."""
    root = tmp_path_factory.mktemp("pair")
    return simulate(SimulateConfig(case="fault", size=256, dates=2, seed=3), root).images


@pytest.fixture(scope="module")
def series_scenes(tmp_path_factory):
    """A simulated 3-date series (about 10 s of work with step 4)."""
    root = tmp_path_factory.mktemp("series")
    return simulate(SimulateConfig(case="fault", size=512, dates=3, seed=4), root).images


def _upload(images, settings) -> list[str]:
    folder = settings.uploads_dir / OPERATOR.name  # each user's uploads in their folder
    folder.mkdir(parents=True, exist_ok=True)
    names = []
    for p in images:
        shutil.copy(p, folder / p.name)
        names.append(p.name)
    return names


def _opt_inputs(images, settings, long: bool = False, step: int | None = None) -> dict:
    inputs = {"images": _upload(images, settings), "preset": "etq"}
    if long:
        inputs["step"] = 4
    if step:
        inputs["step"] = step
    return inputs


def _wait_for(predicate, timeout: float, poll: float = 0.05, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(poll)


@contextlib.contextmanager
def _worker(queues: str, home: Path, env: dict | None = None):
    ready = home / f"ready-{uuid.uuid4().hex[:6]}"
    log = home / f"worker-{ready.name}.log"
    proc = start_worker(queues, env=env, ready_file=ready, log_file=log)
    try:
        wait_ready(ready, proc, timeout=90)
        proc.log = log  # type: ignore[attr-defined]
        yield proc
    finally:
        stop_worker(proc, timeout=5)


def _product_files(job, settings) -> list[str]:
    root = job_dir(job, settings)
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())


def _assert_opt_products(job, settings):
    assert job.status == "successful", job.message
    root = job_dir(job, settings)
    for name in ("east", "north", "magnitude", "score", "item", "report"):
        path = root / job.outputs[name]
        assert path.is_file() and path.stat().st_size > 500, name
    with rasterio.open(root / job.outputs["east"]) as ds:
        assert ds.dtypes[0] == "float32" and ds.width >= 3
    assert job.outputs["quicklooks"], "no quicklook"
    assert not [p for p in root.rglob(".partial-*")], "staging folder left behind"


# --------------------------------------------------------------- unit tests
def test_celery_configuration(gdm_env, tmp_path, monkeypatch):
    gdm_env(GDM_BROKER_URL="redis://127.0.0.1:6379/5", GDM_VISIBILITY_TIMEOUT="7200",
            GDM_QUEUE_PREFIX="x-")
    app = make_celery(get_settings())
    conf = app.conf
    assert conf.task_acks_late is True
    assert conf.worker_prefetch_multiplier == 1
    assert conf.task_reject_on_worker_lost is True
    assert conf.broker_connection_retry_on_startup is True
    assert conf.broker_transport_options["visibility_timeout"] == 7200
    assert sorted(q.name for q in conf.task_queues) == ["x-batch", "x-ondemand", "x-rapid"]
    assert conf.task_default_queue == "x-ondemand"
    embedded = make_celery(get_settings({"GDM_HOME": str(tmp_path / "other")}))
    assert embedded.conf.broker_url.startswith("sqlite:///")
    assert embedded.conf.broker_transport.endswith(":EmbeddedTransport")
    with embedded.connection_for_write() as conn:
        assert conn.transport.polling_interval == 0.25
        # a delivery makes the next polls quick (the job slot frees within ~0.02 s)
        monkeypatch.setattr(kombu_sqla.Transport, "_deliver", lambda self, m, q: None)
        conn.transport._deliver(None, "x-ondemand")
        assert conn.transport.polling_interval == EMBEDDED_BUSY_POLL_S
        conn.transport._last_delivery -= EMBEDDED_BUSY_S
        assert conn.transport.polling_interval == 0.25
    assert "visibility_timeout" not in embedded.conf.broker_transport_options
    assert queue_name("rapid", get_settings()) == "x-rapid"


def test_run_job_echo_once_then_skipped(gdm_env):
    settings = get_settings()
    store = JobStore(settings.database_url)
    job = store.create_job("u", "echo", {"message": "héllo"}, "ondemand")
    assert run_job(job.id, store=store, settings=settings, worker_name="w1") == "successful"
    done = store.get(job.id)
    assert done.outputs == {"message": "héllo"} and done.progress == 100
    assert done.attempts == 1 and done.finished is not None
    assert json.loads((job_dir(job, settings) / OUTPUTS_MARKER).read_text()) == done.outputs
    # a second delivery of the same message changes nothing
    assert run_job(job.id, store=store, settings=settings, worker_name="w2") == "skipped"
    again = store.get(job.id)
    assert again.attempts == 1 and again.worker == "w1"


def test_run_job_bad_input_fails_with_message(gdm_env):
    settings = get_settings()
    store = JobStore(settings.database_url)
    job = store.create_job("u", "gdm-opt", {"images": ["nope1.tif", "nope2.tif"],
                                            "preset": "etq"}, "ondemand")
    assert run_job(job.id, store=store, settings=settings, worker_name="w") == "failed"
    failed = store.get(job.id)
    assert "no uploaded file named 'nope1.tif'" in failed.message
    assert not failed.message.startswith("internal error")
    bad = store.create_job("u", "echo", {"message": 3, "extra": 1}, "ondemand")
    assert run_job(bad.id, store=store, settings=settings, worker_name="w") == "failed"
    assert store.get(bad.id).message.startswith("invalid inputs:")


def test_dismissed_job_is_never_started(gdm_env):
    settings = get_settings()
    store = JobStore(settings.database_url)
    job = store.create_job("u", "echo", {"message": "x"}, "ondemand")
    store.dismiss(job.id)
    assert run_job(job.id, store=store, settings=settings, worker_name="w") == "skipped"
    assert store.get(job.id).attempts == 0
    assert not job_dir(job, settings).exists()


def test_resume_discards_partial_stage_and_reuses_complete_products(gdm_env):
    settings = get_settings()
    store = JobStore(settings.database_url)
    job = store.create_job("u", "echo", {"message": "fresh"}, "ondemand")
    root = job_dir(job, settings)
    (root / "products" / ".partial-abc").mkdir(parents=True)
    (root / "products" / ".partial-abc" / "east.tif").write_bytes(b"half")
    (root / OUTPUTS_MARKER).write_text(json.dumps({"message": "from an earlier attempt"}))
    assert run_job(job.id, store=store, settings=settings, worker_name="w") == "successful"
    assert store.get(job.id).outputs == {"message": "from an earlier attempt"}
    assert not (root / "products" / ".partial-abc").exists()


def test_recorded_outputs_count_only_when_their_files_exist(tmp_path):
    from workflows.runner import _completed_outputs

    outputs = {"east": "products/east.tif", "item": "products/item.json",
               "quicklooks": ["products/east.png"]}
    (tmp_path / OUTPUTS_MARKER).write_text(json.dumps(outputs))
    assert _completed_outputs(tmp_path, "gdm-opt") is None
    (tmp_path / "products").mkdir()
    for name in ("east.tif", "item.json"):
        (tmp_path / "products" / name).write_bytes(b"x")
    assert _completed_outputs(tmp_path, "gdm-opt") is None  # quicklook still missing
    (tmp_path / "products" / "east.png").write_bytes(b"x")
    assert _completed_outputs(tmp_path, "gdm-opt") == outputs
    (tmp_path / OUTPUTS_MARKER).write_text("{truncated")
    assert _completed_outputs(tmp_path, "gdm-opt") is None


class _Recorder(http.server.BaseHTTPRequestHandler):
    received: list = []

    def do_POST(self):  # noqa: N802
        body = self.rfile.read(int(self.headers["Content-Length"]))
        type(self).received.append((self.path, json.loads(body)))
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args):
        pass


def test_callbacks_receive_status_documents(gdm_env):
    # the subscriber listens on 127.0.0.1, which callbacks reach only when it is allowed
    gdm_env(GDM_PUBLIC_URL="http://127.0.0.1:9/", GDM_ALLOWED_HOSTS="127.0.0.1")
    settings = get_settings()
    store = JobStore(settings.database_url)
    _Recorder.received = []
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Recorder)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        sub = {"successUri": base + "/ok", "failedUri": base + "/failed"}
        ok = store.create_job("u", "echo", {"message": "x"}, "ondemand", subscriber=sub)
        bad = store.create_job("u", "echo", {}, "ondemand", subscriber=sub)
        run_job(ok.id, store=store, settings=settings, worker_name="w")
        run_job(bad.id, store=store, settings=settings, worker_name="w")
        # a subscriber that is down does not fail the job
        down = store.create_job("u", "echo", {"message": "y"}, "ondemand",
                                subscriber={"successUri": "http://127.0.0.1:9/x"})
        assert run_job(down.id, store=store, settings=settings, worker_name="w") == "successful"
    finally:
        server.shutdown()
        server.server_close()
    got = dict(_Recorder.received)
    assert set(got) == {"/ok", "/failed"}
    assert got["/ok"]["jobID"] == ok.id and got["/ok"]["status"] == "successful"
    assert got["/ok"]["progress"] == 100 and got["/ok"]["processID"] == "echo"
    assert any(link["href"].endswith(f"/ogcapi/jobs/{ok.id}/results")
               for link in got["/ok"]["links"])
    assert got["/failed"]["status"] == "failed" and "message" in got["/failed"]["message"]


def test_status_document_fields(gdm_env):
    settings = get_settings()
    store = JobStore(settings.database_url)
    job = store.create_job("u", "echo", {"message": "x"}, "ondemand")
    doc = status_document(job, settings)
    assert doc["status"] == "accepted" and doc["type"] == "process"
    assert doc["created"].endswith("Z") and doc["started"] is None and "links" not in doc


def test_reaper_requeues_expired_leases_once(gdm_env):
    settings = get_settings()
    store = JobStore(settings.database_url)
    job = store.create_job("u", "echo", {"message": "x"}, "ondemand")
    assert store.claim(job.id, "dead-worker", lease_seconds=1).attempts == 1
    assert reap_once(store, settings) == []  # lease still live
    time.sleep(1.2)
    assert [j.id for j in store.stale_running()] == [job.id]
    assert reap_once(store, settings) == [job.id]
    requeued = store.get(job.id)
    assert requeued.status == "accepted" and requeued.worker is None
    assert store.requeue_stale(job.id, max_attempts=3) is None  # a racing reaper loses
    assert reap_once(store, settings) == []
    # the re-enqueued message runs it (attempt 2)
    assert run_job(job.id, store=store, settings=settings, worker_name="w2") == "successful"
    assert store.get(job.id).attempts == 2
    # a job whose worker keeps dying fails after MAX_ATTEMPTS
    doomed = store.create_job("u", "echo", {"message": "x"}, "ondemand")
    for _ in range(2):
        store.claim(doomed.id, "w", lease_seconds=1)
        time.sleep(1.1)
        assert store.requeue_stale(doomed.id, max_attempts=2) in ("accepted", "failed")
    final = store.get(doomed.id)
    assert final.status == "failed" and "gave up after 2 attempts" in final.message


@pytest.mark.slow
@pytest.mark.integration
def test_accepted_job_whose_message_was_lost_is_sent_again_and_runs_once(gdm_env):
    from workflows.celery_app import enqueue

    env = gdm_env(GDM_RESEND_AFTER="1")
    settings = get_settings()
    store = JobStore(settings.database_url)
    lost = submit("echo", {"message": "lost"}, OPERATOR, store=store, enqueue=False)
    assert reap_once(store, settings) == []  # not yet overdue
    time.sleep(1.2)
    assert reap_once(store, settings) == [lost.id]
    assert reap_once(store, settings) == []  # re-sent once per period, by one reaper
    enqueue(store.get(lost.id), settings)  # and a duplicate on top of it
    with _worker("ondemand", settings.home, env) as proc:
        done = wait(lost.id, store=store, timeout=60, poll=0.05)
        _wait_for(lambda: f"job {lost.id} skipped" in proc.log.read_text(), timeout=30,
                  what="the duplicate to be skipped")
    assert done.status == "successful" and done.outputs == {"message": "lost"}
    assert done.attempts == 1


# -------------------------------------------------------- real workers
def _echo_roundtrip(store, queue="ondemand", timeout=60.0) -> float:
    t0 = time.monotonic()
    job = submit("echo", {"message": "ping"}, OPERATOR, store=store, queue=queue)
    job = wait(job.id, store=store, timeout=timeout, poll=0.05)
    assert job.status == "successful", job.message
    assert job.outputs == {"message": "ping"}
    return time.monotonic() - t0


@pytest.mark.slow
@pytest.mark.integration
def test_embedded_server_runs_echo_and_gdm_opt(gdm_env, pair_scenes, monkeypatch):
    with running_server() as url:
        for k, v in url.env.items():
            if k.startswith("GDM_"):
                monkeypatch.setenv(k, v)
        settings = get_settings()
        store = JobStore(settings.database_url)
        rapid = _echo_roundtrip(store, queue="rapid")
        ondemand = _echo_roundtrip(store, queue="ondemand")
        job = submit("gdm-opt", _opt_inputs(pair_scenes, settings), OPERATOR, store=store)
        job = wait(job.id, store=store, timeout=300)
        _assert_opt_products(job, settings)
        assert job.attempts == 1
        print(f"embedded: echo rapid {rapid:.2f} s, ondemand {ondemand:.2f} s")


@pytest.fixture
def redis_db():
    import redis

    client = redis.Redis(host="127.0.0.1", port=6379, db=REDIS_DB)
    client.flushdb()
    yield f"redis://127.0.0.1:6379/{REDIS_DB}"
    client.flushdb()
    client.close()


@pytest.mark.integration
def test_redis_broker_echo_and_gdm_opt(gdm_env, pair_scenes, redis_db):
    env = gdm_env(GDM_BROKER_URL=redis_db, GDM_RESULT_BACKEND=redis_db,
                  GDM_QUEUE_PREFIX=f"t{uuid.uuid4().hex[:8]}-")
    settings = get_settings()
    store = JobStore(settings.database_url)
    with _worker("rapid,ondemand", settings.home, env):
        latency = _echo_roundtrip(store)
        job = submit("gdm-opt", _opt_inputs(pair_scenes, settings), OPERATOR, store=store)
        job = wait(job.id, store=store, timeout=300)
        _assert_opt_products(job, settings)
    print(f"redis: echo {latency:.2f} s")


@pytest.mark.integration
def test_rabbitmq_broker_echo(gdm_env):
    prefix = f"t{uuid.uuid4().hex[:8]}-"
    env = gdm_env(GDM_BROKER_URL="amqp://guest:guest@127.0.0.1:5672//",
                  GDM_QUEUE_PREFIX=prefix)
    settings = get_settings()
    store = JobStore(settings.database_url)
    try:
        with _worker("ondemand", settings.home, env):
            latency = _echo_roundtrip(store)
    finally:
        from workflows.celery_app import get_app

        with get_app().connection_for_write() as conn:
            channel = conn.default_channel
            for q in ("rapid", "ondemand", "batch"):
                with contextlib.suppress(Exception):
                    channel.queue_delete(prefix + q)
    print(f"rabbitmq: echo {latency:.2f} s")


@pytest.fixture
def postgres_url():
    psycopg2 = pytest.importorskip("psycopg2")
    name = f"gdm_test_{uuid.uuid4().hex[:10]}"
    admin = psycopg2.connect(host="127.0.0.1", port=5432, user="postgres", dbname="test")
    admin.autocommit = True
    with admin.cursor() as cur:
        cur.execute(f'CREATE DATABASE "{name}"')
    try:
        yield f"postgresql+psycopg2://postgres@127.0.0.1:5432/{name}"
    finally:
        with admin.cursor() as cur:
            cur.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.close()


@pytest.mark.integration
def test_postgres_job_store_echo(gdm_env, postgres_url):
    env = gdm_env(GDM_DATABASE_URL=postgres_url)
    settings = get_settings()
    store = JobStore(settings.database_url)
    with _worker("ondemand", settings.home, env):
        latency = _echo_roundtrip(store)
    assert store.counts() == {"successful": 1}
    store.engine.dispose()
    print(f"postgres store: echo {latency:.2f} s")


@pytest.mark.integration
def test_postgres_store_made_before_token_expiry_is_upgraded(postgres_url):
    from tests.test_security import check_token_migration

    check_token_migration(postgres_url)


@pytest.mark.slow
@pytest.mark.integration
def test_dismiss_stops_running_work_within_10s(gdm_env, series_scenes):
    env = gdm_env()
    settings = get_settings()
    store = JobStore(settings.database_url)
    with _worker("ondemand", settings.home, env) as proc:
        # step 2: tens of seconds of work, so the dismissal lands in the middle of it
        job = submit("gdm-opt", _opt_inputs(series_scenes, settings, step=2), OPERATOR,
                     store=store)
        _wait_for(lambda: (j := store.get(job.id)).status == "running" and j.progress >= 5,
                  timeout=90, what="the job to make progress")
        t0 = time.monotonic()
        assert dismiss(job.id, OPERATOR, store=store).status == "dismissed"
        # the worker is free again: a job queued behind the dismissed one completes
        follow = submit("echo", {"message": "next"}, OPERATOR, store=store)
        follow = wait(follow.id, store=store, timeout=30, poll=0.05)
        latency = time.monotonic() - t0
        assert follow.status == "successful"
        # the pool process logs the dismissal before it takes the next job; allow the
        # log file a moment to receive the line
        line = f"job {job.id} dismissed: work stopped"
        try:
            _wait_for(lambda: line in proc.log.read_text(), timeout=10,
                      what="the worker to log the dismissal")
        except AssertionError:
            print(proc.log.read_text()[-4000:])
            raise
    print(f"dismiss -> worker free: {latency:.2f} s")
    assert latency <= 10.0
    final = store.get(job.id)
    assert final.status == "dismissed" and final.outputs == {}
    assert not job_dir(final, settings).exists()


EXPECTED_SERIES_FILES = sorted(
    [f"products/{n}" for n in (
        "east.tif", "north.tif", "magnitude.tif", "score.tif", "timeseries_east.tif",
        "timeseries_north.tif", "velocity_east.tif", "velocity_north.tif", "residual.tif",
        "timeseries_east_std.tif", "timeseries_north_std.tif", "velocity_std_east.tif",
        "velocity_std_north.tif",
        "east.png", "north.png", "magnitude.png", "score.png", "velocity_east.png",
        "velocity_north.png", "item.json", "report.json", "timeseries.nc")]
    + [f"products/pairs/{a}_{b}_{c}.tif"
       for a, b in (("20230115", "20230316"), ("20230115", "20230515"),
                    ("20230316", "20230515"))
       for c in ("east", "north", "score")]
    + [OUTPUTS_MARKER])


@pytest.mark.slow
@pytest.mark.integration
def test_kill9_worker_mid_job_new_worker_finishes_once(gdm_env, series_scenes):
    env = gdm_env(GDM_LEASE_SECONDS="3")
    settings = get_settings()
    store = JobStore(settings.database_url)
    home = settings.home
    first = start_worker("ondemand", env=env, ready_file=home / "w1.ready",
                         log_file=home / "w1.log")
    try:
        wait_ready(home / "w1.ready", first, timeout=90)
        job = submit("gdm-opt", _opt_inputs(series_scenes, settings, long=True), OPERATOR,
                     store=store)
        products = job_dir(job, settings) / "products"

        def staging_has_files():
            return any(p.is_file() for d in products.glob(".partial-*") for p in d.rglob("*"))

        # kill while the products are being written: the worst moment
        _wait_for(staging_has_files, timeout=120, poll=0.01, what="product staging")
        os.kill(first.pid, signal.SIGKILL)
        t_kill = time.monotonic()
        first.wait(10)
        assert store.get(job.id).status == "running"
    finally:
        stop_worker(first, timeout=1)
    leftover = [p.name for p in products.glob(".partial-*")]
    assert leftover, "the killed attempt should have left its staging folder"
    with _worker("ondemand", home, env):
        done = wait(job.id, store=store, timeout=120, poll=0.1)
        recovery = time.monotonic() - t_kill
    print(f"kill -9 -> job successful on a new worker: {recovery:.1f} s")
    _assert_opt_products(done, settings)
    assert done.attempts == 2
    assert _product_files(done, settings) == EXPECTED_SERIES_FILES
    assert recovery <= 60


@pytest.mark.slow
@pytest.mark.integration
def test_rapid_job_starts_within_5s_while_batch_holds_100(gdm_env, pair_scenes, monkeypatch):
    with running_server() as url:
        for k, v in url.env.items():
            if k.startswith("GDM_"):
                monkeypatch.setenv(k, v)
        settings = get_settings()
        store = JobStore(settings.database_url)
        inputs = _opt_inputs(pair_scenes, settings)
        batch = [submit("gdm-opt", inputs, OPERATOR, store=store, queue="batch")
                 for _ in range(100)]
        queued = store.counts().get("accepted", 0)
        assert queued >= 95
        created = dt.datetime.now(dt.UTC)
        t0 = time.monotonic()
        job = submit("echo", {"message": "rapid"}, OPERATOR, store=store, queue="rapid")
        started = _wait_for(lambda: store.get(job.id).started, timeout=30, what="rapid start")
        start_latency = time.monotonic() - t0
        done = wait(job.id, store=store, timeout=30, poll=0.05)
        total = time.monotonic() - t0
        still_queued = sum(1 for b in batch if store.get(b.id).status == "accepted")
        print(f"rapid: started {start_latency:.2f} s (store: "
              f"{(started - created).total_seconds():.2f} s), successful {total:.2f} s, "
              f"with {queued} batch jobs queued ({still_queued} still queued after)")
        assert done.status == "successful"
        assert start_latency <= 5.0
        assert still_queued >= 90
