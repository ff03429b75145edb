"""The campaign report: one HTML page and its PNGs in ``<campaign folder>/report/``.

Contents: the status summary (frames, pairs, failures, dropped dates, throughput), a
velocity overview of every packaged frame on one colour scale, the pairs computed over
time, and per frame its network plot (failed pairs dashed red, dropped dates dotted
orange), velocity map and quality maps (temporal and mean coherence).
"""

from __future__ import annotations

import html
import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np

from flatsim.monitor import campaign_status
from gdmio.atomic import atomic_path, write_text
from gdmio.messages import public_message

__all__ = ["write_report", "frame_footprints"]

#: The campaign report's look: the colours and type of the web pages.
CSS = """\
body { margin: 0; font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif;
       color: #1d2430; background: #f5f7fa; }
header.top { padding: 0.6em 1.2em; background: #17324d; color: #fff; font-weight: 600;
             font-size: 1.15em; }
main { padding: 1em 1.2em; max-width: 1300px; margin: 0 auto; }
section.panel { background: #fff; border: 1px solid #d7dce3; border-radius: 6px;
                padding: 1em 1.2em; margin-bottom: 1em; }
h1 { font-size: 1.4em; margin: 0.2em 0 0.6em; } h2 { font-size: 1.2em; margin: 0 0 0.6em; }
h3 { font-size: 1.05em; margin: 1em 0 0.4em; }
.muted { color: #667085; } .failed { color: #b03a2e; }
table { border-collapse: collapse; width: 100%; }
th, td { text-align: left; padding: 0.35em 0.5em; border-bottom: 1px solid #d7dce3; }
th { font-size: 0.85em; color: #667085; }
.badge { display: inline-block; padding: 0.05em 0.55em; border-radius: 10px;
         font-size: 0.85em; background: #e4e7ec; }
.badge.done, .badge.complete { background: #d5f0de; color: #1e8449; }
.badge.failed { background: #f7d9d5; color: #b03a2e; }
.badge.running { background: #fbeccd; color: #b9770e; }
img { max-width: 100%; border: 1px solid #d7dce3; }
figure { display: inline-block; margin: 4px; width: 31%; vertical-align: top; }
figcaption { text-align: center; color: #667085; font-size: 0.9em; }
"""


def frame_footprints(root: Path, frames: list[dict[str, Any]]) -> dict[str, Any]:
    """The campaign's frames as a GeoJSON FeatureCollection (lon/lat).

    A frame's outline is its STAC item's geometry once packaged, else the footprint of
    its velocity or first SLC when georeferenced; frames with neither are left out.
    Properties: ``id``, ``track``, ``status``, ``progress``.
    """
    import rasterio
    from rasterio.warp import transform_geom

    feats = []
    for fr in frames:
        d = root / fr["id"]
        geom = None
        item = d / "item.json"
        if item.is_file():
            try:
                geom = json.loads(item.read_text()).get("geometry")
            except (OSError, ValueError):
                geom = None
        if geom is None:
            for cand in [d / "ts" / "velocity.tif", *sorted((d / "stack").glob("*.tif"))[:1]]:
                if not cand.is_file():
                    continue
                try:
                    with rasterio.open(cand) as ds:
                        if ds.crs is None:
                            continue
                        b = ds.bounds
                        ring = [[b.left, b.bottom], [b.right, b.bottom], [b.right, b.top],
                                [b.left, b.top], [b.left, b.bottom]]
                        geom = transform_geom(ds.crs, "EPSG:4326",
                                              {"type": "Polygon", "coordinates": [ring]})
                        break
                except rasterio.errors.RasterioError:
                    continue
        if geom is not None:
            feats.append({"type": "Feature", "geometry": geom,
                          "properties": {"id": fr["id"], "track": fr.get("track"),
                                         "status": fr.get("status"),
                                         "progress": fr.get("progress")}})
    return {"type": "FeatureCollection", "features": feats}


