"""FLATSIM campaign tasks (``gdm.campaign.*``) on the ``batch`` queue.

Per frame::

    gdm.campaign.ingest(frame)
        └─ chord( group(gdm.campaign.pair(frame, p) for p in pairs),
                  chain(gdm.campaign.invert(frame), gdm.campaign.package(frame),
                        gdm.campaign.finalize(campaign)) )

The pairs of a frame are known only once it is ingested (a broken date leaves the
network), so the ingest task sends its frame's chord. Every task:

- is acknowledged late (``acks_late``): a worker killed mid-step (``kill -9``) leaves
  its message unacknowledged and the broker hands it to a worker again after the
  visibility timeout;
- is idempotent: the step is skipped when its outputs exist and verify
  (:func:`flatsim.steps.run_step`), and writes by atomic renames;
- never fails the chord: a pair that raises is retried once (Celery retry); at the
  second failure it is recorded as failed in the campaign state and the task returns
  normally, so the frame goes on without that pair (the inversion reports the gap).

The inversion waits (retries every few seconds) while some planned pair of its frame is
neither done nor failed, so that a chord released early by a redelivered pair never
inverts an incomplete network.

:func:`start` registers a campaign and dispatches its frames; :func:`resume` re-sends
the frames that are not finished (finished steps are skipped); :func:`stop` marks the
campaign stopped (running steps end, queued ones return at once).
"""

from __future__ import annotations

import datetime as dt
import logging
import os
from pathlib import Path
from typing import Any

from celery import chain, chord, group

from flatsim import register, spec_of
from flatsim.spec import CampaignSpec
from flatsim.state import MAX_PAIR_FAILURES, CampaignState, get_state
from flatsim.steps import (
    FrameJob,
    frame_job,
    frame_plan,
    ingest,
    invert,
    package,
    run_pair,
    run_step,
    verify_ingest,
    verify_inversion,
    verify_pair,
    write_catalog,
)
from gdmcore import InputError
from workflows.celery_app import get_app, queue_name
from workflows.settings import Settings, get_settings

__all__ = ["start", "resume", "stop", "dispatch_frame", "frame_finished",
           "ingest_task", "pair_task", "invert_task", "package_task", "finalize_task",
           "INVERT_WAIT_S", "INVERT_MAX_WAITS"]

log = logging.getLogger(__name__)

app = get_app()

INVERT_WAIT_S = 3
"""Seconds between two looks of a waiting inversion at its frame's unfinished pairs."""
INVERT_MAX_WAITS = 400
"""After this many waits (20 min) the inversion goes on with the pairs it has."""


def _settings() -> Settings:
    return app.conf["gdm_settings"]


def _batch(settings: Settings | None = None) -> str:
    return queue_name("batch", settings or _settings())


def _worker(task: Any) -> str:
    return f"{task.request.hostname or 'worker'}:{os.getpid()}"


def _load(cid: str, settings: Settings | None = None
          ) -> tuple[CampaignState, CampaignSpec, Path]:
    settings = settings or _settings()
    state = get_state(settings.database_url)
    row = state.campaign(cid)
    if row is None:
        raise InputError(f"no campaign {cid!r}")
    return state, spec_of(row), Path(row["out_dir"])


def _job(cid: str, frame_id: str) -> tuple[CampaignState, FrameJob]:
    state, spec, root = _load(cid)
    return state, frame_job(spec, cid, root, frame_id)


# ---------------------------------------------------------------------- tasks
@app.task(name="gdm.campaign.ingest", bind=True, acks_late=True, max_retries=3)
def ingest_task(self: Any, cid: str, frame_id: str) -> str:
    """Ingest a frame, then send its chord of pairs and its inversion chain."""
    state, job = _job(cid, frame_id)
    head = frame_plan(job)[0]
    out = run_step(state, job, head, lambda: ingest(job, lambda: state.touch_campaign(cid)),
                   _worker(self),
                   max_failures=MAX_PAIR_FAILURES)
    if out.status == "retry":
        raise self.retry(countdown=2)
    if out.status in ("done", "skipped"):
        dispatch_frame(cid, job, out.result)
    elif out.status == "failed":
        log.error("campaign %s frame %s: ingest failed: %s", cid, frame_id, out.error)
        finalize_task.apply_async((cid,), queue=_batch())
    return out.status


