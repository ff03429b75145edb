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

import csv
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
from rasterio.warp import transform as warp_transform
from rasterio.windows import Window

from gdmio.messages import public_message
from gdmio.quicklook import display_limits
from workflows.jobstore import Job, User
from workflows.processes import PROCESSES
from workflows.products import layer_for
from workflows.submit import SubmitError, job_file
from wps import web
from wps.context import current_user, state

__all__ = ["bp", "form_processes", "job_summary", "timeseries_outputs", "pixel_series"]

bp = Blueprint("webform", __name__, template_folder="templates", static_folder="static",
               static_url_path="/assets")

_MAP_MAX_PX = 800
_TIMESERIES = re.compile(r"^timeseries")


# --------------------------------------------------------------------------- helpers
#: Processes the APIs offer but the web form does not (``echo`` tests the service).
FORM_HIDDEN = frozenset({"echo"})
#: The form's process picker order (others follow, by identifier); the first is shown.
FORM_ORDER = ("gdm-opt", "gdm-sar", "dsm-opt", "flatsim-campaign")


def _form_rank(spec: Any) -> tuple[int, str]:
    return (FORM_ORDER.index(spec.id) if spec.id in FORM_ORDER else len(FORM_ORDER), spec.id)


def form_processes() -> list[dict[str, Any]]:
    """What the form needs of every process: id, title, description, input schemas.

    ``inputs`` is a list of ``{"name", "schema"}`` in the model's field order (JSON
    objects would be re-sorted by name on the way to the page). The processes of
    :data:`FORM_HIDDEN` are left out (WPS and the OGC API still offer them).
    """
    return [{"id": spec.id, "title": spec.title, "description": spec.description,
             "version": spec.version, "queue": spec.default_queue,
             "inputs": [{"name": name, "schema": schema}
                        for name, schema in spec.input_schemas().items()],
             "outputs": {name: {"title": o.title, "kind": o.kind}
                         for name, o in spec.outputs.items()}}
            for spec in sorted(PROCESSES.values(), key=_form_rank)
            if spec.id not in FORM_HIDDEN]


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
        "progress": job.progress, "message": public_message(job.message), "queue": job.queue,
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
    """What every page needs: the CSRF token, the maps' base layer (XYZ URL, attribution)."""
    from wps.guard import csrf_token

    st = state().settings
    return {"csrf_token": csrf_token,
            "basemap": {"url": st.basemap_url, "attribution": st.basemap_attribution}}


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
    who = _user_info(web.caller())
    try:
        job = web.visible(job_id)
    except SubmitError as exc:
        return render_template("webform/job.html", job=None, job_id=job_id,
                               error=exc.message, who=who), exc.status
    return render_template("webform/job.html", job=job_summary(job), job_id=job.id,
                           error=None, who=who)


@bp.get("/api/jobs/<job_id>")
def job_json(job_id: str) -> Response:
    """The job as the pages show it (see :func:`job_summary`)."""
    return jsonify(job_summary(web.visible(job_id)))


def _position(ds: rasterio.io.DatasetReader) -> tuple[float, float, str]:
    """The query's position as (x, y, unit) for :func:`pixel_series` on ``ds``.

    ``lon``/``lat`` (WGS84) are converted to the raster's pixel; otherwise ``x``/``y``
    with ``unit`` (fraction or pixel).
    """
    args = request.args
    try:
        if "lon" in args or "lat" in args:
            lon, lat = float(args["lon"]), float(args["lat"])
            if not (math.isfinite(lon) and math.isfinite(lat)):
                raise ValueError
            if ds.crs is None:
                raise SubmitError(400, "this product has no map projection: use x and y")
            xs, ys = warp_transform("EPSG:4326", ds.crs, [lon], [lat])
            row, col = ds.index(xs[0], ys[0])
            if not (0 <= row < ds.height and 0 <= col < ds.width):
                raise SubmitError(400, f"lon={lon}, lat={lat} is outside the product")
            return float(col), float(row), "pixel"
        return float(args["x"]), float(args["y"]), args.get("unit", "fraction")
    except KeyError as exc:
        raise SubmitError(400, f"missing query parameter {exc.args[0]!r}") from None
    except ValueError:
        raise SubmitError(400, "x and y (or lon and lat) must be numbers") from None


def velocity_fit(dates: list[str | None], values: list[float | None]) -> dict[str, Any]:
    """Least-squares line through a pixel's series: velocity and its 1-sigma per year.

    The sigma is the standard error of the slope from the scatter about the line (None
    with fewer than 3 dated values).
    """
    pts = [(dt.date.fromisoformat(d), v) for d, v in zip(dates, values, strict=True)
           if d is not None and v is not None]
    if len(pts) < 2:
        return {"velocity": None, "sigma": None, "intercept": None, "t0": None}
    t0 = pts[0][0]
    t = np.array([(d - t0).days / 365.25 for d, _ in pts])
    v = np.array([val for _, val in pts])
    tc = t - t.mean()
    sxx = float(tc @ tc)
    if sxx == 0:
        return {"velocity": None, "sigma": None, "intercept": None, "t0": None}
    slope = float(tc @ (v - v.mean()) / sxx)
    intercept = float(v.mean() - slope * t.mean())
    sigma = None
    if len(pts) >= 3:
        rss = float(np.sum((v - intercept - slope * t) ** 2))
        sigma = math.sqrt(rss / (len(pts) - 2) / sxx)
    return {"velocity": slope, "sigma": sigma, "intercept": intercept,
            "t0": t0.isoformat()}


