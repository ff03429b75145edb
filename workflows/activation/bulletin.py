"""The activation bulletin: one HTML page and one PDF page, rewritten as each job ends.

Content: the event (hazard, date, AOI), the state of every product, a map per finished
product (GDM-OPT displacement, GDM-SAR co-event interferogram, DSM-OPT post-minus-pre
DSM difference) with a colour bar, a scale bar and a north arrow, the dates and
scenes used, the processing parameters, the sensors that could not be used and why,
and the activation log (who, when, what).

Maps are rendered with matplotlib (``Figure`` + Agg canvas, no pyplot state, so
several workers may render at once) from the job products, decimated to at most
:data:`MAP_MAX_PX` pixels a side with area averaging. The HTML page embeds its maps
as ``data:`` URIs, so the one file can be mailed, archived or served as it is. The PDF
is drawn by matplotlib's ``PdfPages`` (an A4 page): it needs no browser on the
worker machines, unlike Chromium's print-to-PDF which is only installed where the web
tests run.
"""

from __future__ import annotations

import base64
import datetime as dt
import math
import textwrap
from pathlib import Path
from typing import Any

import jinja2
import numpy as np
import rasterio
from affine import Affine
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.backends.backend_pdf import PdfPages
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle
from rasterio.enums import Resampling
from rasterio.transform import array_bounds
from rasterio.warp import reproject
from rasterio.warp import transform as warp_transform

from gdmio.atomic import atomic_path, write_bytes
from gdmio.messages import public_message
from gdmio.quicklook import display_limits
from workflows.activation.models import ActivationRequest
from workflows.activation.store import Activation
from workflows.jobstore import JobStore
from workflows.settings import Settings

__all__ = ["write_bulletin", "render_map", "read_decimated", "nice_length", "MAP_MAX_PX",
           "MAP_FILES"]

MAP_MAX_PX = 600
"""Largest side of the raster drawn in a map (pixels)."""

MAP_FILES = {"opt": "map_displacement.png", "sar": "map_interferogram.png",
             "dsm": "map_dsm_difference.png"}
"""Map file name per product."""


# ---------------------------------------------------------------- rasters
def read_decimated(path: Path, band: int = 1, max_px: int = MAP_MAX_PX
                   ) -> tuple[np.ndarray, Affine, Any]:
    """A band as float64 with NaN for nodata, averaged down to ``max_px`` a side."""
    with rasterio.open(path) as ds:
        scale = max(1.0, max(ds.width, ds.height) / max_px)
        h, w = max(1, round(ds.height / scale)), max(1, round(ds.width / scale))
        data = ds.read(band, out_shape=(h, w), masked=True,
                       resampling=Resampling.average if scale > 1 else Resampling.nearest)
        arr = np.ma.filled(data.astype("float64"), np.nan)
        transform = ds.transform * Affine.scale(ds.width / w, ds.height / h)
        return arr, transform, ds.crs


def nice_length(span: float) -> float:
    """A round length (1, 2 or 5 times a power of ten) close to a quarter of ``span``."""
    target = max(span / 4.0, 1e-9)
    base = 10 ** math.floor(math.log10(target))
    for k in (5, 2, 1):
        if k * base <= target:
            return k * base
    return base


def _metres_per_unit(crs: Any, transform: Affine, shape: tuple[int, int]) -> float:
    if crs is not None and crs.is_geographic:
        lat = (transform * (0, shape[0] / 2))[1]
        return 111_320.0 * math.cos(math.radians(lat))
    if crs is not None and crs.linear_units_factor:
        return float(crs.linear_units_factor[1])
    return 1.0


def _scale_bar(ax: Any, extent: tuple[float, float, float, float], m_per_unit: float) -> None:
    left, right, bottom, top = extent
    width_m = (right - left) * m_per_unit
    length_m = nice_length(width_m)
    length = length_m / m_per_unit
    x0 = left + 0.05 * (right - left)
    y0 = bottom + 0.06 * (top - bottom)
    hgt = 0.018 * (top - bottom)
    for k in range(4):
        ax.add_patch(Rectangle((x0 + k * length / 4, y0), length / 4, hgt,
                               facecolor="black" if k % 2 == 0 else "white",
                               edgecolor="black", linewidth=0.8, zorder=5))
    label = f"{length_m / 1000:g} km" if length_m >= 1000 else f"{length_m:g} m"
    ax.text(x0 + length / 2, y0 + 1.8 * hgt, label, ha="center", va="bottom", fontsize=8,
            zorder=6, bbox={"facecolor": "white", "alpha": 0.7, "edgecolor": "none",
                            "pad": 1})


