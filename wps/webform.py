"""The web form: pick a process, fill in a form generated from its inputs, follow the jobs.

Pages (HTML shells; the browser does the rest with ``fetch`` against the same app, so
the cookie ``gdm_token`` authenticates every call):

* ``GET /``: process picker, a form generated from the process's JSON schema
  (:meth:`workflows.processes.ProcessSpec.input_schemas`), file uploads through
  ``POST /ogcapi/uploads``, submission through ``POST /ogcapi/processes/{id}/execution``
  (``Prefer: respond-async``) and a live job list polling ``GET /ogcapi/jobs``;
* ``GET /jobs/<id>``: one job: status, downloads, quicklooks and, for time-series
  products, a map to click for the displacement history of a pixel.

JSON helpers the pages use (ownership-checked like every job read):

* ``GET /api/jobs/<id>``: the job with its outputs as download links and quicklooks;
* ``GET /api/jobs/<id>/pixel?x=&y=[&unit=fraction|pixel][&output=]``: the time-series
  values at one pixel, with their dates;
* ``GET /api/jobs/<id>/map.png?output=&band=``: a plain colour-mapped rendering of one
  band of a raster product (no margins, so a click maps straight to a pixel).
"""

from __future__ import annotations

import datetime as dt
import io
import math
import re
import urllib.parse
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
from flask import Blueprint, Response, jsonify, render_template, request, url_for
from matplotlib import colormaps
from PIL import Image
from rasterio.enums import Resampling
from rasterio.errors import RasterioError
from rasterio.windows import Window

from gdmio.quicklook import display_limits
from workflows.jobstore import Job, User
from workflows.processes import PROCESSES
from workflows.submit import SubmitError, job_file, visible_job
from wps import web
from wps.context import current_user, state

__all__ = ["bp", "form_processes", "job_summary", "timeseries_outputs", "pixel_series"]

bp = Blueprint("webform", __name__, template_folder="templates", static_folder="static",
               static_url_path="/assets")

_MAP_MAX_PX = 800
_TIMESERIES = re.compile(r"^timeseries")


# --------------------------------------------------------------------------- helpers
def form_processes() -> list[dict[str, Any]]:
    """What the form needs of every process: id, title, description, input schemas.

    ``inputs`` is a list of ``{"name", "schema"}`` in the model's field order (JSON
    objects would be re-sorted by name on the way to the page).
    """
    return [{"id": spec.id, "title": spec.title, "description": spec.description,
             "version": spec.version, "queue": spec.default_queue,
             "inputs": [{"name": name, "schema": schema}
                        for name, schema in spec.input_schemas().items()],
             "outputs": {name: {"title": o.title, "kind": o.kind}
                         for name, o in spec.outputs.items()}}
            for spec in PROCESSES.values()]


def _download_url(job: Job, relpath: str) -> str:
    return f"{request.script_root}/ogcapi/jobs/{job.id}/download/{urllib.parse.quote(relpath)}"


def _is_file_output(job: Job, name: str, value: Any) -> bool:
    """Whether an output is a file of the job (by its spec, else by looking for it)."""
    if not isinstance(value, str):
        return False
    spec = PROCESSES.get(job.process)
    if spec is not None and name in spec.outputs:
        return spec.outputs[name].kind == "file"
    return web.is_job_file(job, value)


def timeseries_outputs(job: Job) -> list[str]:
    """Names of a job's time-series raster outputs (``timeseries*`` GeoTIFFs)."""
    return [name for name, value in job.outputs.items()
            if _TIMESERIES.match(name) and isinstance(value, str)
            and value.lower().endswith((".tif", ".tiff"))]


def job_summary(job: Job) -> dict[str, Any]:
    """A job as the pages show it: status, file outputs as links, literals, quicklooks."""
    spec = PROCESSES.get(job.process)
    files, literals = [], {}
    for name, value in job.outputs.items():
        if name == "quicklooks":
            continue
        title = spec.outputs[name].title if spec and name in spec.outputs else name
        if _is_file_output(job, name, value):
            files.append({"name": name, "title": title, "path": value,
                          "href": _download_url(job, value)})
        else:
            literals[name] = value
    looks = [{"name": Path(q).stem, "path": q, "href": _download_url(job, q)}
             for q in job.outputs.get("quicklooks", []) if isinstance(q, str)]
    ts = timeseries_outputs(job)

    def iso(t: dt.datetime | None) -> str | None:
        return None if t is None else t.isoformat()

    return {
        "id": job.id, "process": job.process, "status": job.status,
        "progress": job.progress, "message": job.message, "queue": job.queue,
        "owner": job.owner, "public": job.public, "created": iso(job.created),
        "started": iso(job.started), "finished": iso(job.finished),
        "inputs": job.inputs, "files": files, "literals": literals, "quicklooks": looks,
        "timeseries": [{"name": n, "title": spec.outputs[n].title
                        if spec and n in spec.outputs else n,
                        "map": url_for("webform.job_map", job_id=job.id, output=n)}
                       for n in ts],
        "page": url_for("webform.job_page", job_id=job.id),
    }