def _frames_map(root: Path, doc: dict[str, Any], path: Path) -> Path | None:
    """Frames on a map, velocity inside each outline, Natural Earth borders, lon/lat axes.

    The velocity is in mm/yr on one colour scale (robust limits) for every frame.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import rasterio
    from matplotlib.collections import LineCollection, PolyCollection
    from rasterio.warp import Resampling, calculate_default_transform, reproject

    from gdmio.borders import border_lines, countries
    from gdmio.quicklook import display_limits

    fc = frame_footprints(root, doc["frames"])
    if not fc["features"]:
        return None
    xs = [c[0] for f in fc["features"] for c in _coords(f["geometry"])]
    ys = [c[1] for f in fc["features"] for c in _coords(f["geometry"])]
    pad = max(max(xs) - min(xs), max(ys) - min(ys), 0.05) * 0.35
    w, e, s, n = min(xs) - pad, max(xs) + pad, min(ys) - pad, max(ys) + pad
    vels = []
    for f in fc["features"]:
        p = root / f["properties"]["id"] / "ts" / "velocity.tif"
        if not p.is_file():
            continue
        with rasterio.open(p) as ds:
            if ds.crs is None:
                continue
            tr, wd, ht = calculate_default_transform(ds.crs, "EPSG:4326", ds.width,
                                                     ds.height, *ds.bounds)
            arr = np.full((ht, wd), np.nan, np.float32)
            reproject(rasterio.band(ds, 1), arr, dst_transform=tr, dst_crs="EPSG:4326",
                      dst_nodata=np.nan, resampling=Resampling.nearest)
        vels.append((arr * 1000.0, tr))
    fig, ax = plt.subplots(figsize=(8, 6), dpi=100)
    ax.set_facecolor("#d7e8f5")
    lat0 = (s + n) / 2
    polys = [r for _, rings in countries() for r in rings
             if r[:, 0].max() >= w and r[:, 0].min() <= e and r[:, 1].max() >= s
             and r[:, 1].min() <= n]
    ax.add_collection(PolyCollection(polys, facecolors="#f3efe4", edgecolors="none",
                                     zorder=0))
    ax.add_collection(LineCollection(border_lines((w, s, e, n)), colors="#6b6b6b",
                                     linewidths=0.6, zorder=1))
    im = None
    if vels:
        lim = max(display_limits(np.concatenate([v.ravel() for v, _ in vels]))[1], 1e-3)
        for v, tr in vels:
            ext = (tr.c, tr.c + tr.a * v.shape[1], tr.f + tr.e * v.shape[0], tr.f)
            im = ax.imshow(np.ma.masked_invalid(v), extent=ext, cmap="RdBu_r", vmin=-lim,
                           vmax=lim, interpolation="nearest", zorder=2)
    colours = {"done": "#1e8449", "failed": "#b03a2e", "running": "#b9770e"}
    for f in fc["features"]:
        pts = np.asarray(_coords(f["geometry"]))
        st = f["properties"]["status"]
        ax.plot(pts[:, 0], pts[:, 1], color=colours.get(st, "#1d2430"), lw=1.6, zorder=3)
        ax.text(pts[:, 0].mean(), pts[:, 1].max(), f"{f['properties']['id']} ({st})",
                ha="center", va="bottom", fontsize=8, zorder=4,
                bbox={"facecolor": "white", "alpha": 0.7, "edgecolor": "none", "pad": 1})
    ax.set_xlim(w, e)
    ax.set_ylim(s, n)
    ax.set_aspect(1 / max(np.cos(np.radians(lat0)), 0.2))
    ax.set_xlabel("longitude (°E)")
    ax.set_ylabel("latitude (°N)")
    ax.grid(alpha=0.3)
    ax.set_title(f"{len(fc['features'])} frame(s): outlines coloured by status, "
                 "LOS velocity inside", fontsize=10)
    if im is not None:
        fig.colorbar(im, ax=ax, shrink=0.8, label="LOS velocity (mm/yr, + towards satellite)")
    fig.tight_layout()
    return _save(fig, path)


def _coords(geom: dict[str, Any]) -> list[list[float]]:
    if geom["type"] == "Polygon":
        return list(geom["coordinates"][0])
    if geom["type"] == "MultiPolygon":
        return [c for poly in geom["coordinates"] for c in poly[0]]
    return []


def _save(fig: Any, path: Path) -> Path:
    import matplotlib.pyplot as plt

    with atomic_path(path) as tmp:
        fig.savefig(tmp)
    plt.close(fig)
    return path


def _velocity_overview(root: Path, frames: list[str], path: Path) -> Path | None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import rasterio

    maps = []
    for f in frames:
        p = root / f / "ts" / "velocity.tif"
        if p.is_file():
            with rasterio.open(p) as ds:
                step = max(1, max(ds.width, ds.height) // 400)
                maps.append((f, ds.read(1)[::step, ::step]))
    if not maps:
        return None
    from gdmio.quicklook import display_limits

    lim = max(max(display_limits(m)[1] for _, m in maps), 1e-6)
    n = len(maps)
    cols = min(n, 4)
    rws = -(-n // cols)
    fig, axes = plt.subplots(rws, cols, figsize=(3.2 * cols + 0.8, 3.0 * rws), dpi=100,
                             squeeze=False)
    im = None
    for ax, (f, m) in zip(axes.flat, maps, strict=False):
        im = ax.imshow(m * 1000, cmap="RdBu_r", vmin=-lim * 1000, vmax=lim * 1000)
        ax.set_title(f, fontsize=9)
        ax.set_xticks([])
        ax.set_yticks([])
    for ax in list(axes.flat)[n:]:
        ax.axis("off")
    fig.colorbar(im, ax=axes, shrink=0.8, label="LOS velocity (mm/yr, + towards satellite)")
    return _save(fig, path)


def _progress_plot(state: Any, cid: str, path: Path) -> Path | None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    done = sorted(s["finished"] for s in state.steps(cid, kind="pair")
                  if s["status"] == "done" and s["finished"] and not s["skipped"])
    if not done:
        return None
    t0 = done[0]
    minutes = [(t - t0).total_seconds() / 60 for t in done]
    fig, ax = plt.subplots(figsize=(6, 3), dpi=100)
    ax.step(minutes, np.arange(1, len(done) + 1), where="post")
    ax.set_xlabel("minutes since the first pair finished")
    ax.set_ylabel("pairs computed")
    ax.set_title("Campaign throughput")
    fig.tight_layout()
    return _save(fig, path)


def write_report(state: Any, cid: str) -> Path:
    """Write (or refresh) the campaign report; returns the path of ``index.html``."""
    doc = campaign_status(state, cid)
    root = Path(doc["out_dir"])
    out = root / "report"
    out.mkdir(parents=True, exist_ok=True)
    frames = [f["id"] for f in doc["frames"]]
    overview = _velocity_overview(root, frames, out / "velocity_overview.png")
    prog = _progress_plot(state, cid, out / "throughput.png")
    frames_map = _frames_map(root, doc, out / "frames_map.png")
    esc = html.escape
    t = doc["totals"]
    rate = doc["throughput_pairs_per_hour"]
    running = doc["status"] == "running"
    eta = f" Estimated completion: {esc(str(doc.get('eta')))}." if running and \
        doc.get("eta") else ""
    parts = [
        "<!doctype html><html lang='en'><head><meta charset='utf-8'>",
        f"<title>FLATSIM campaign {esc(cid)}</title>",
        f"<style>{CSS}</style></head><body>",
        "<header class='top'>Ground deformation service — FLATSIM campaign report</header>",
        "<main>",
        f"<section class='panel'><h1>FLATSIM campaign {esc(cid)}</h1>",
        f"<p>Status <span class='badge {esc(doc['status'])}'>{esc(doc['status'])}</span>, "
        f"priority {doc['priority']}; "
        f"{t['frames_done']}/{t['frames']} frames done, {t['frames_failed']} failed; "
        f"{t['pairs_done']} pairs done ({t['pairs_computed']} computed in this campaign, "
        f"the rest found done), {t['pairs_failed']} failed; {t['dropped_dates']} dropped "
        f"date(s). Throughput: {f'{rate:.0f} pairs/hour' if rate else 'n/a'}; workers: "
        f"{len(doc['workers'])}.{eta}</p>",
        "<p class='muted'>Units: LOS displacement in mm, LOS velocity in mm/yr, positive "
        "towards the satellite (the GeoTIFF products store metres and metres per year, "
        "as their UNITS tags say); interferograms ifg_ij = slc_i conj(slc_j), i earlier. "
        "Catalogue: <a href='../catalog.json'>catalog.json</a> (STAC).</p></section>",
    ]
    if frames_map:
        parts.append(f"<section class='panel'><h2>Frames on the map</h2><img id='frames-map' "
                     f"src='{frames_map.name}' alt='frames on a map'></section>")
    if overview:
        parts.append(f"<section class='panel'><h2>Velocity overview</h2><img "
                     f"src='{overview.name}' alt='velocity overview'></section>")
    if prog:
        parts.append(f"<section class='panel'><h2>Throughput</h2><img src='{prog.name}' "
                     "alt='pairs over time'></section>")
    parts.append("<section class='panel'><h2>Frames</h2><table><tr><th>frame</th><th>track"
                 "</th><th>status</th><th>dates</th><th>pairs used / planned</th>"
                 "<th>failed pairs</th><th>dropped dates</th><th>network</th>"
                 "<th>velocity checksum</th></tr>")
    for fr in doc["frames"]:
        meta_p = root / fr["id"] / "metadata.json"
        meta = json.loads(meta_p.read_text()) if meta_p.is_file() else {}
        net = meta.get("network") or fr.get("network_gaps") or {}
        gap_txt = "connected" if net.get("connected") else (
            f"{net.get('components')} components; gaps: "
            + ", ".join(f"{g['after']}..{g['before']}" for g in net.get("gaps", []))
            if net else "-")
        dropped = "; ".join(f"{d['date']}: {d['reason']}" for d in fr["dropped_dates"])
        cls = " class='failed'" if fr["status"] == "failed" else ""
        parts.append(
            f"<tr{cls}><td>{esc(fr['id'])}</td><td>{fr['track']}</td>"
            f"<td><span class='badge {esc(fr['status'])}'>{esc(fr['status'])}</span></td>"
            f"<td>{fr['dates'] or '?'}</td>"
            f"<td>{meta.get('pairs_used', fr['pairs_done'])} / "
            f"{fr['pairs_planned'] or '?'}</td>"
            f"<td>{esc(', '.join(fr['failed_pairs'])) or '-'}</td>"
            f"<td>{esc(dropped) or '-'}</td><td>{esc(gap_txt)}</td>"
            f"<td><code>{esc(meta.get('velocity_sha256', '-')[:16])}</code></td></tr>")
    parts.append("</table></section>")
    if doc["failures"]:
        parts.append("<section class='panel'><h2>Failures</h2><ul>")
        for f in doc["failures"]:
            what = f"pair {f['pair']}" if f["pair"] else f["step"]
            parts.append(f"<li class='failed'>{esc(f['frame'])} {esc(what)}: "
                         f"{f['failures']} failure(s){' — given up' if f['final'] else ''}: "
                         f"{esc(public_message(str(f['error'])))}</li>")
        parts.append("</ul></section>")
    for fr in doc["frames"]:
        pngs = []
        for name in ("network", "velocity", "displacement", "temporal_coherence",
                     "mean_coherence", "dem_error", "interferograms"):
            src = root / fr["id"] / f"{name}.png"
            if src.is_file():
                dest = out / f"{fr['id']}_{name}.png"
                shutil.copyfile(src, dest)
                pngs.append((name, dest.name))
        if pngs:
            parts.append(f"<section class='panel'><h3>{esc(fr['id'])}</h3>")
            parts += [f"<figure><img src='{p}' alt='{n}'><figcaption>{n.replace('_', ' ')}"
                      "</figcaption></figure>" for n, p in pngs]
            parts.append("</section>")
    parts.append("</main></body></html>")
    index = out / "index.html"
    write_text(index, "\n".join(parts))
    return index
