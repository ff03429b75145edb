"""Campaign monitoring: per-frame progress, failures, throughput, estimated completion.

Everything is computed from the step records (:mod:`flatsim.state`), so the command
line, the web page and the OGC process all show the same figures:

- progress of a frame: finished steps over its steps (ingest + pairs + inversion +
  packaging; a pair that failed for good counts as finished);
- throughput: pairs computed (not skipped) per hour, over the span from the first pair
  start to the last pair end (all workers together), and over the last 10 minutes;
- ETA: the pairs left (frames not ingested yet count the pairs their network rules
  give) over the recent throughput, plus the inversions left at their mean duration.
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

from flatsim import spec_of
from flatsim.spec import CampaignSpec

__all__ = ["campaign_status", "format_status", "expected_pairs"]

_FINISHED = ("finished", "finished_with_failures")
_RECENT = dt.timedelta(minutes=10)


def expected_pairs(spec: CampaignSpec, n_dates: int) -> int:
    """Pairs the network rules give ``n_dates`` regularly spaced dates (an estimate)."""
    from kernels.timeseries import select_pairs

    if n_dates < 2:
        return 0
    step = spec.simulation.interval_days
    dates = [spec.start + dt.timedelta(days=step * k) for k in range(n_dates)]
    rules = spec.network
    try:
        return len(select_pairs(dates, rules.mode, max_days=rules.max_days,
                                neighbours=rules.neighbours))
    except ValueError:
        return 0


def _network_report(out_dir: str, frame: str) -> dict | None:
    try:
        doc = json.loads((Path(out_dir) / frame / "ts" / "inversion.json").read_text())
    except (OSError, ValueError):
        return None
    return doc.get("network")


def _iso(t: dt.datetime | None) -> str | None:
    return None if t is None else t.replace(tzinfo=dt.UTC).isoformat(timespec="seconds")


def campaign_status(state: Any, cid: str, now: dt.datetime | None = None) -> dict:
    """The status document of campaign ``cid`` (KeyError if unknown)."""
    row = state.campaign(cid)
    if row is None:
        raise KeyError(f"no campaign {cid!r}")
    spec = spec_of(row)
    now = now or dt.datetime.now(dt.UTC).replace(tzinfo=None)
    steps = state.steps(cid)
    by_frame: dict[str, list[dict]] = {}
    for s in steps:
        by_frame.setdefault(s["frame_id"], []).append(s)
    frames = []
    failures = []
    known_pairs = []
    remaining_pairs = 0
    remaining_inversions = 0
    for f in spec.all_frames():
        rows = by_frame.get(f.id, [])
        kinds = {k: [r for r in rows if r["kind"] == k]
                 for k in ("ingest", "pair", "invert", "package")}
        ing = kinds["ingest"][0] if kinds["ingest"] else None
        info = ing["info"] if ing and ing["status"] == "done" else None
        pairs = kinds["pair"]
        n_planned = len(info["pairs"]) if info else None
        n_done = sum(r["status"] == "done" for r in pairs)
        n_failed = sum(r["status"] == "failed" for r in pairs)
        n_running = sum(r["status"] == "running" for r in pairs)
        inv = kinds["invert"][0] if kinds["invert"] else None
        pkg = kinds["package"][0] if kinds["package"] else None
        for r in rows:
            if r["status"] == "failed" or (r["failures"] and r["status"] != "done"):
                failures.append({"frame": f.id, "step": r["kind"], "pair": r["pair"],
                                 "failures": r["failures"], "final": r["status"] == "failed",
                                 "error": r["error"]})
        if ing and ing["status"] == "failed" or any(
                x is not None and x["status"] == "failed" for x in (inv, pkg)):
            status = "failed"
        elif pkg is not None and pkg["status"] == "done":
            status = "done"
        elif inv is not None and inv["status"] in ("running", "done"):
            status = "packaging" if inv["status"] == "done" else "inverting"
        elif info is not None:
            status = "interferograms"
        elif ing is not None and ing["status"] == "running":
            status = "ingesting"
        else:
            status = "pending"
        if n_planned is None:
            est = expected_pairs(spec, spec.simulation.dates) if f.source == "simulated" \
                else None
            total_steps = None
            finished = 0
        else:
            known_pairs.append(n_planned)
            est = n_planned
            total_steps = n_planned + 3
            finished = 1 + n_done + n_failed + sum(
                x is not None and x["status"] == "done" for x in (inv, pkg))
        if status not in ("done", "failed"):
            if est is not None:
                remaining_pairs += max(0, est - n_done - n_failed)
            if inv is None or inv["status"] != "done":
                remaining_inversions += 1
        gaps = None
        if inv is not None and inv["status"] == "done":
            gaps = _network_report(row["out_dir"], f.id)
        frames.append({
            "id": f.id, "track": f.track, "pass_direction": f.pass_direction,
            "status": status,
            "progress": (finished / total_steps) if total_steps else 0.0,
            "dates": len(info["dates"]) if info else None,
            "dropped_dates": info["dropped"] if info else [],
            "pairs_planned": n_planned, "pairs_done": n_done, "pairs_failed": n_failed,
            "pairs_running": n_running,
            "failed_pairs": [r["pair"] for r in pairs if r["status"] == "failed"],
            "network_gaps": gaps,
        })
    # unknown frames of folder source: the mean of the known ones
    unknown_folder = sum(1 for fr in frames if fr["pairs_planned"] is None
                         and spec.frame(fr["id"]).source == "folder"
                         and fr["status"] not in ("done", "failed"))
    if unknown_folder and known_pairs:
        remaining_pairs += unknown_folder * round(sum(known_pairs) / len(known_pairs))
    computed = [s for s in steps if s["kind"] == "pair" and s["status"] == "done"
                and not s["skipped"] and s["started"] and s["finished"]]
    rate = recent_rate = None
    if computed:
        t0 = min(s["started"] for s in computed)
        t1 = max(s["finished"] for s in computed)
        span = max((t1 - t0).total_seconds(), 1e-3)
        rate = len(computed) / span * 3600.0
        recent = [s for s in computed if s["finished"] >= now - _RECENT]
        if len(recent) >= 2:
            r0 = min(s["started"] for s in recent)
            r1 = max(s["finished"] for s in recent)
            recent_rate = len(recent) / max((r1 - r0).total_seconds(), 1e-3) * 3600.0
    inv_times = [s["seconds"] for s in steps if s["kind"] == "invert" and s["status"] == "done"
                 and not s["skipped"] and s["seconds"]]
    workers = sorted({s["worker"] for s in steps if s["worker"]})
    eta_s = None
    use_rate = recent_rate or rate
    if row["status"] in _FINISHED:
        eta_s = 0.0
    elif use_rate and row["status"] == "running":
        eta_s = remaining_pairs / use_rate * 3600.0
        if inv_times:
            eta_s += remaining_inversions * sum(inv_times) / len(inv_times) / max(
                1, len(workers))
    n_frames = len(frames)
    totals = {
        "frames": n_frames,
        "frames_done": sum(fr["status"] == "done" for fr in frames),
        "frames_failed": sum(fr["status"] == "failed" for fr in frames),
        "pairs_done": sum(fr["pairs_done"] for fr in frames),
        "pairs_failed": sum(fr["pairs_failed"] for fr in frames),
        "pairs_computed": len(computed),
        "pairs_remaining": remaining_pairs,
        "dropped_dates": sum(len(fr["dropped_dates"]) for fr in frames),
    }
    progress = sum(fr["progress"] for fr in frames) / n_frames if n_frames else 0.0
    return {
        "id": cid, "name": row["name"], "status": row["status"], "message": row["message"],
        "priority": row["priority"], "out_dir": row["out_dir"],
        "created": _iso(row["created"]), "updated": _iso(row["updated"]),
        "progress": progress, "frames": frames, "totals": totals, "failures": failures,
        "throughput_pairs_per_hour": rate, "recent_pairs_per_hour": recent_rate,
        "workers": workers,
        "eta_seconds": eta_s,
        # a finished campaign's "ETA" is when it finished, not a time that moves with now
        "eta": (_iso(row["updated"]) if row["status"] in _FINISHED
                else _iso(now + dt.timedelta(seconds=eta_s)) if eta_s is not None else None),
    }


def format_status(doc: dict) -> str:
    """A plain-text rendering of :func:`campaign_status` for the terminal."""
    t = doc["totals"]
    rate = doc["throughput_pairs_per_hour"]
    lines = [
        f"campaign {doc['id']} ({doc['status']}), priority {doc['priority']}: "
        f"{doc['progress'] * 100:.0f}% — frames {t['frames_done']}/{t['frames']} done"
        + (f", {t['frames_failed']} failed" if t["frames_failed"] else ""),
        f"pairs: {t['pairs_done']} done, {t['pairs_failed']} failed, "
        f"~{t['pairs_remaining']} to go; throughput "
        + (f"{rate:.0f} pairs/h" if rate else "n/a")
        + (f"; finished {doc['eta']}" if doc["status"] in _FINISHED
           else f"; ETA {doc['eta']} ({doc['eta_seconds']:.0f} s)"
           if doc["eta_seconds"] is not None else "; ETA n/a"),
        f"{'frame':<16} {'status':<15} {'progress':>8} {'dates':>5} {'pairs':>11} "
        f"{'failed':>6}  dropped dates",
    ]
    for fr in doc["frames"]:
        planned = fr["pairs_planned"] if fr["pairs_planned"] is not None else "?"
        dropped = ", ".join(f"{d['date']} ({d['reason']})" for d in fr["dropped_dates"])
        lines.append(f"{fr['id']:<16} {fr['status']:<15} {fr['progress'] * 100:7.0f}% "
                     f"{fr['dates'] if fr['dates'] is not None else '?':>5} "
                     f"{fr['pairs_done']:>5}/{planned:<5} {fr['pairs_failed']:>6}  "
                     f"{dropped or '-'}")
    for f in doc["failures"]:
        what = f"pair {f['pair']}" if f["pair"] else f["step"]
        lines.append(f"failure: {f['frame']} {what} x{f['failures']}"
                     f"{' (given up)' if f['final'] else ''}: {f['error']}")
    return "\n".join(lines)
