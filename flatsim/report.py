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

__all__ = ["write_report"]


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
    finite = np.concatenate([m[np.isfinite(m)] for _, m in maps])
    lim = float(np.percentile(np.abs(finite), 98)) if finite.size else 1.0
    lim = lim or 1e-3
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
    esc = html.escape
    t = doc["totals"]
    rate = doc["throughput_pairs_per_hour"]
    parts = [
        "<!doctype html><html lang='en'><head><meta charset='utf-8'>",
        f"<title>FLATSIM campaign {esc(cid)}</title>",
        "<style>body{font-family:sans-serif;margin:2em;max-width:1200px}"
        "table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:3px 8px}"
        ".failed{color:#b00}img{max-width:100%}figure{display:inline-block;margin:4px;"
        "width:31%;vertical-align:top}</style></head><body>",
        f"<h1>FLATSIM campaign {esc(cid)}</h1>",
        f"<p>Status <b>{esc(doc['status'])}</b>, priority {doc['priority']}; "
        f"{t['frames_done']}/{t['frames']} frames done, {t['frames_failed']} failed; "
        f"{t['pairs_done']} pairs done ({t['pairs_computed']} computed in this campaign, "
        f"the rest found done), {t['pairs_failed']} failed; {t['dropped_dates']} dropped "
        f"date(s). Throughput: {f'{rate:.0f} pairs/hour' if rate else 'n/a'}; workers: "
        f"{len(doc['workers'])}.</p>",
        "<p>Conventions: LOS displacement and velocity in metres (per year), positive "
        "towards the satellite; interferograms ifg_ij = slc_i conj(slc_j), i earlier. "
        "Catalogue: <a href='../catalog.json'>catalog.json</a> (STAC).</p>",
    ]
    if overview:
        parts.append(f"<h2>Velocity overview</h2><img src='{overview.name}' "
                     "alt='velocity overview'>")
    if prog:
        parts.append(f"<h2>Throughput</h2><img src='{prog.name}' alt='pairs over time'>")
    parts.append("<h2>Frames</h2><table><tr><th>frame</th><th>track</th><th>status</th>"
                 "<th>dates</th><th>pairs used / planned</th><th>failed pairs</th>"
                 "<th>dropped dates</th><th>network</th><th>velocity checksum</th></tr>")
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
            f"<td>{esc(fr['status'])}</td><td>{fr['dates'] or '?'}</td>"
            f"<td>{meta.get('pairs_used', fr['pairs_done'])} / "
            f"{fr['pairs_planned'] or '?'}</td>"
            f"<td>{esc(', '.join(fr['failed_pairs'])) or '-'}</td>"
            f"<td>{esc(dropped) or '-'}</td><td>{esc(gap_txt)}</td>"
            f"<td><code>{esc(meta.get('velocity_sha256', '-')[:16])}</code></td></tr>")
    parts.append("</table>")
    if doc["failures"]:
        parts.append("<h2>Failures</h2><ul>")
        for f in doc["failures"]:
            what = f"pair {f['pair']}" if f["pair"] else f["step"]
            parts.append(f"<li class='failed'>{esc(f['frame'])} {esc(what)}: "
                         f"{f['failures']} failure(s){' — given up' if f['final'] else ''}: "
                         f"{esc(str(f['error']))}</li>")
        parts.append("</ul>")
    for fr in doc["frames"]:
        pngs = []
        for name in ("network", "velocity", "temporal_coherence", "mean_coherence"):
            src = root / fr["id"] / f"{name}.png"
            if src.is_file():
                dest = out / f"{fr['id']}_{name}.png"
                shutil.copyfile(src, dest)
                pngs.append((name, dest.name))
        if pngs:
            parts.append(f"<h3>{esc(fr['id'])}</h3>")
            parts += [f"<figure><img src='{p}' alt='{n}'><figcaption>{n.replace('_', ' ')}"
                      "</figcaption></figure>" for n, p in pngs]
    parts.append("</body></html>")
    index = out / "index.html"
    write_text(index, "\n".join(parts))
    return index
