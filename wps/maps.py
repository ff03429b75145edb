"""Job products on a web map: XYZ tiles rendered from the COGs by rio-tiler, legends, values.

Every raster output of a job that has a map projection is a map layer. Tiles are cut
from the Cloud-Optimized GeoTIFF by rio-tiler (Web Mercator, 256 px, nearest neighbour,
so one product pixel stays one colour), coloured with the layer's colour map between
its robust limits (:func:`gdmio.quicklook.display_limits`, in display units: InSAR in
mm and mm/yr), transparent where there is no data. The routes check the job like every
other job read (the owner, an admin, or anyone for a public job; others get 404):

* ``GET /api/jobs/<id>/layers``: the job's map layers (title, units, colour stops,
  limits, WGS84 bounds, dates of per-date layers, tile and value URL templates);
* ``GET /api/jobs/<id>/tiles/<output>/<z>/<x>/<y>.png[?band=]``: one tile;
* ``GET /api/jobs/<id>/value/<output>?lon=&lat=[&band=]``: the value under a point.
"""

from __future__ import annotations

import datetime as dt
import functools
import io
import math
import urllib.parse
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
from flask import Blueprint, Response, jsonify, request
from matplotlib import colormaps
from PIL import Image
from rasterio.enums import Resampling
from rasterio.errors import RasterioError
from rasterio.warp import transform_bounds
from rio_tiler.errors import PointOutsideBounds, TileOutsideBounds
from rio_tiler.io import Reader  # imported here, once: concurrent first imports race

from gdmio.quicklook import display_limits
from gdmio.writer import LayerMeta
from workflows.jobstore import Job
from workflows.products import layer_for
from workflows.submit import SubmitError, job_file
from wps import web
from wps.context import state

__all__ = ["bp", "job_layers", "layer_info", "render_tile", "point_value"]

bp = Blueprint("maps", __name__)

TILE = 256
_STOPS = 11  # colour stops sent to the page for the legend's gradient
_LIMIT_PX = 1024  # limits are computed on a read decimated to this long side


def _transparent() -> bytes:
    buf = io.BytesIO()
    Image.new("RGBA", (TILE, TILE), (0, 0, 0, 0)).save(buf, format="PNG")
    return buf.getvalue()


_EMPTY = _transparent()


def _meta(job: Job, relpath: str, path: Path) -> LayerMeta:
    """The table's record of a product file, else one made from the file's own tags."""
    meta = layer_for(job.process, relpath)
    if meta is not None:
        return meta
    with rasterio.open(path) as ds:
        units = ds.tags().get("UNITS", "")
        desc = ds.descriptions[0] or Path(relpath).stem
    return LayerMeta(Path(relpath).stem, units, desc)


def _band_dates(ds: Any) -> list[str | None]:
    out: list[str | None] = []
    for d in ds.descriptions:
        try:
            out.append(dt.date.fromisoformat((d or "")[:10]).isoformat())
        except ValueError:
            out.append(None)
    return out


@functools.lru_cache(maxsize=512)
def _raster_facts(path: str, mtime_ns: int, scale: float, signed: bool) -> dict[str, Any]:
    """Bounds, bands and display limits of a raster (cached by path and modification)."""
    with rasterio.open(path) as ds:
        if ds.crs is None:
            raise SubmitError(400, f"{Path(path).name} has no map projection (radar "
                              "geometry): use its geocoded copy")
        west, south, east, north = transform_bounds(ds.crs, "EPSG:4326", *ds.bounds,
                                                    densify_pts=21)
        f = max(1.0, max(ds.width, ds.height) / _LIMIT_PX)
        shape = (max(1, round(ds.height / f)), max(1, round(ds.width / f)))
        arr = ds.read(ds.count, out_shape=shape, masked=True, resampling=Resampling.nearest)
        values = np.ma.filled(arr.astype(np.float64), np.nan) * scale
        lo, hi = display_limits(values, symmetric=signed)
        return {"bounds": [west, south, east, north], "bands": ds.count,
                "dates": _band_dates(ds) if ds.count > 1 else [],
                "vmin": lo, "vmax": hi, "width": ds.width, "height": ds.height,
                "crs": ds.crs.to_string()}


def _raster_outputs(job: Job) -> list[tuple[str, str]]:
    return [(name, value) for name, value in job.outputs.items()
            if isinstance(value, str) and value.lower().endswith((".tif", ".tiff"))]


def _colour_stops(cmap: str, n: int = _STOPS) -> list[str]:
    cm = colormaps[cmap]
    return ["#{:02x}{:02x}{:02x}".format(*cm(k / (n - 1), bytes=True)[:3]) for k in range(n)]


def layer_info(job: Job, name: str) -> dict[str, Any]:
    """One map layer of a job (see the module docstring); SubmitError when it has none."""
    relpath = job.outputs.get(name)
    if not isinstance(relpath, str) or not relpath.lower().endswith((".tif", ".tiff")):
        raise SubmitError(404, f"job {job.id} has no raster output {name!r}")
    path = job_file(job, relpath, state().settings)
    meta = _meta(job, relpath, path)
    try:
        facts = _raster_facts(str(path), path.stat().st_mtime_ns, meta.display_scale,
                              meta.signed)
    except RasterioError as exc:
        raise SubmitError(500, f"cannot read {path.name}: {exc}") from None
    root = f"{request.script_root}/api/jobs/{job.id}"
    quoted = urllib.parse.quote(name, safe="")
    return {"name": name, "title": meta.title, "units": meta.shown_units,
            "scale": meta.display_scale, "signed": meta.signed, "cmap": meta.colour_map,
            "colors": _colour_stops(meta.colour_map), **facts,
            "band": facts["bands"],
            "tiles": f"{root}/tiles/{quoted}/{{z}}/{{x}}/{{y}}.png",
            "value": f"{root}/value/{quoted}"}


