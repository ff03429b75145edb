"""Activating: check the operator, select scenes, launch the rapid jobs, keep the bulletin."""

from __future__ import annotations

import logging
import re
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from gdmcore import InputError, user_uploads
from gdmio.locks import file_lock
from gdmio.providers import Scene
from gdmio.providers.aoi import parse_aoi
from gdmio.providers.resolve import scene_cache_from_env
from gdmio.raster import date_from_name
from workflows.activation.bulletin import write_bulletin
from workflows.activation.models import SAR_CO_EVENT, ActivationError, ActivationRequest
from workflows.activation.selection import (
    ProviderFactory,
    Selection,
    default_provider,
    scene_summary,
    search_and_select,
)
from workflows.activation.store import Activation, ActivationStore, utc_now
from workflows.jobstore import FINAL_STATUSES, JobStore, User
from workflows.settings import Settings
from workflows.submit import SubmitError, submit

__all__ = ["check_operator", "parse_request", "bulletin_dir", "activate", "refresh_bulletin"]

log = logging.getLogger(__name__)


def check_operator(user: User | None) -> User:
    """The caller if they may activate (operators and admins), else ActivationError."""
    if user is None:
        raise ActivationError(401, "a valid API token is required to activate")
    if not user.may_use_rapid:
        raise ActivationError(403, f"user {user.name!r} (role {user.role}) may not "
                              "activate: rapid activations are for operators and admins")
    return user


def parse_request(raw: Any) -> ActivationRequest:
    """Validate a request body (ActivationError 400 naming each problem)."""
    if isinstance(raw, ActivationRequest):
        return raw
    if not isinstance(raw, dict):
        raise ActivationError(400, "the activation must be a JSON object")
    try:
        req = ActivationRequest.model_validate(raw)
        parse_aoi(req.aoi)
    except ValidationError as exc:
        parts = [f"{'.'.join(str(p) for p in e.get('loc', ())) or 'body'}: {e.get('msg')}"
                 for e in exc.errors()]
        raise ActivationError(400, "invalid activation: " + "; ".join(parts)) from None
    except InputError as exc:
        raise ActivationError(400, f"invalid activation: aoi: {exc}") from None
    return req


def bulletin_dir(activation_id: str, settings: Settings) -> Path:
    """Folder of an activation's bulletin (HTML, PDF, maps)."""
    return settings.products_dir / "activations" / activation_id


def _upload_name(scene: Scene, band: str, activation_id: str) -> str:
    safe = re.sub(r"[^A-Za-z0-9._-]", "_", scene.id)[:120]
    return f"S2_{scene.datetime:%Y%m%d}_{activation_id[:8]}_{safe}_{band}.tif"


def _s2_images(sel: Selection, request: ActivationRequest, user: User, settings: Settings,
               activation_id: str, providers: ProviderFactory) -> list[str]:
    prov = providers("s2")
    scenes = sel.pre + sel.post
    if request.s2_fetch == "url":
        return [prov.asset_for(s, request.s2_band).href for s in scenes]
    cache = scene_cache_from_env()
    aoi = parse_aoi(request.aoi)
    folder = user_uploads(settings.uploads_dir, user.name)
    folder.mkdir(parents=True, exist_ok=True)
    names = []
    for s in scenes:
        path = prov.fetch(s, cache, bands=[request.s2_band], aoi=aoi)[0]
        name = _upload_name(s, request.s2_band, activation_id)
        shutil.copyfile(path, folder / name)
        names.append(name)
    return names


def _pleiades_images(views: Sequence[Scene], user: User, settings: Settings,
                     activation_id: str) -> list[str]:
    folder = user_uploads(settings.uploads_dir, user.name)
    folder.mkdir(parents=True, exist_ok=True)
    names = []
    for v in views:
        image = next((a.href for k, a in sorted(v.assets.items()) if k.startswith("image")),
                     None)
        if image is None or not Path(image).is_file():
            raise InputError(f"{v.id}: its image file is missing (register the delivery "
                             "again)")
        src = Path(image)
        name = re.sub(r"[^A-Za-z0-9._-]", "_",
                      f"PHR_{v.datetime:%Y%m%d}_{activation_id[:8]}_{v.id}{src.suffix}")
        shutil.copyfile(src, folder / name)
        names.append(name)
    return names