def dispatch_frame(cid: str, job: FrameJob, info: dict, settings: Settings | None = None
                   ) -> Any:
    """Send a frame's chord: its pairs, then inversion, packaging and the campaign check."""
    q = _batch(settings)
    steps = frame_plan(job, info)
    get_state((settings or _settings()).database_url).ensure_steps(steps)
    header = group(pair_task.si(cid, job.frame.id, s.pair).set(queue=q)
                   for s in steps if s.kind == "pair")
    body = chain(invert_task.si(cid, job.frame.id).set(queue=q),
                 package_task.si(cid, job.frame.id).set(queue=q),
                 finalize_task.si(cid).set(queue=q))
    return chord(header, body).apply_async(queue=q)


@app.task(name="gdm.campaign.pair", bind=True, acks_late=True, max_retries=5)
def pair_task(self: Any, cid: str, frame_id: str, pair: str) -> dict:
    """Interferogram and unwrapping of one pair; a second failure leaves the pair out."""
    state, job = _job(cid, frame_id)
    info = verify_ingest(job)
    if info is None:
        return {"pair": pair, "status": "failed", "error": "frame not ingested"}
    step = next(s for s in frame_plan(job, info) if s.pair == pair)
    out = run_step(state, job, step, lambda: run_pair(job, info, pair), _worker(self),
                   max_failures=MAX_PAIR_FAILURES)
    if out.status == "retry":
        log.warning("campaign %s %s pair %s failed once (%s); retrying", cid, frame_id,
                    pair, out.error)
        raise self.retry(countdown=1)
    if out.status == "failed":
        log.error("campaign %s %s pair %s failed %d times, left out: %s", cid, frame_id,
                  pair, MAX_PAIR_FAILURES, out.error)
    return {"pair": pair, "status": out.status}


def _unfinished_pairs(state: CampaignState, job: FrameJob, info: dict) -> list[str]:
    rows = {r["pair"]: r for r in state.steps(job.campaign, frame=job.frame.id, kind="pair")}
    out = []
    for name in info["pair_names"]:
        r = rows.get(name)
        if r is not None and r["status"] in ("done", "failed"):
            continue
        if verify_pair(job, info, name) is None:
            out.append(name)
    return out


@app.task(name="gdm.campaign.invert", bind=True, acks_late=True,
          max_retries=INVERT_MAX_WAITS + 2)
def invert_task(self: Any, cid: str, frame_id: str) -> str:
    """Chunked time-series inversion of a frame (waits for its unfinished pairs)."""
    state, job = _job(cid, frame_id)
    info = verify_ingest(job)
    if info is None or not state.is_active(cid):
        return "stopped" if info is not None else "failed"
    if verify_inversion(job) is None:
        waiting = _unfinished_pairs(state, job, info)
        if waiting and self.request.retries < INVERT_MAX_WAITS:
            raise self.retry(countdown=INVERT_WAIT_S)
        if waiting:
            log.error("campaign %s %s: inverting without %d pair(s) never finished",
                      cid, frame_id, len(waiting))
    step = next(s for s in frame_plan(job, info) if s.kind == "invert")
    out = run_step(state, job, step, lambda: invert(job, info), _worker(self),
                   max_failures=MAX_PAIR_FAILURES)
    if out.status == "retry":
        raise self.retry(countdown=2)
    return out.status


@app.task(name="gdm.campaign.package", bind=True, acks_late=True, max_retries=3)
def package_task(self: Any, cid: str, frame_id: str) -> str:
    """Quicklooks, network plot, STAC item and metadata of a frame."""
    state, job = _job(cid, frame_id)
    info = verify_ingest(job)
    inv = verify_inversion(job)
    if info is None or inv is None:
        return "failed"
    step = next(s for s in frame_plan(job, info) if s.kind == "package")
    out = run_step(state, job, step, lambda: package(job, info, inv), _worker(self),
                   max_failures=MAX_PAIR_FAILURES)
    if out.status == "retry":
        raise self.retry(countdown=2)
    return out.status


def frame_finished(state: CampaignState, cid: str, frame_id: str) -> str | None:
    """``done`` or ``failed`` once a frame will not change any more, else None."""
    rows = {r["kind"]: r for r in state.steps(cid, frame=frame_id) if r["kind"] != "pair"}
    if rows.get("package", {}).get("status") == "done":
        return "done"
    if any(rows.get(k, {}).get("status") == "failed" for k in ("ingest", "invert", "package")):
        return "failed"
    return None