def job_layers(job: Job) -> list[dict[str, Any]]:
    """Every output of a job that can be shown on a map (georeferenced rasters)."""
    out = []
    for name, _ in _raster_outputs(job):
        try:
            out.append(layer_info(job, name))
        except SubmitError:
            continue  # radar geometry, unreadable: not on the map
    return out


def _band(info: dict[str, Any]) -> int:
    raw = request.args.get("band")
    if raw is None:
        return int(info["bands"])
    try:
        band = int(raw)
    except ValueError:
        raise SubmitError(400, f"band must be an integer, got {raw!r}") from None
    if not 1 <= band <= info["bands"]:
        raise SubmitError(400, f"band {band} not in 1..{info['bands']}")
    return band


def render_tile(path: Path, z: int, x: int, y: int, band: int, info: dict[str, Any]) -> bytes:
    """A 256-px PNG tile of one band, coloured between the layer's limits (rio-tiler)."""
    try:
        with Reader(str(path)) as src:
            img = src.tile(x, y, z, tilesize=TILE, indexes=band, resampling_method="nearest")
    except TileOutsideBounds:
        return _EMPTY
    data = img.array[0]
    values = np.ma.filled(data.astype(np.float64), np.nan) * info["scale"]
    valid = np.isfinite(values) & ~np.ma.getmaskarray(data)
    norm = (values - info["vmin"]) / (info["vmax"] - info["vmin"])
    rgba = colormaps[info["cmap"]](np.clip(np.nan_to_num(norm), 0, 1), bytes=True)
    rgba[..., 3] = np.where(valid, 255, 0)
    buf = io.BytesIO()
    Image.fromarray(rgba, mode="RGBA").save(buf, format="PNG", optimize=False)
    return buf.getvalue()


def point_value(path: Path, lon: float, lat: float, band: int) -> float | None:
    """The raw value of one band at a WGS84 point (None outside the raster or at nodata)."""
    try:
        with Reader(str(path)) as src:
            pt = src.point(lon, lat, indexes=band)
    except PointOutsideBounds:
        return None
    arr = pt.array
    if bool(np.ma.getmaskarray(arr)[0]) or not math.isfinite(float(arr[0])):
        return None
    return float(arr[0])


def _job(job_id: str) -> Job:
    """The job, read under the web form's rules (a token once accounts exist)."""
    return web.visible(job_id)


# ----------------------------------------------------------------------------- routes
@bp.errorhandler(SubmitError)
def _error(exc: SubmitError) -> tuple[Response, int]:
    return jsonify({"error": exc.message, "status": exc.status}), exc.status


@bp.get("/api/jobs/<job_id>/layers")
def layers(job_id: str) -> Response:
    """The job's map layers."""
    job = _job(job_id)
    return jsonify({"job": job.id, "layers": job_layers(job)})


@bp.get("/api/jobs/<job_id>/tiles/<name>/<int:z>/<int:x>/<int:y>.png")
def tile(job_id: str, name: str, z: int, x: int, y: int) -> Response:
    """One XYZ tile of a raster output."""
    job = _job(job_id)
    if not (0 <= z <= 24 and 0 <= x < 2**z and 0 <= y < 2**z):
        raise SubmitError(400, f"no tile {z}/{x}/{y}")
    info = layer_info(job, name)
    path = job_file(job, job.outputs[name], state().settings)
    try:
        png = render_tile(path, z, x, y, _band(info), info)
    except RasterioError as exc:
        raise SubmitError(500, f"cannot read {path.name}: {exc}") from None
    resp = Response(png, mimetype="image/png")
    resp.headers["Cache-Control"] = "private, max-age=300"
    return resp


@bp.get("/api/jobs/<job_id>/value/<name>")
def value(job_id: str, name: str) -> Response:
    """The value of a raster output at ``lon``, ``lat`` (WGS84), in display units."""
    job = _job(job_id)
    try:
        lon, lat = float(request.args["lon"]), float(request.args["lat"])
    except KeyError as exc:
        raise SubmitError(400, f"missing query parameter {exc.args[0]!r}") from None
    except ValueError:
        raise SubmitError(400, "lon and lat must be numbers") from None
    if not (math.isfinite(lon) and math.isfinite(lat) and -180 <= lon <= 180
            and -90 <= lat <= 90):
        raise SubmitError(400, f"lon={lon}, lat={lat} is not a WGS84 position")
    info = layer_info(job, name)
    band = _band(info)
    path = job_file(job, job.outputs[name], state().settings)
    try:
        raw = point_value(path, lon, lat, band)
    except RasterioError as exc:
        raise SubmitError(500, f"cannot read {path.name}: {exc}") from None
    return jsonify({"name": name, "lon": lon, "lat": lat, "band": band,
                    "value": None if raw is None else raw * info["scale"],
                    "units": info["units"]})