def _launch(sel: Selection, request: ActivationRequest, user: User, settings: Settings,
            store: JobStore, activation_id: str, providers: ProviderFactory,
            enqueue: bool) -> list[dict[str, Any]]:
    """Submit the jobs of one selection on ``rapid``; returns their entries."""
    scenes = {"pre": [scene_summary(s) for s in sel.pre],
              "post": [scene_summary(s) for s in sel.post]}
    entries: list[dict[str, Any]] = []

    def run(role: str, process: str, inputs: dict[str, Any], product: str,
            scn: dict[str, Any]) -> None:
        entry: dict[str, Any] = {"role": role, "sensor": sel.sensor, "process": process,
                                 "product": product, "scenes": scn,
                                 "parameters": {k: v for k, v in inputs.items()
                                                if k not in ("images", "slcs")},
                                 "inputs": inputs, "job_id": None}
        try:
            job = submit(process, inputs, user, store=store, queue="rapid", enqueue=enqueue)
        except SubmitError as exc:
            entry.update(state="refused", status="failed", message=exc.message)
        else:
            entry.update(state="submitted", job_id=job.id, status=job.status,
                         message=job.message)
        entries.append(entry)

    if sel.sensor == "s2":
        try:
            images = _s2_images(sel, request, user, settings, activation_id, providers)
        except Exception as exc:  # noqa: BLE001 - recorded in the bulletin, others go on
            entries.append({"role": "opt", "sensor": "s2", "process": "gdm-opt",
                            "product": "displacement", "scenes": scenes, "job_id": None,
                            "state": "failed", "status": "failed",
                            "message": f"cannot fetch the selected scenes: {exc}"})
            return entries
        params = {"preset": request.defaults.opt_preset, **request.opt_params}
        run("opt", "gdm-opt", {"images": images, **params}, "displacement", scenes)
    elif sel.sensor == "s1":
        if request.slcs:
            run("sar", "gdm-sar", {"slcs": list(request.slcs),
                                   **{**SAR_CO_EVENT, **request.sar_params}},
                "interferogram", scenes)
        else:
            pre, post = sel.pre[0].datetime, sel.post[-1].datetime
            by_area = {"aoi": request.aoi, "start": pre.date().isoformat(),
                       "end": post.date().isoformat(), "product": "SLC",
                       "relative_orbit": sel.geometry["track"],
                       "flight_direction": sel.geometry["direction"]}
            run("sar", "gdm-sar", {"scenes": by_area, **{**SAR_CO_EVENT, **request.sar_params}},
                "interferogram", scenes)
    else:
        for role, views in (("dsm-pre", sel.pre), ("dsm-post", sel.post)):
            side = role.split("-")[1]
            try:
                images = _pleiades_images(views, user, settings, activation_id)
            except InputError as exc:
                entries.append({"role": role, "sensor": "pleiades", "process": "dsm-opt",
                                "product": "dsm difference", "job_id": None,
                                "scenes": {side: scenes[side]}, "state": "failed",
                                "status": "failed", "message": str(exc)})
                continue
            run(role, "dsm-opt", {"images": images, **request.dsm_params}, "dsm difference",
                {side: scenes[side]})
    return entries


def _check_slcs(request: ActivationRequest, selections: Sequence[Selection]) -> None:
    """Coregistered SLCs given for the co-event job must hold the selected S1 dates."""
    if not request.slcs:
        return
    sel = next((s for s in selections if s.sensor == "s1"), None)
    if sel is None:
        raise ActivationError(400, "slcs were given but no Sentinel-1 pair was selected")
    names = [ref.rstrip("/").rsplit("/", 1)[-1] for ref in request.slcs]
    have = {date_from_name(n) for n in names}
    want = [s.datetime.date() for s in sel.pre + sel.post]
    missing = [d.isoformat() for d in want if d not in have]
    if missing:
        raise ActivationError(400, f"slcs: no file for the selected Sentinel-1 date(s) "
                              f"{', '.join(missing)} (YYYYMMDD in the file names: "
                              f"{', '.join(names)})")


