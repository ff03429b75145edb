"""A Sentinel-1 IW frame at real size: ingestion, pairs, memory, throughput, CPU-hours.

Simulates a frame of 3 subswaths x 9 bursts of 1,500 x 21,000 samples per date
(:mod:`simulators.sar_frame`: CInt16 SAFE products, 3.4 GB a date), then runs, each in a
child process whose peak resident memory (``ru_maxrss``) is reported:

- ``ingest``: the shared ingestion step (:func:`insar.ingest.ingest`, all subswaths
  merged, bursts streamed) of every date into a coregistered CFloat32 stack;
- ``pair``: the shared pair step (:func:`insar.pairs.process_pair`) of the first pair at
  FLATSIM's looks (interferogram and coherence at ``--looks``, unwrapping and the series
  grid ``--series-looks`` times coarser);
- ``throughput``: the pair step of ``--pairs`` pairs by 1 worker, then by 2 workers at
  once (pairs/hour each way).

It prints the figures and the CPU-hours they imply for a region of ``--area-km2`` over
``--years`` of acquisitions every 6 or 12 days (nearest-3 network, both pass directions).
It asserts nothing. Disk: about 3.4 GB of products and 5.5 GB of stack per date under
``--root``; ``--clean`` removes them at the end.

Usage::

    .venv/bin/python benchmarks/bench_frame_scale.py --root /path/to/scratch \\
        [--phases simulate,ingest,pair,throughput] [--dates 2] [--bursts 9] \\
        [--samples 21000] [--lines 1500] [--json out.json] [--clean]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

_CHILD = r"""
import json, resource, sys, time
args = json.loads(sys.argv[1])
t0 = time.perf_counter(); c0 = time.process_time()
phase = args["phase"]
out = {}
if phase == "simulate":
    from simulators.sar_frame import FrameScaleConfig, simulate_frame
    simulate_frame(FrameScaleConfig(out=args["root"] + "/sim", dates=args["dates"],
        bursts=args["bursts"], samples=args["samples"], lines_per_burst=args["lines"],
        burst_cycle_lines=args["cycle"], swath_overlap=args["overlap"]))
elif phase == "ingest":
    from insar.ingest import IngestConfig, ingest
    r = args["root"]
    res = ingest(IngestConfig(safe=r + "/sim/safe", out=r + "/stack", orbits=r + "/sim/orbits",
                              dem=r + "/sim/dem.tif", swath="all", block_lines=args["block_lines"],
                              geometry_step=16))
    rep = json.load(open(r + "/stack/ingest_report.json"))
    out = {"grid": rep["grid"], "continuity": rep["swath_continuity"],
           "esd": [e.get("residual_lines") for e in rep["esd"]]}
elif phase == "pair":
    import datetime as dt, rasterio
    from pathlib import Path
    from insar.options import ProcessingOptions
    from insar.pairs import process_pair
    r = Path(args["root"])
    slcs = sorted((r / "stack").glob("slc_*.tif"))
    i, j = args["pair"]
    la, lr = args["looks"]
    opts = ProcessingOptions(azimuth_looks=la, range_looks=lr,
                             series_looks=args["series_looks"])
    with rasterio.open(slcs[i]) as ds:
        crs, tr = ds.crs, ds.transform
    folder = r / "pairs" / f"{args['tag']}_{i}_{j}"
    doc = process_pair(slcs[i], slcs[j], folder, folder.name, (dt.date(2023, 1, 1),
                       dt.date(2023, 1, 13)), opts, crs, tr, args["budget"])
    out = {k: doc[k] for k in ("components", "unwrapped_fraction", "mean_coherence")}
    out["grids"] = doc.get("grids")