@app.task(name="gdm.campaign.finalize", bind=True, acks_late=True, max_retries=3)
def finalize_task(self: Any, cid: str) -> str:
    """When every frame is finished: STAC catalogue, report, campaign status."""
    from flatsim.report import write_report

    state, spec, root = _load(cid)
    frames = [f.id for f in spec.all_frames()]
    ends = [frame_finished(state, cid, f) for f in frames]
    if any(e is None for e in ends):
        return "waiting"
    write_catalog(spec, cid, root, [f for f, e in zip(frames, ends, strict=True)
                                    if e == "done"])
    write_report(state, cid)
    ok = all(e == "done" for e in ends)
    state.set_campaign_status(cid, "finished" if ok else "finished_with_failures",
                              only_from=["running"])
    return "finished"


# -------------------------------------------------------------- control
def _send_frames(state: CampaignState, cid: str, settings: Settings) -> list[str]:
    _, spec, root = _load(cid, settings)
    # Sent through the app of these settings (broker, queue prefix), not the app this
    # module was imported with: the caller (CLI, server, tests) may use other settings.
    control = get_app(settings)
    q = _batch(settings)
    sent = []
    for f in spec.all_frames():
        if frame_finished(state, cid, f.id) is not None:
            continue
        control.send_task(ingest_task.name, args=(cid, f.id), queue=q, routing_key=q,
                          exchange=q)
        sent.append(f.id)
    if not sent:
        control.send_task(finalize_task.name, args=(cid,), queue=q, routing_key=q,
                          exchange=q)
    return sent


def start(spec: CampaignSpec, settings: Settings | None = None) -> tuple[str, bool, list[str]]:
    """Register a campaign and dispatch its frames on the batch queue.

    Returns ``(campaign id, created, frames sent)``. Starting a spec that was started
    before resumes it (same id; finished steps are skipped).
    """
    settings = settings or get_settings()
    settings.ensure_dirs()
    state = get_state(settings.database_url)
    cid, _root, created = register(state, spec, settings.products_dir)
    if not created:
        return cid, False, resume(cid, settings)
    return cid, True, _send_frames(state, cid, settings)


def resume(cid: str, settings: Settings | None = None) -> list[str]:
    """Re-dispatch the unfinished frames of a campaign; returns the frames sent."""
    settings = settings or get_settings()
    state = get_state(settings.database_url)
    row = state.campaign(cid)
    if row is None:
        raise InputError(f"no campaign {cid!r}")
    state.set_campaign_status(cid, "running")
    state.reset_running(cid)
    return _send_frames(state, cid, settings)


def revive_stalled(settings: Settings | None = None, stall_seconds: float | None = None
                   ) -> list[str]:
    """Resume running campaigns on which no step started or ended for a while.

    A worker killed with steps in hand leaves their messages unacknowledged until the
    broker's visibility timeout (hours); a lost message leaves a frame waiting for ever.
    When nothing has moved for ``stall_seconds`` (``GDM_CAMPAIGN_STALL_SECONDS``,
    default 1800; 0 never), the campaign is resumed: finished steps are skipped, so
    the only cost of a false alarm (a single step longer than the period) is that step
    run twice. Returns the campaigns resumed.
    """
    settings = settings or get_settings()
    if stall_seconds is None:
        stall_seconds = float(os.environ.get("GDM_CAMPAIGN_STALL_SECONDS", "1800"))
    if stall_seconds <= 0:
        return []
    state = get_state(settings.database_url)
    cutoff = dt.datetime.now(dt.UTC).replace(tzinfo=None) - dt.timedelta(
        seconds=stall_seconds)
    revived = []
    for row in state.campaigns():
        if row["status"] != "running":
            continue
        last = state.last_activity(row["id"])
        if last is None or last > cutoff or not state.claim_stalled(row["id"], cutoff):
            continue
        log.warning("campaign %s: no step moved for %.0f s; resuming it", row["id"],
                    stall_seconds)
        resume(row["id"], settings)
        revived.append(row["id"])
    return revived


def stop(cid: str, settings: Settings | None = None) -> bool:
    """Stop a campaign: queued steps return at once, running ones finish their step."""
    settings = settings or get_settings()
    state = get_state(settings.database_url)
    if state.campaign(cid) is None:
        raise InputError(f"no campaign {cid!r}")
    return state.set_campaign_status(cid, "stopped", "stopped by the operator",
                                     only_from=["running"])