def activate(raw: dict[str, Any] | ActivationRequest, user: User | None, *, store: JobStore,
             settings: Settings, providers: ProviderFactory = default_provider,
             enqueue: bool = True) -> Activation:
    """Create an activation: check the caller, select scenes, launch the rapid jobs.

    Returns
    -------
    Activation
        Recorded with its selections, jobs and log; the bulletin is written.

    Raises
    ------
    ActivationError
        401/403 for a caller who is not an operator, 400 for a bad request or override,
        422 when no sensor has a usable pair (the message names each sensor and why;
        the refused activation is still recorded and logged, its id in the error).

    """
    user = check_operator(user)
    request = parse_request(raw)
    astore = ActivationStore(store)
    selections = search_and_select(request, providers=providers)
    _check_slcs(request, [s for s in selections if s.ok])
    activation = astore.create(user.name, request, "selecting")
    aid = activation.id
    for sel in selections:
        astore.log(aid, "system", "select" if sel.ok else "unusable", sel.reason)
    usable = [s for s in selections if s.ok]
    if not usable:
        message = "no usable scene: " + " | ".join(s.reason for s in selections)
        astore.update(aid, status="no usable scene",
                      selections=[s.to_json() for s in selections])
        astore.log(aid, user.name, "refused", message)
        refresh_bulletin(aid, store=store, settings=settings)
        raise ActivationError(422, message, aid)
    jobs: list[dict[str, Any]] = []
    for sel in usable:
        got = _launch(sel, request, user, settings, store, aid, providers, enqueue)
        jobs += got
        astore.update(aid, jobs=jobs, status="running")  # the first job is already queued
        for e in got:
            what = f"{e['process']} ({e['role']})"
            if e.get("job_id"):
                astore.log(aid, user.name, "submit", f"{what} job {e['job_id']} on rapid")
            else:
                astore.log(aid, "system", "not run", f"{what}: {e['state']}: {e['message']}")
    status = "running" if any(j.get("job_id") for j in jobs) else "complete"
    astore.update(aid, selections=[s.to_json() for s in selections], jobs=jobs,
                  status=status)
    return refresh_bulletin(aid, store=store, settings=settings, force=True)


# ----------------------------------------------------------------- bulletin
def refresh_bulletin(activation_id: str, *, store: JobStore, settings: Settings,
                     force: bool = False) -> Activation:
    """Bring an activation up to date with its jobs and rewrite its bulletin if needed.

    Called when a job of the activation ends (the worker's ``task_postrun`` hook and the
    ``gdm.activation.refresh`` task, :mod:`workflows.activation.tasks`) and when the
    API, web page or CLI shows it. Each job's new final status is logged once; the
    bulletin (HTML, PDF, maps) is rewritten only when something changed, or with
    ``force``, or when its files are missing.

    Raises
    ------
    ActivationError
        404 for an unknown activation.

    """
    astore = ActivationStore(store)
    folder = bulletin_dir(activation_id, settings)
    with file_lock(folder / ".lock"):
        act = astore.get(activation_id)
        if act is None:
            raise ActivationError(404, f"no activation {activation_id!r}")
        changed = False
        jobs = [dict(j) for j in act.jobs]
        for entry in jobs:
            if not entry.get("job_id"):
                continue
            job = store.get(entry["job_id"])
            if job is None:
                continue
            if job.status != entry.get("status") or job.progress != entry.get("progress"):
                if job.status != entry.get("status") and job.status in FINAL_STATUSES:
                    astore.log(activation_id, "system", f"job {job.status}",
                               f"{entry['process']} ({entry['role']}) job {job.id}: "
                               f"{job.message}")
                    changed = True
                elif job.status != entry.get("status"):
                    changed = True
                entry.update(status=job.status, progress=job.progress, message=job.message,
                             started=job.started.isoformat() if job.started else None,
                             finished=job.finished.isoformat() if job.finished else None)
        launched = [j for j in jobs if j.get("job_id")]
        status = act.status
        if act.status in ("running", "selecting") and launched and \
                all(j.get("status") in FINAL_STATUSES for j in launched):
            ok = all(j["status"] == "successful" for j in launched)
            status = "complete" if ok else "complete with failures"
            changed = True
        html = folder / "bulletin.html"
        if changed or force or not html.is_file() or not (folder / "bulletin.pdf").is_file():
            astore.update(activation_id, jobs=jobs, status=status)
            act = astore.get(activation_id)
            assert act is not None
            maps = write_bulletin(act, folder, store=store, settings=settings)
            astore.update(activation_id, bulletin_at=utc_now())
            astore.log(activation_id, "system", "bulletin",
                       f"bulletin updated ({status}; maps: {', '.join(maps) or 'none yet'})")
            # the log entry itself belongs in the page: write once more, cheaply
            act = astore.get(activation_id)
            assert act is not None
            write_bulletin(act, folder, store=store, settings=settings, maps_only_cached=True)
        act = astore.get(activation_id)
        assert act is not None
        return act