out.update(phase=phase, seconds=time.perf_counter() - t0, cpu_s=time.process_time() - c0,
           peak_rss_mib=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
print("RESULT " + json.dumps(out))
"""


def _run(args: dict) -> dict:
    res = subprocess.run([sys.executable, "-W", "ignore", "-c", _CHILD, json.dumps(args)],
                         capture_output=True, text=True, cwd=ROOT)
    if res.returncode != 0:
        raise RuntimeError(f"{args['phase']} failed:\n{res.stderr[-3000:]}")
    line = [ln for ln in res.stdout.splitlines() if ln.startswith("RESULT ")][-1]
    return json.loads(line[7:])


def _start(args: dict) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-W", "ignore", "-c", _CHILD, json.dumps(args)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            cwd=ROOT)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--root", type=Path, required=True)
    p.add_argument("--phases", default="simulate,ingest,pair,throughput")
    p.add_argument("--dates", type=int, default=2)
    p.add_argument("--bursts", type=int, default=9)
    p.add_argument("--samples", type=int, default=21000)
    p.add_argument("--lines", type=int, default=1500)
    p.add_argument("--cycle", type=int, default=1342)
    p.add_argument("--overlap", type=int, default=1500)
    p.add_argument("--block-lines", type=int, default=256)
    p.add_argument("--looks", type=int, nargs=2, default=(2, 8), metavar=("AZ", "RG"))
    p.add_argument("--series-looks", type=int, default=4)
    p.add_argument("--budget-mb", type=int, default=1024)
    p.add_argument("--pairs", type=int, default=2)
    p.add_argument("--area-km2", type=float, default=250_000)
    p.add_argument("--years", type=float, default=5)
    p.add_argument("--json", type=Path)
    p.add_argument("--clean", action="store_true")
    a = p.parse_args()
    a.root.mkdir(parents=True, exist_ok=True)
    base = {"root": str(a.root), "dates": a.dates, "bursts": a.bursts, "samples": a.samples,
            "lines": a.lines, "cycle": a.cycle, "overlap": a.overlap,
            "block_lines": a.block_lines, "looks": list(a.looks),
            "series_looks": a.series_looks, "budget": a.budget_mb * 2**20, "tag": "one"}
    phases = a.phases.split(",")
    report: dict = {"load_before": os.getloadavg(), "cpus": os.cpu_count(),
                    "config": {k: v for k, v in base.items() if k != "root"}}
    print(f"load average {os.getloadavg()} on {os.cpu_count()} cores (shared machine)")
    if "simulate" in phases:
        report["simulate"] = r = _run({**base, "phase": "simulate"})
        print(f"simulate {a.dates} dates: {r['seconds']:.0f} s, peak {r['peak_rss_mib']:.0f} MiB")
    if "ingest" in phases:
        shutil.rmtree(a.root / "stack", ignore_errors=True)
        report["ingest"] = r = _run({**base, "phase": "ingest"})
        print(f"ingest {a.dates} dates ({r['grid']['cols']} x {r['grid']['rows']}): "
              f"{r['seconds']:.0f} s ({r['seconds'] / a.dates:.0f} s per date), CPU "
              f"{r['cpu_s']:.0f} s, peak {r['peak_rss_mib']:.0f} MiB; continuity "
              f"{[c['phase_step_rad'] for c in r['continuity']]} rad")
    if "pair" in phases:
        shutil.rmtree(a.root / "pairs", ignore_errors=True)
        report["pair"] = r = _run({**base, "phase": "pair", "pair": [0, 1]})
        print(f"pair at looks {a.looks} (series x{a.series_looks}): {r['seconds']:.0f} s, "
              f"CPU {r['cpu_s']:.0f} s, peak {r['peak_rss_mib']:.0f} MiB, unwrapped "
              f"{r['unwrapped_fraction']:.1%}")
    if "throughput" in phases:
        n = a.pairs
        shutil.rmtree(a.root / "pairs", ignore_errors=True)
        t0 = time.perf_counter()
        for q in range(n):
            _run({**base, "phase": "pair", "pair": [0, 1], "tag": f"seq{q}"})
        one = time.perf_counter() - t0
        t0 = time.perf_counter()
        procs = [_start({**base, "phase": "pair", "pair": [0, 1], "tag": f"par{q}"})
                 for q in range(n)]
        peaks = []
        for pr in procs:
            so, se = pr.communicate()
            if pr.returncode != 0:
                raise RuntimeError(se[-3000:])
            peaks.append(json.loads([ln for ln in so.splitlines()
                                     if ln.startswith("RESULT ")][-1][7:])["peak_rss_mib"])
        two = time.perf_counter() - t0
        report["throughput"] = {"pairs": n, "one_worker_s": one, "two_workers_s": two,
                                "pairs_per_hour_1": n * 3600 / one,
                                "pairs_per_hour_2": n * 3600 / two, "peaks_mib": peaks}
        print(f"throughput: 1 worker {n * 3600 / one:.0f} pairs/h, 2 workers "
              f"{n * 3600 / two:.0f} pairs/h ({one / two:.2f}x)")
    if "ingest" in report and "pair" in report:
        # per-burst costs scaled to a 9-burst frame when fewer bursts were simulated
        scale = 9 / a.bursts
        ing = report["ingest"]["cpu_s"] / a.dates * scale
        pair = report["pair"]["cpu_s"] * scale
        report["per_frame_of_9_bursts"] = {"ingest_cpu_s_per_date": ing,
                                           "pair_cpu_s": pair, "scale": scale}
        frame_km2 = 250 * 170  # one IW frame: ~250 km across track, 9 bursts along
        frames = math.ceil(a.area_km2 / frame_km2 * 1.15) * 2  # overlaps, asc + desc
        out = {}
        for interval in (6, 12):
            dates = int(a.years * 365.25 / interval) + 1
            pairs = 3 * dates - 6
            hours = frames * (dates * ing + pairs * pair) / 3600
            out[f"{interval}d"] = {"frames": frames, "dates": dates, "pairs": pairs,
                                   "cpu_hours": hours}
            print(f"{a.area_km2:.0f} km2, {a.years:g} years every {interval} days: {frames} "
                  f"frames x ({dates} dates x {ing:.0f} CPU-s + {pairs} pairs x {pair:.0f} "
                  f"CPU-s) = {hours:,.0f} CPU-hours (inversion not counted)")
        report["cpu_hours"] = out
    report["load_after"] = os.getloadavg()
    if a.json:
        a.json.write_text(json.dumps(report, indent=2))
    if a.clean:
        shutil.rmtree(a.root, ignore_errors=True)


if __name__ == "__main__":
    main()
