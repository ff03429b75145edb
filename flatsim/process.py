"""The ``flatsim-campaign`` process: a FLATSIM campaign as one job of the service.

Its inputs model is generated from :class:`flatsim.spec.CampaignSpec` (less ``out``:
products go into the job's work folder; a ``folder`` frame names a folder of the
caller's uploads, never a server path), plus ``execution``:

- ``inline`` (default): the job's own process runs the campaign's steps one after the
  other (the job already runs on the ``batch`` queue; nothing waits on other workers,
  so one embedded worker is enough);
- ``distributed``: the job dispatches the campaign's chords on the ``batch`` queue and
  follows them; needs batch workers besides the one running the job.

Either way the campaign is recorded in the campaign state (``gdm campaign status`` and
``/campaigns/<id>`` follow it), finished steps of an earlier attempt are skipped, and
the job reports progress and returns references to the catalogue, the report and each
frame's velocity, time series and metadata. Exported as :data:`PROCESS` (entry point
``flatsim-campaign``).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field

from flatsim import campaign_root, register
from flatsim.spec import CampaignSpec
from gdmcore import InputError
from gdmio.process import (
    Cancelled,
    JobContext,
    OutputSpec,
    ProcessSpec,
    ServerOnly,
    server_only,
)

__all__ = ["PROCESS", "FlatsimJobInputs", "POLL_S"]


POLL_S = 2.0
"""Seconds between two looks at a distributed campaign's progress."""

class FlatsimJobInputs(CampaignSpec):
    """Inputs of a flatsim-campaign job: :class:`CampaignSpec`, every validator kept.

    Less ``out`` (products go into the job's folder), plus ``execution``.
    """

    out: ServerOnly = server_only()  # type: ignore[assignment]
    execution: Literal["inline", "distributed"] = Field(
        "inline", description="'inline': this job runs every step itself; 'distributed': "
        "the steps fan out to the batch queue's workers (needs workers besides this "
        "job's).")


def _uploaded_folder(value: Any, ctx: JobContext) -> str:
    """A folder of the caller's uploads, by name (never a server path)."""
    name = str(value)
    parts = Path(name).parts
    if not name or Path(name).is_absolute() or any(p in ("..", ".") for p in parts):
        raise InputError(f"refused stack folder {name!r}: give the name of a folder of "
                         "your uploads")
    folder = ctx.uploads_dir / name
    if not folder.is_dir():
        raise InputError(f"no uploaded folder named {name!r}")
    return str(folder)


def _spec(inputs: BaseModel, ctx: JobContext) -> CampaignSpec:
    raw = inputs.model_dump(exclude={"execution"})
    raw["out"] = ctx.workdir / "products"
    for frame in raw.get("frames") or []:
        if frame.get("source") == "folder":
            frame["path"] = _uploaded_folder(frame["path"], ctx)
    if raw.get("aoi") and raw["aoi"].get("source") == "folder":
        raw["aoi"]["root"] = _uploaded_folder(raw["aoi"]["root"], ctx)
    return CampaignSpec.model_validate(raw)


def _outputs(state: Any, cid: str, root: Path, ctx: JobContext) -> dict[str, Any]:
    from flatsim.monitor import campaign_status

    doc = campaign_status(state, cid)

    def rel(p: Path) -> str:
        return str(p.relative_to(ctx.workdir))

    frames = {}
    for fr in doc["frames"]:
        d = root / fr["id"]
        if (d / "metadata.json").is_file():
            frames[fr["id"]] = {"velocity": rel(d / "ts" / "velocity.tif"),
                                "timeseries": rel(d / "ts" / "timeseries.tif"),
                                "metadata": rel(d / "metadata.json"),
                                "item": rel(d / "item.json")}
    return {"campaign_id": cid, "catalog": rel(root / "catalog.json"),
            "report": rel(root / "report" / "index.html"), "frames": frames,
            "summary": doc["totals"]}


def execute(inputs: BaseModel, ctx: JobContext) -> dict[str, Any]:
    """Run the campaign inline or on the batch queue and follow it to its end."""
    from flatsim.state import get_state
    from workflows.settings import get_settings

    settings = get_settings()
    settings.ensure_dirs()
    spec = _spec(inputs, ctx)
    state = get_state(settings.database_url)
    execution = getattr(inputs, "execution", "inline")
    if execution == "inline":
        from flatsim.steps import run_campaign_local

        cid, root, _ = register(state, spec, settings.products_dir)
        state.link_job(cid, ctx.job_id)  # the job's owner owns the campaign
        state.set_campaign_status(cid, "running")
        state.reset_running(cid)
        res = run_campaign_local(state, spec, cid, root, progress=ctx.progress)
        if res["status"] == "stopped":
            raise Cancelled(f"campaign {cid} was stopped")
        return _outputs(state, cid, root, ctx)
    from flatsim.monitor import campaign_status
    from workflows.campaign_tasks import start

    cid, _created, _sent = start(spec, settings)
    state.link_job(cid, ctx.job_id)
    root = campaign_root(spec, cid, settings.products_dir)
    while True:
        row = state.campaign(cid) or {"status": "stopped"}
        doc = campaign_status(state, cid)
        ctx.progress(min(doc["progress"], 0.99),
                     f"{doc['totals']['frames_done']}/{doc['totals']['frames']} frames, "
                     f"{doc['totals']['pairs_done']} pairs")
        if row["status"].startswith("finished"):
            break
        if row["status"] == "stopped":
            raise Cancelled(f"campaign {cid} was stopped")
        time.sleep(POLL_S)
    ctx.progress(1.0, "campaign finished")
    return _outputs(state, cid, root, ctx)


PROCESS = ProcessSpec(
    id="flatsim-campaign", title="FLATSIM: systematic InSAR campaign over many frames",
    version="1.0.0",
    description="Systematic small-baseline InSAR over a set of frames (listed, or an area "
    "split into frames per track) and a date range: per frame, interferograms and "
    "unwrapping of every pair of the network, chunked NSBAS time-series inversion, "
    "LOS velocity and quality layers, metadata and a STAC catalogue; broken dates and "
    "failed pairs are left out and reported. Resumable: finished steps are skipped.",
    inputs_model=FlatsimJobInputs,
    outputs={
        "campaign_id": OutputSpec("Campaign identifier", "literal", "text/plain",
                                  {"type": "string"}),
        "catalog": OutputSpec("STAC catalogue of the frames", "file", "application/json"),
        "report": OutputSpec("Campaign report (HTML)", "file", "text/html"),
        "frames": OutputSpec("Per frame: velocity, time series, metadata, STAC item",
                             "literal", "application/json", {"type": "object"}),
        "summary": OutputSpec("Frames and pairs done and failed", "literal",
                              "application/json", {"type": "object"}),
    },
    execute=execute, default_queue="batch",
    keywords=("InSAR", "Sentinel-1", "FLATSIM", "campaign", "NSBAS"),
)