def _value_at(job: Job, name: str, x: float, y: float, crs: str | None) -> float | None:
    """The value of a single-band output at map coordinates (None if absent or outside)."""
    relpath = job.outputs.get(name)
    if not isinstance(relpath, str) or not relpath.lower().endswith((".tif", ".tiff")):
        return None
    try:
        path = job_file(job, relpath, state().settings)
        with rasterio.open(path) as ds:
            if (ds.crs.to_string() if ds.crs else None) != crs:
                return None
            row, col = ds.index(x, y)
            if not (0 <= row < ds.height and 0 <= col < ds.width):
                return None
            v = ds.read(1, window=Window(col, row, 1, 1), masked=True)[0, 0]
    except (SubmitError, RasterioError):
        return None
    return None if np.ma.is_masked(v) or not math.isfinite(float(v)) else float(v)


def _pixel_body(job_id: str) -> dict[str, Any]:
    job = web.visible(job_id)
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
        path = _output_path(job, name)
        try:
            with rasterio.open(path) as ds:
                x, y, unit = _position(ds)
        except RasterioError as exc:
            raise SubmitError(500, f"cannot read {path.name}: {exc}") from None
        got = pixel_series(path, x, y, unit)
        first = first or got
        title = spec.outputs[name].title if spec and name in spec.outputs else name
        meta = layer_for(job.process, job.outputs[name])
        scale = meta.display_scale if meta else 1.0
        units = got["units"] or "m"
        shown = meta.shown_units if meta else units
        fit = velocity_fit(got["dates"], got["values"])
        vel_name = name.replace("timeseries", "velocity", 1)
        std_name = name.replace("timeseries", "velocity_std", 1)
        product = {"velocity": _value_at(job, vel_name, got["x"], got["y"], got["crs"]),
                   "velocity_std": _value_at(job, std_name, got["x"], got["y"], got["crs"])}
        series.append({"name": name, "title": title, "dates": got["dates"],
                       "values": got["values"], "units": units, "scale": scale,
                       "display_units": shown,
                       "fit": fit, "product": {k: v for k, v in product.items()
                                               if v is not None}})
    assert first is not None
    lon = lat = None
    if first["crs"]:
        lons, lats = warp_transform(first["crs"], "EPSG:4326", [first["x"]], [first["y"]])
        lon, lat = lons[0], lats[0]
    return {"job": job.id, **{k: first[k] for k in ("col", "row", "width", "height", "x",
                                                   "y", "crs", "dates")},
            "lon": lon, "lat": lat, "series": series,
            "csv": url_for("webform.job_pixel_csv", job_id=job.id, **request.args)}


@bp.get("/api/jobs/<job_id>/pixel")
def job_pixel(job_id: str) -> Response:
    """Time-series values at one pixel: ``lon``, ``lat`` (WGS84), or ``x``, ``y``.

    ``x``/``y`` are fractions of the width and height, or pixels with ``unit=pixel``.
    Without ``output``, every time-series output of the job is read (East and North for
    GDM-OPT). Answers ``{"job", "col", "row", "width", "height", "x", "y", "crs", "lon",
    "lat", "dates", "csv", "series": [{"name", "title", "dates", "values", "units",
    "scale", "display_units", "fit": {"velocity", "sigma", "intercept", "t0"},
    "product": {"velocity", "velocity_std"}}]}``: values and fits in the product's
    units (``units``, per year for velocities); ``scale`` converts them to
    ``display_units`` (InSAR: mm).
    """
    return jsonify(_pixel_body(job_id))


@bp.get("/api/jobs/<job_id>/pixel.csv")
def job_pixel_csv(job_id: str) -> Response:
    """The same pixel series as CSV: one row per date, one column per series."""
    body = _pixel_body(job_id)
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    pos = (f"lon {body['lon']:.6f} lat {body['lat']:.6f}; " if body["lon"] is not None
           else "") + f"column {body['col']} row {body['row']} ({body['crs'] or 'no CRS'})"
    out.write(f"# job {body['job']}; pixel {pos}\n")
    for s in body["series"]:
        f = s["fit"]
        if f["velocity"] is not None:
            sig = "" if f["sigma"] is None else f" +- {f['sigma']:.6g}"
            out.write(f"# {s['name']}: fitted velocity {f['velocity']:.6g}{sig} "
                      f"{s['units']}/yr\n")
        for k, v in s["product"].items():
            out.write(f"# {s['name']}: product {k} {v:.6g} {s['units']}/yr\n")
    writer.writerow(["date"] + [f"{s['name']} ({s['units']})" for s in body["series"]])
    for k, d in enumerate(body["dates"]):
        writer.writerow([d or f"band {k + 1}"] + [
            "" if s["values"][k] is None else f"{s['values'][k]:.8g}" for s in body["series"]])
    resp = Response(out.getvalue(), mimetype="text/csv")
    name = f"{body['job']}_pixel_{body['col']}_{body['row']}.csv"
    resp.headers["Content-Disposition"] = f'attachment; filename="{name}"'
    return resp


@bp.get("/api/jobs/<job_id>/map.png")
def job_map(job_id: str) -> Response:
    """A raster output's band as a plain PNG (default: last band of the first time series)."""
    job = web.visible(job_id)
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