def _north_arrow(ax: Any) -> None:
    ax.annotate("N", xy=(0.93, 0.95), xytext=(0.93, 0.80), xycoords="axes fraction",
                ha="center", va="center", fontsize=10, fontweight="bold", zorder=6,
                arrowprops={"facecolor": "black", "edgecolor": "white", "width": 4,
                            "headwidth": 11, "headlength": 9},
                bbox={"facecolor": "white", "alpha": 0.7, "edgecolor": "none", "pad": 1})


def _to_map(crs: Any, lons: np.ndarray, lats: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """WGS84 positions in the map's CRS (unchanged for a geographic map or none)."""
    if crs is None or crs.is_geographic:
        return np.asarray(lons, float), np.asarray(lats, float)
    xs, ys = warp_transform("EPSG:4326", crs, list(map(float, lons)), list(map(float, lats)))
    return np.asarray(xs), np.asarray(ys)


def _nice_step(span_deg: float) -> float:
    """A graticule step giving 2 to 5 lines over ``span_deg`` degrees."""
    for step in (0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.25, 0.5, 1, 2, 5, 10):
        if span_deg / step <= 5:
            return step
    return 20.0


def _deg(value: float, pos: str, neg: str, step: float) -> str:
    decimals = max(0, -math.floor(math.log10(step) + 1e-9))
    return f"{abs(value):.{decimals}f}°{pos if value >= 0 else neg}"


def _graticule(ax: Any, crs: Any, extent: tuple[float, float, float, float]) -> None:
    """Meridians and parallels over the map, labelled on the bottom and left edges."""
    left, right, bottom, top = extent
    if crs is None:
        return
    xs = np.linspace(left, right, 21)
    ys = np.linspace(bottom, top, 21)
    edge_x = np.concatenate([xs, np.full(21, right), xs[::-1], np.full(21, left)])
    edge_y = np.concatenate([np.full(21, bottom), ys, np.full(21, top), ys[::-1]])
    if crs.is_geographic:
        lons, lats = edge_x, edge_y
    else:
        lons, lats = warp_transform(crs, "EPSG:4326", list(edge_x), list(edge_y))
        lons, lats = np.asarray(lons), np.asarray(lats)
    w, e, s, n = lons.min(), lons.max(), lats.min(), lats.max()
    step = _nice_step(max(e - w, n - s))
    xticks, xlabels, yticks, ylabels = [], [], [], []
    for lon in np.arange(math.ceil(w / step) * step, e + 1e-12, step):
        line_lat = np.linspace(s - (n - s), n + (n - s), 60)
        mx, my = _to_map(crs, np.full(line_lat.size, lon), line_lat)
        ax.plot(mx, my, color="black", lw=0.5, alpha=0.45, ls=(0, (4, 3)), zorder=3)
        # where the meridian meets the bottom edge
        k = np.argmin(np.abs(my - bottom))
        if left <= mx[k] <= right:
            xticks.append(float(np.interp(bottom, my, mx) if np.all(np.diff(my) > 0)
                                else mx[k]))
            xlabels.append(_deg(lon, "E", "W", step))
    for lat in np.arange(math.ceil(s / step) * step, n + 1e-12, step):
        line_lon = np.linspace(w - (e - w), e + (e - w), 60)
        mx, my = _to_map(crs, line_lon, np.full(line_lon.size, lat))
        ax.plot(mx, my, color="black", lw=0.5, alpha=0.45, ls=(0, (4, 3)), zorder=3)
        k = np.argmin(np.abs(mx - left))
        if bottom <= my[k] <= top:
            yticks.append(float(np.interp(left, mx, my) if np.all(np.diff(mx) > 0)
                                else my[k]))
            ylabels.append(_deg(lat, "N", "S", step))
    ax.set_xticks(xticks, xlabels, fontsize=7)
    ax.set_yticks(yticks, ylabels, fontsize=7)
    ax.set_xlim(left, right)
    ax.set_ylim(bottom, top)


def _aoi_outline(ax: Any, crs: Any, aoi: Any) -> None:
    """The area of interest (a shapely geometry in lon/lat) drawn on the map."""
    from shapely.geometry import Point

    geoms = getattr(aoi, "geoms", [aoi])
    for g in geoms:
        if isinstance(g, Point):
            mx, my = _to_map(crs, np.array([g.x]), np.array([g.y]))
            ax.plot(mx, my, marker="*", ms=14, color="gold", mec="black", zorder=7)
            continue
        ring = np.asarray(g.exterior.coords) if hasattr(g, "exterior") else \
            np.asarray(g.coords)
        # densify so that a box stays a curve-true outline in the map projection
        t = np.linspace(0, 1, 12)[:-1]
        pts = np.concatenate([a + (b - a) * t[:, None] for a, b in zip(ring[:-1], ring[1:],
                                                                       strict=True)]
                             + [ring[-1:]])
        mx, my = _to_map(crs, pts[:, 0], pts[:, 1])
        ax.plot(mx, my, color="white", lw=3.2, zorder=7)
        ax.plot(mx, my, color="#c0392b", lw=1.6, zorder=8, label="area of interest")


def _location_inset(fig: Figure, rect: tuple[float, float, float, float],
                    lon: float, lat: float, box: tuple[float, float, float, float]) -> Any:
    """A small map of the region (Natural Earth countries) with the AOI marked."""
    from matplotlib.collections import LineCollection, PolyCollection

    from gdmio.borders import border_lines, countries

    ax = fig.add_axes(rect)
    half = 8.0
    w, e = lon - half * 1.3, lon + half * 1.3
    s, n = max(-89.0, lat - half), min(89.0, lat + half)
    ax.set_facecolor("#d7e8f5")
    polys = [r for _, rings in countries() for r in rings
             if r[:, 0].max() >= w and r[:, 0].min() <= e and r[:, 1].max() >= s
             and r[:, 1].min() <= n]
    ax.add_collection(PolyCollection(polys, facecolors="#f3efe4", edgecolors="none",
                                     zorder=1))
    ax.add_collection(LineCollection(border_lines((w, s, e, n)), colors="#6b6b6b",
                                     linewidths=0.5, zorder=2))
    bw, bs, be, bn = box
    ax.add_patch(Rectangle((bw, bs), max(be - bw, 0.05), max(bn - bs, 0.05), fill=False,
                           edgecolor="#c0392b", linewidth=1.5, zorder=3))
    ax.plot([lon], [lat], marker="o", ms=5, color="#c0392b", zorder=4)
    ax.set_xlim(w, e)
    ax.set_ylim(s, n)
    ax.set_aspect(1 / max(math.cos(math.radians(lat)), 0.2))
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_title("location", fontsize=7, pad=2)
    ax.lines[-1].set_gid("aoi-location")
    return ax


def render_map(data: np.ndarray, transform: Affine, crs: Any, out_png: Path, *, title: str,
               subtitle: str, cmap: str, units: str, vmin: float | None = None,
               vmax: float | None = None, arrows: tuple[np.ndarray, np.ndarray] | None = None,
               aoi: Any = None) -> Path:
    """Draw one map as a PNG, with everything a bulletin map needs.

    Colour bar, scale bar, north arrow, lat/lon graticule, the area of interest outlined
    (``aoi``, a shapely geometry in lon/lat) and a location inset with Natural Earth
    country borders.

    Colour limits not given come from :func:`gdmio.quicklook.display_limits` (robust,
    never saturating the signal).
    """
    h, w = data.shape
    left, bottom, right, top = array_bounds(h, w, transform)
    if vmin is None or vmax is None:
        lo, hi = display_limits(data, symmetric=False)
        vmin = lo if vmin is None else vmin
        vmax = hi if vmax is None else vmax
    if vmax <= vmin:
        vmax = vmin + 1e-6
    fig = Figure(figsize=(8.0, 5.8), dpi=110)
    FigureCanvasAgg(fig)
    ax = fig.add_axes((0.09, 0.09, 0.60, 0.80))
    extent = (left, right, bottom, top)
    im = ax.imshow(np.ma.masked_invalid(data), extent=extent, cmap=cmap, vmin=vmin,
                   vmax=vmax, interpolation="nearest", origin="upper")
    if arrows is not None:
        east, north = arrows
        step = max(1, max(h, w) // 24)
        yy, xx = np.mgrid[step // 2:h:step, step // 2:w:step]
        xs, ys = transform * (xx + 0.5, yy + 0.5)
        u, v = east[yy, xx], north[yy, xx]
        ok = np.isfinite(u) & np.isfinite(v)
        if ok.any():
            ax.quiver(np.asarray(xs)[ok], np.asarray(ys)[ok], u[ok], v[ok], color="black",
                      angles="uv", pivot="middle", width=0.003, zorder=4)
    cax = fig.add_axes((0.71, 0.09, 0.022, 0.44))
    finite = data[np.isfinite(data)]
    extend = {(False, False): "neither", (True, False): "min", (False, True): "max",
              (True, True): "both"}[(bool(finite.size and finite.min() < vmin),
                                     bool(finite.size and finite.max() > vmax))]
    cbar = fig.colorbar(im, cax=cax, extend=extend)
    cbar.set_label(units)
    if aoi is not None:
        _aoi_outline(ax, crs, aoi)
    _graticule(ax, crs, extent)
    _scale_bar(ax, extent, _metres_per_unit(crs, transform, data.shape))
    _north_arrow(ax)
    ax.set_title(f"{title}\n{subtitle}", fontsize=10)
    if crs is not None:
        xs, ys = (np.array([left, right, right, left]), np.array([bottom, bottom, top, top]))
        if crs.is_geographic:
            lons, lats = xs, ys
        else:
            lons, lats = (np.asarray(v) for v in warp_transform(crs, "EPSG:4326", list(xs),
                                                                list(ys)))
        box = (float(lons.min()), float(lats.min()), float(lons.max()), float(lats.max()))
        _location_inset(fig, (0.77, 0.62, 0.21, 0.30), (box[0] + box[2]) / 2,
                        (box[1] + box[3]) / 2, box)
        fig.text(0.77, 0.57, f"map grid {crs.to_string()}", fontsize=6.5, color="#555")
    with atomic_path(out_png) as tmp:
        fig.savefig(tmp, format="png")
    return out_png


# ----------------------------------------------------------------- products
def _job_path(store: JobStore, settings: Settings, job_id: str | None, key: str
              ) -> Path | None:
    if not job_id:
        return None
    job = store.get(job_id)
    if job is None or job.status != "successful":
        return None
    rel = job.outputs.get(key)
    if not isinstance(rel, str):
        return None
    path = settings.products_dir / job.id / rel
    return path if path.is_file() else None


def _dates(entry: dict[str, Any]) -> str:
    pre = [s["datetime"][:10] for s in entry.get("scenes", {}).get("pre", [])]
    post = [s["datetime"][:10] for s in entry.get("scenes", {}).get("post", [])]
    return f"{', '.join(sorted(set(pre))) or '?'} → {', '.join(sorted(set(post))) or '?'}"


def _fresh(png: Path, *sources: Path) -> bool:
    return png.is_file() and all(png.stat().st_mtime >= s.stat().st_mtime for s in sources)


def _map_opt(entry: dict[str, Any], store: JobStore, settings: Settings, out: Path,
             aoi: Any = None) -> bool:
    east = _job_path(store, settings, entry.get("job_id"), "east")
    north = _job_path(store, settings, entry.get("job_id"), "north")
    if east is None or north is None:
        return False
    if _fresh(out, east, north):
        return True
    e, transform, crs = read_decimated(east)
    n, _, _ = read_decimated(north)
    mag = np.hypot(e, n)
    render_map(mag, transform, crs, out, title="GDM-OPT horizontal displacement",
               subtitle=_dates(entry), cmap="viridis", units="displacement (m)", vmin=0.0,
               vmax=max(display_limits(mag, symmetric=False)[1], 1e-6), arrows=(e, n),
               aoi=aoi)
    return True


def _interferogram(entry: dict[str, Any], settings: Settings, store: JobStore) -> Path | None:
    job_id = entry.get("job_id")
    job = store.get(job_id) if job_id else None
    if job is None or job.status != "successful":
        return None
    pre = [s["datetime"][:10].replace("-", "") for s in entry["scenes"].get("pre", [])]
    post = [s["datetime"][:10].replace("-", "") for s in entry["scenes"].get("post", [])]
    found = sorted((settings.products_dir / job.id).rglob("interferograms/*/wrapped.tif"))
    for p in found:
        if pre and post and p.parent.name == f"{pre[0]}_{post[0]}":
            return p
    return found[0] if found else None


def _map_sar(entry: dict[str, Any], store: JobStore, settings: Settings, out: Path,
             aoi: Any = None) -> bool:
    wrapped = _interferogram(entry, settings, store)
    if wrapped is None:
        return False
    if _fresh(out, wrapped):
        return True
    phase, transform, crs = read_decimated(wrapped)
    render_map(phase, transform, crs, out, title="GDM-SAR co-event interferogram "
               f"({wrapped.parent.name.replace('_', ' → ')})", subtitle=_dates(entry),
               cmap="twilight", units="wrapped phase (rad)", vmin=-math.pi, vmax=math.pi,
               aoi=aoi)
    return True


def dsm_output(store: JobStore, settings: Settings, job_id: str | None) -> Path | None:
    """The DSM raster of a DSM-OPT job (output ``dsm``, else the first DSM-named GeoTIFF)."""
    if not job_id:
        return None
    direct = _job_path(store, settings, job_id, "dsm")
    if direct is not None:
        return direct
    job = store.get(job_id)
    if job is None or job.status != "successful":
        return None
    for key, rel in sorted(job.outputs.items()):
        if isinstance(rel, str) and rel.lower().endswith((".tif", ".tiff")) and \
                "dsm" in (key + Path(rel).name).lower():
            path = settings.products_dir / job.id / rel
            if path.is_file():
                return path
    return None


def dsm_difference(pre: Path, post: Path, max_px: int = MAP_MAX_PX
                   ) -> tuple[np.ndarray, Affine, Any]:
    """Post minus pre DSM on the (decimated) grid of the pre DSM, NaN where either lacks."""
    before, transform, crs = read_decimated(pre, max_px=max_px)
    after = np.full(before.shape, np.nan)
    with rasterio.open(post) as ds:
        reproject(rasterio.band(ds, 1), after, src_nodata=ds.nodata, dst_transform=transform,
                  dst_crs=crs, dst_nodata=np.nan, resampling=Resampling.bilinear)
    return after - before, transform, crs


def _map_dsm(entries: list[dict[str, Any]], store: JobStore, settings: Settings,
             out: Path, aoi: Any = None) -> bool:
    by_role = {e["role"]: e for e in entries}
    pre = dsm_output(store, settings, by_role.get("dsm-pre", {}).get("job_id"))
    post = dsm_output(store, settings, by_role.get("dsm-post", {}).get("job_id"))
    if pre is None or post is None:
        return False
    if _fresh(out, pre, post):
        return True
    diff, transform, crs = dsm_difference(pre, post)
    lim = display_limits(diff, symmetric=True)[1]
    merged = {"scenes": {"pre": by_role["dsm-pre"]["scenes"].get("pre", []),
                         "post": by_role["dsm-post"]["scenes"].get("post", [])}}
    render_map(diff, transform, crs, out, title="DSM-OPT DSM difference (post − pre)",
               subtitle=_dates(merged), cmap="RdBu_r", units="elevation change (m)",
               vmin=-max(lim, 1e-3), vmax=max(lim, 1e-3), aoi=aoi)
    return True


# ------------------------------------------------------------------ document
def _data_uri(png: Path) -> str:
    return "data:image/png;base64," + base64.b64encode(png.read_bytes()).decode("ascii")


PRODUCT_TITLES = {"opt": "Horizontal displacement (GDM-OPT, Sentinel-2)",
                  "sar": "Co-event interferogram (GDM-SAR, Sentinel-1)",
                  "dsm": "DSM difference (DSM-OPT, Pléiades)"}


def _products(act: Activation, folder: Path, store: JobStore, settings: Settings,
              render: bool) -> tuple[list[dict[str, Any]], list[str]]:
    groups: dict[str, list[dict[str, Any]]] = {}
    for e in act.jobs:
        groups.setdefault(e["role"].split("-")[0], []).append(e)
    products, maps = [], []
    try:
        from gdmio.providers.aoi import parse_aoi

        aoi = parse_aoi(act.aoi)
    except Exception:  # noqa: BLE001 - an unreadable AOI only loses its outline
        aoi = None
    for kind in ("opt", "sar", "dsm"):
        entries = groups.get(kind)
        if not entries:
            continue
        png = folder / MAP_FILES[kind]
        ok = png.is_file()
        if render:
            try:
                if kind == "opt":
                    ok = _map_opt(entries[0], store, settings, png, aoi)
                elif kind == "sar":
                    ok = _map_sar(entries[0], store, settings, png, aoi)
                else:
                    ok = _map_dsm(entries, store, settings, png, aoi)
            except (OSError, ValueError, rasterio.errors.RasterioError) as exc:
                for e in entries:
                    e["map_error"] = f"map not drawn: {exc}"
                ok = False
        if ok:
            maps.append(png.name)
        scenes = []
        for e in entries:
            for side in ("pre", "post"):
                scenes += [{"side": side, **s} for s in e.get("scenes", {}).get(side, [])]
        params: dict[str, Any] = {}
        for e in entries:
            params.update(e.get("parameters") or {})
        products.append({"kind": kind, "title": PRODUCT_TITLES[kind], "jobs": entries,
                         "map": _data_uri(png) if ok else None, "map_file": png.name
                         if ok else None, "scenes": scenes, "parameters": params,
                         "dates": _dates({"scenes": {
                             "pre": [s for s in scenes if s["side"] == "pre"],
                             "post": [s for s in scenes if s["side"] == "post"]}})})
    return products, maps


_ENV = jinja2.Environment(autoescape=True,
                          trim_blocks=True, lstrip_blocks=True)
_ENV.filters["public"] = public_message

FRAGMENT = _ENV.from_string("""\
<article class="bulletin" id="bulletin" data-activation="{{ a.id }}" data-status="{{ a.status }}">
<header class="bulletin-head">
  <h1>{{ a.title }}</h1>
  <p class="event"><b>{{ a.hazard|capitalize }}</b> &middot; event <time id="event-date">{{ a.event_date }}</time>
  &middot; status <b id="activation-status">{{ a.status }}</b></p>
  <p class="meta">Activation {{ a.id }} by {{ a.created_by }} on {{ created }} UTC &middot;
  bulletin updated {{ updated }} UTC</p>
  <p class="meta">AOI: <code>{{ a.aoi }}</code></p>
  <p class="meta">Sensors by priority: {{ eff.sensors|join(', ') }} &middot; search window
  {{ eff.pre_days }} days before, {{ eff.post_days }} days after &middot; Sentinel-2 cloud
  cover &le; {{ eff.max_cloud }}%</p>
</header>
{% for p in products %}
<section class="product" data-kind="{{ p.kind }}" data-status="{{ p.jobs|map(attribute='status')|join(',') }}">
  <h2>{{ p.title }}</h2>
  <p class="dates">Dates: <b>{{ p.dates }}</b></p>
  {% if p.map %}
  <figure><img class="map" src="{{ p.map }}" alt="{{ p.title }} map ({{ p.dates }}) with scale bar and north arrow">
  <figcaption>{{ p.title }}, {{ p.dates }}; scale bar and north arrow on the map.</figcaption></figure>
  {% else %}
  <p class="pending">No map yet:
  {% for j in p.jobs %}{{ j.process }} {{ j.role }} is <b>{{ j.status }}</b>{% if j.message %} ({{ j.message|public }}){% endif %}{% if j.map_error %} &mdash; {{ j.map_error|public }}{% endif %}{% if not loop.last %}; {% endif %}{% endfor %}.</p>
  {% endif %}
  <table class="scenes"><thead><tr><th>side</th><th>scene</th><th>acquired (UTC)</th><th>details</th></tr></thead><tbody>
  {% for s in p.scenes %}
  <tr><td>{{ s.side }}</td><td class="scene-id">{{ s.id }}</td><td>{{ s.datetime }}</td>
  <td>{% if s.provider == 's2' %}tile {{ s.tile }}, orbit R{{ s.orbit }}, cloud {{ s.cloud }}%{% elif s.provider == 's1' %}track {{ s.track }} {{ s.direction }}{% else %}{{ s.platform }}, incidence {{ s.incidence }}&deg;{% endif %}</td></tr>
  {% endfor %}
  </tbody></table>
  <table class="jobs"><thead><tr><th>job</th><th>process</th><th>status</th><th>message</th></tr></thead><tbody>
  {% for j in p.jobs %}
  <tr data-job="{{ j.job_id or '' }}"><td>{{ j.job_id or '—' }}</td><td>{{ j.process }} ({{ j.role }})</td><td class="job-status">{{ j.status }}</td><td>{{ j.message|public }}</td></tr>
  {% endfor %}
  </tbody></table>
  <p class="params">Processing parameters: {% for k, v in p.parameters|dictsort %}<code>{{ k }}={{ v }}</code> {% else %}defaults{% endfor %}</p>
</section>
{% endfor %}
{% if unusable %}
<section class="unusable"><h2>Sensors not used</h2><ul>
{% for s in unusable %}<li data-sensor="{{ s.sensor }}">{{ s.reason|public }}</li>{% endfor %}
</ul></section>
{% endif %}
{% if rejected %}
<details class="rejected"><summary>Scenes found but not used ({{ rejected|length }})</summary><ul>
{% for r in rejected %}<li>{{ r.sensor }} {{ r.id }}: {{ r.why }}</li>{% endfor %}
</ul></details>
{% endif %}
<section class="log"><h2>Activation log</h2>
<table id="activation-log"><thead><tr><th>when (UTC)</th><th>who</th><th>what</th><th>detail</th></tr></thead><tbody>
{% for e in a.log %}<tr><td>{{ e.at }}</td><td>{{ e.who }}</td><td>{{ e.action }}</td><td>{{ e.detail|public }}</td></tr>
{% endfor %}
</tbody></table></section>
</article>
""")  # noqa: E501

PAGE = _ENV.from_string("""\
<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<title>{{ a.title }} — CIEST² bulletin</title>
<style>
body { font-family: sans-serif; margin: 1.5em auto; max-width: 1100px; color: #222; }
{{ css }}
</style></head>
<body>
{{ fragment }}
<p class="meta">PDF: <a href="bulletin.pdf">bulletin.pdf</a></p>
</body></html>
""")

CSS = """\
.bulletin h1 { margin-bottom: .2em; } .bulletin .meta { color: #555; font-size: .9em; margin: .2em 0; }
.bulletin .product { border-top: 2px solid #ccc; margin-top: 1em; padding-top: .5em; }
.bulletin img.map { max-width: 100%; border: 1px solid #ccc; }
.bulletin table { border-collapse: collapse; margin: .5em 0; font-size: .85em; }
.bulletin td, .bulletin th { border: 1px solid #ddd; padding: 2px 6px; text-align: left; }
.bulletin code { font-size: .85em; } .bulletin .pending { color: #a60; }
"""  # noqa: E501


def _context(act: Activation, products: list[dict[str, Any]]) -> dict[str, Any]:
    eff = ActivationRequest.model_validate(act.request).effective()
    unusable = [s for s in act.selections if s.get("status") != "selected"]
    rejected = [{"sensor": s["sensor"], **r} for s in act.selections
                for r in s.get("rejected", [])]
    return {"a": act, "products": products, "eff": eff, "unusable": unusable,
            "rejected": rejected, "created": f"{act.created:%Y-%m-%d %H:%M:%S}",
            "updated": f"{dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M:%S}"}


def render_fragment(act: Activation, folder: Path, *, store: JobStore, settings: Settings,
                    render: bool = False) -> str:
    """The bulletin as an HTML fragment (the web page embeds it in its layout)."""
    products, _ = _products(act, folder, store, settings, render)
    return FRAGMENT.render(**_context(act, products))


def _write_atomic(path: Path, data: bytes) -> None:
    write_bytes(path, data)


def write_bulletin(act: Activation, folder: Path, *, store: JobStore, settings: Settings,
                   maps_only_cached: bool = False) -> list[str]:
    """Write ``bulletin.html`` and ``bulletin.pdf`` (and the maps) into ``folder``.

    Maps are drawn for successful jobs (and kept while their products do not change);
    with ``maps_only_cached`` only maps already drawn are used. Returns the map files.
    """
    folder.mkdir(parents=True, exist_ok=True)
    products, maps = _products(act, folder, store, settings, not maps_only_cached)
    ctx = _context(act, products)
    fragment = FRAGMENT.render(**ctx)
    html = PAGE.render(a=act, css=jinja2.utils.markupsafe.Markup(CSS),
                       fragment=jinja2.utils.markupsafe.Markup(fragment))
    _write_atomic(folder / "bulletin.html", html.encode("utf-8"))
    _write_pdf(folder / "bulletin.pdf", ctx, folder)
    return maps


def _write_pdf(path: Path, ctx: dict[str, Any], folder: Path) -> None:
    figs = pdf_pages(ctx, folder)
    with atomic_path(path) as tmp, PdfPages(tmp, metadata={"Title": ctx["a"].title,
                                                           "Subject": "CIEST2 bulletin"}) as pdf:
        for fig in figs:
            pdf.savefig(fig)


class _PdfText:
    """Lines of text laid down A4 pages, wrapped to the page width, pages added as needed."""

    LEFT, BOTTOM, TOP = 0.05, 0.04, 0.96

    def __init__(self, title: str) -> None:
        self.title = title
        self.pages: list[Figure] = []
        self.y = 0.0
        self.new_page()

    def new_page(self) -> None:
        fig = Figure(figsize=(8.27, 11.69))  # A4 portrait
        FigureCanvasAgg(fig)
        if self.pages:
            fig.text(self.LEFT, 0.985, f"{self.title} (continued)", fontsize=7, va="top",
                     color="#555")
        fig.text(0.95, 0.015, f"page {len(self.pages) + 1}", fontsize=6.5, ha="right",
                 color="#555")
        self.pages.append(fig)
        self.y = self.TOP

    @property
    def fig(self) -> Figure:
        return self.pages[-1]

    def line(self, text: str, size: float = 7.0, indent: float = 0.0, bold: bool = False,
             gap: float = 0.0) -> None:
        """Wrapped text: as many lines as it needs, on as many pages as it needs."""
        # characters per line from the font size (at most 0.6 em a character)
        width_pt = (0.90 - indent) * 8.27 * 72
        chars = max(20, int(width_pt / (0.6 * size)))
        step = size * 1.35 / (11.69 * 72)
        for k, part in enumerate(textwrap.wrap(text, chars, break_long_words=True,
                                               break_on_hyphens=False) or [""]):
            if self.y - step < self.BOTTOM:
                self.new_page()
            self.fig.text(self.LEFT + indent + (0.02 if k else 0.0), self.y, part,
                          fontsize=size, va="top", fontweight="bold" if bold else "normal")
            self.y -= step
        self.y -= gap

    def room(self, height: float) -> float:
        """The top of a block ``height`` high (a new page when it does not fit)."""
        if self.y - height < self.BOTTOM:
            self.new_page()
        top = self.y
        self.y -= height
        return top


def pdf_pages(ctx: dict[str, Any], folder: Path) -> list[Figure]:
    """The bulletin as A4 pages: head, maps, products, unused sensors, the whole log.

    Every line is wrapped to the page width; nothing is cut or dropped: the text goes on
    to further pages (the log is complete, oldest entry first).
    """
    import matplotlib.image as mpimg

    act = ctx["a"]
    eff = ctx["eff"]
    doc = _PdfText(act.title)
    doc.line(act.title, size=15, bold=True, gap=0.008)
    for text in (f"{act.hazard.capitalize()} — event {act.event_date} — status {act.status}",
                 f"Activation {act.id} by {act.created_by}, {ctx['created']} UTC; "
                 f"updated {ctx['updated']} UTC",
                 f"AOI {act.aoi}",
                 f"Sensors {', '.join(eff['sensors'])}; window -{eff['pre_days']} / "
                 f"+{eff['post_days']} days; S2 cloud ≤ {eff['max_cloud']:g}%"):
        doc.line(text, size=8)
    doc.y -= 0.01
    products = ctx["products"]
    for p in [p for p in products if p["map_file"]]:
        img = mpimg.imread(folder / p["map_file"])
        height = 0.9 * 8.27 / 11.69 * img.shape[0] / img.shape[1]
        top = doc.room(height + 0.01)
        ax = doc.fig.add_axes((0.05, top - height, 0.9, height))
        ax.imshow(img)
        ax.set_axis_off()
    for p in products:
        doc.line(f"{p['title']} — {p['dates']}", size=9, bold=True)
        for j in p["jobs"]:
            msg = public_message(j.get("message"))
            doc.line(f"{j['process']} ({j['role']}) job {j.get('job_id') or '-'}: "
                     f"{j['status']}{f' — {msg}' if msg else ''}", indent=0.02)
        for sc in p["scenes"]:
            doc.line(f"{sc['side']}: {sc['id']} ({sc['datetime']})", indent=0.02)
        params = ", ".join(f"{k}={v}" for k, v in sorted(p["parameters"].items()))
        doc.line(f"parameters: {params or 'defaults'}", indent=0.02, gap=0.006)
    for sc in ctx["unusable"]:
        doc.line(f"Not used: {public_message(sc['reason'])}")
    doc.y -= 0.01
    doc.line("Activation log", size=9, bold=True)
    for e in act.log:
        doc.line(f"{e['at'][:19]}  {e['who']}  {e['action']}: "
                 f"{public_message(str(e['detail']))}", size=6.5)
    return doc.pages


def pdf_page(ctx: dict[str, Any], folder: Path) -> Figure:
    """The bulletin's first A4 page (see :func:`pdf_pages`)."""
    return pdf_pages(ctx, folder)[0]