def _band_date(ds: rasterio.io.DatasetReader, band: int) -> str | None:
    """The ISO date of a band: its description, else a DATE/ACQUISITION_DATE tag."""
    candidates = [ds.descriptions[band - 1] or ""]
    tags = ds.tags(band)
    candidates += [tags.get(k, "") for k in ("DATE", "ACQUISITION_DATE")]
    for text in candidates:
        try:
            return dt.date.fromisoformat(text.strip()[:10]).isoformat()
        except ValueError:
            continue
    return None


def pixel_series(path: Path, x: float, y: float, unit: str = "fraction") -> dict[str, Any]:
    """Every band's value at one pixel of a raster, with the band dates.

    Parameters
    ----------
    path
        A (multi-band) raster: one band per date.
    x, y
        Column and row: fractions of the width and height in [0, 1] (``unit="fraction"``,
        1 meaning the last pixel) or 0-based pixel indices (``unit="pixel"``).
    unit
        ``"fraction"`` or ``"pixel"``.

    Returns
    -------
    dict
        ``col``, ``row``, ``width``, ``height``, ``dates`` (ISO, None where a band has
        none), ``values`` (None at nodata), ``x``/``y`` coordinates of the pixel centre
        and ``crs``.

    Raises
    ------
    SubmitError
        400 when the position is outside the raster or the unit is unknown.

    """
    if not (math.isfinite(x) and math.isfinite(y)):
        raise SubmitError(400, "x and y must be finite numbers")
    try:
        with rasterio.open(path) as ds:
            if unit == "fraction":
                if not (0.0 <= x <= 1.0 and 0.0 <= y <= 1.0):
                    raise SubmitError(400, f"x={x} and y={y} must be fractions in [0, 1]")
                col = min(int(x * ds.width), ds.width - 1)
                row = min(int(y * ds.height), ds.height - 1)
            elif unit == "pixel":
                col, row = int(x), int(y)
                if x != col or y != row or not (0 <= col < ds.width and 0 <= row < ds.height):
                    raise SubmitError(400, f"pixel ({x}, {y}) is outside the "
                                      f"{ds.width}x{ds.height} raster (0-based integers)")
            else:
                raise SubmitError(400, f"unknown unit {unit!r}: use fraction or pixel")
            data = ds.read(window=Window(col, row, 1, 1), masked=True)[:, 0, 0]
            values = [None if bool(np.ma.getmaskarray(data)[k]) or not np.isfinite(data[k])
                      else float(data[k]) for k in range(ds.count)]
            dates = [_band_date(ds, b) for b in range(1, ds.count + 1)]
            cx, cy = ds.xy(row, col)
            crs = ds.crs.to_string() if ds.crs else None
            units = [u for u in (ds.units or ()) if u]
            return {"col": col, "row": row, "width": ds.width, "height": ds.height,
                    "dates": dates, "values": values, "x": cx, "y": cy, "crs": crs,
                    "units": units[0] if units else None}
    except RasterioError as exc:
        raise SubmitError(500, f"cannot read {path.name}: {exc}") from None


def render_map(path: Path, band: int, max_px: int = _MAP_MAX_PX) -> bytes:
    """One band of a raster as a plain PNG: symmetric red-blue colours, grey at nodata."""
    try:
        with rasterio.open(path) as ds:
            if not 1 <= band <= ds.count:
                raise SubmitError(400, f"band {band} not in {path.name} ({ds.count} bands)")
            scale = max(1.0, max(ds.width, ds.height) / max_px)
            shape = (max(1, round(ds.height / scale)), max(1, round(ds.width / scale)))
            data = ds.read(band, out_shape=shape, masked=True,
                           resampling=Resampling.nearest)
    except RasterioError as exc:
        raise SubmitError(500, f"cannot read {path.name}: {exc}") from None
    arr = np.ma.filled(data.astype(np.float32), np.nan)
    lo, hi = display_limits(arr, symmetric=True)
    cmap = colormaps["RdBu_r"].with_extremes(bad="#c8c8c8")
    rgba = cmap(np.ma.masked_invalid((arr - lo) / (hi - lo)), bytes=True)
    buf = io.BytesIO()
    Image.fromarray(rgba, mode="RGBA").save(buf, format="PNG")
    return buf.getvalue()


def _reader(user: User | None) -> User:
    """The caller, who must be known (401 otherwise).

    A public job is public to the service's users, as on ``/ogcapi/jobs/<id>``, not to
    anyone without a token.
    """
    if user is None:
        raise SubmitError(401, web.TOKEN_REQUIRED)
    return user


def _job_or_error(job_id: str) -> Job:
    return visible_job(job_id, _reader(current_user()), store=state().store)


def _output_path(job: Job, name: str) -> Path:
    relpath = job.outputs.get(name)
    if not isinstance(relpath, str):
        raise SubmitError(404, f"job {job.id} has no output {name!r}")
    return job_file(job, relpath, state().settings)


def _user_info(user: User | None) -> dict[str, Any]:
    accounts = state().store.count_users() > 0
    return {"accounts": accounts, "user": None if user is None else user.name,
            "role": None if user is None else user.role}


# ----------------------------------------------------------------------------- pages
@bp.app_context_processor
def _template_helpers() -> dict[str, Any]:
    from wps.guard import csrf_token

    return {"csrf_token": csrf_token}


@bp.errorhandler(SubmitError)
def _submit_error(exc: SubmitError) -> tuple[Response, int]:
    return jsonify({"error": exc.message, "status": exc.status}), exc.status


@bp.get("/")
def index() -> str:
    """The form and the job list."""
    from wps.ogcapi import queue_problems

    user = current_user()
    return render_template("webform/index.html", processes=form_processes(),
                           who=_user_info(user), queue_problems=queue_problems())


@bp.get("/jobs/<job_id>")
def job_page(job_id: str) -> tuple[str, int] | str:
    """One job: status, downloads, quicklooks, click-a-pixel time series."""
    user = current_user()
    who = _user_info(user)
    try:
        job = visible_job(job_id, _reader(user), store=state().store)
    except SubmitError as exc:
        return render_template("webform/job.html", job=None, job_id=job_id,
                               error=exc.message, who=who), exc.status
    return render_template("webform/job.html", job=job_summary(job), job_id=job.id,
                           error=None, who=who)


@bp.get("/api/jobs/<job_id>")
def job_json(job_id: str) -> Response:
    """The job as the pages show it (see :func:`job_summary`)."""
    return jsonify(job_summary(_job_or_error(job_id)))


@bp.get("/api/jobs/<job_id>/pixel")
def job_pixel(job_id: str) -> Response:
    """Time-series values at one pixel: ``x``, ``y`` (fractions, or pixels with unit=pixel).

    Without ``output``, every time-series output of the job is read (East and North for
    GDM-OPT). Answers ``{"job", "col", "row", "width", "height", "x", "y", "crs",
    "dates", "series": [{"name", "title", "dates", "values", "units"}]}``.
    """
    job = _job_or_error(job_id)
    try:
        x = float(request.args["x"])
        y = float(request.args["y"])
    except KeyError as exc:
        raise SubmitError(400, f"missing query parameter {exc.args[0]!r}") from None
    except ValueError:
        raise SubmitError(400, "x and y must be numbers") from None
    unit = request.args.get("unit", "fraction")
    names = timeseries_outputs(job)
    wanted = request.args.get("output")
    if wanted is not None:
        if wanted not in names:
            raise SubmitError(404, f"job {job.id} has no time-series output {wanted!r}"
                              + (f"; it has {', '.join(names)}" if names else ""))
        names = [wanted]
    if not names:
        raise SubmitError(404, f"job {job.id} has no time-series output"
                          + ("" if job.done else f" (yet: it is {job.status})"))
    spec = PROCESSES.get(job.process)
    series, first = [], None
    for name in names:
        got = pixel_series(_output_path(job, name), x, y, unit)
        first = first or got
        title = spec.outputs[name].title if spec and name in spec.outputs else name
        series.append({"name": name, "title": title, "dates": got["dates"],
                       "values": got["values"], "units": got["units"] or "m"})
    assert first is not None
    body = {"job": job.id, **{k: first[k] for k in ("col", "row", "width", "height", "x",
                                                   "y", "crs", "dates")},
            "series": series}
    return jsonify(body)


@bp.get("/api/jobs/<job_id>/map.png")
def job_map(job_id: str) -> Response:
    """A raster output's band as a plain PNG (default: last band of the first time series)."""
    job = _job_or_error(job_id)
    names = timeseries_outputs(job)
    name = request.args.get("output") or (names[0] if names else None)
    if name is None:
        raise SubmitError(404, f"job {job.id} has no time-series output")
    path = _output_path(job, name)
    if path.suffix.lower() not in (".tif", ".tiff"):
        raise SubmitError(400, f"output {name!r} is not a raster")
    band_arg = request.args.get("band")
    try:
        with rasterio.open(path) as ds:
            count = ds.count
        band = count if band_arg is None else int(band_arg)
    except ValueError:
        raise SubmitError(400, f"band must be an integer, got {band_arg!r}") from None
    except RasterioError as exc:
        raise SubmitError(500, f"cannot read {path.name}: {exc}") from None
    resp = Response(render_map(path, band), mimetype="image/png")
    resp.headers["Cache-Control"] = "private, max-age=300"
    return resp


@bp.get("/favicon.ico")
def favicon() -> Response:
    """No favicon (avoids 404 noise in browser consoles)."""
    return Response(status=204)

