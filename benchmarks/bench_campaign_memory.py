"""Peak memory of one FLATSIM frame whose SLC stack is larger than its memory limit.

Simulates a stack (in this process, one date at a time), then runs the frame's steps
(ingest, every pair, chunked Dask inversion, packaging) in a child process with the
campaign's ``memory_limit`` and reports the child's peak resident memory
(``ru_maxrss``) against the limit, per step. The same steps first run on a tiny stack in
another child, so that the measured one loads its Numba kernels from the on-disk cache
instead of compiling them (compilation, once per installation, takes some 60 MiB that
the memory limit does not govern; ``--cold`` skips this). It prints; it asserts nothing (the test
``tests/test_flatsim_steps.py`` runs a scaled-down case and asserts).

Full size (default): a 30-date 3500 x 3500 stack (2.7 GiB of CFloat32 SLCs: simulated
at 875 x 875 and tiled 4 x 4) under ``--memory-limit 1GB``. Scaled down (the slow
test): ``--size 512 --tile 4 --memory-limit 500MB`` (a 0.9 GiB stack).

Usage::

    .venv/bin/python benchmarks/bench_campaign_memory.py [--size 875] [--tile 4] [--dates 30]
        [--memory-limit 1GB] [--looks 8] [--neighbours 3] [--work DIR] [--keep] [--json]
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

_CHILD = r"""
import json, resource, sys, time
from pathlib import Path
from flatsim import register
from flatsim.spec import load_spec
from flatsim.state import CampaignState
from flatsim.steps import frame_job, ingest, invert, package, run_pair
spec_json, db = sys.argv[1:3]
spec = load_spec(json.loads(spec_json))
state = CampaignState(db)
cid, root, _ = register(state, spec)
job = frame_job(spec, cid, root, spec.all_frames()[0].id)
def rss():
    # VmHWM: peak RSS of this program's address space (ru_maxrss would also count what
    # the parent held when it forked us)
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
peaks, times = {"start": rss()}, {}
t = time.perf_counter()
info = ingest(job)
times["ingest"], peaks["ingest"] = time.perf_counter() - t, rss()
t = time.perf_counter()
for name in info["pair_names"]:
    run_pair(job, info, name)
times["pairs"], peaks["pairs"] = time.perf_counter() - t, rss()
t = time.perf_counter()
inv = invert(job, info)
times["invert"], peaks["invert"] = time.perf_counter() - t, rss()
t = time.perf_counter()
package(job, info, inv)
times["package"], peaks["package"] = time.perf_counter() - t, rss()
print(json.dumps({"peaks_mb": peaks, "times_s": times, "chunks": inv["chunks"],
                  "chunk_rows": inv["chunk_rows"], "grid": inv["grid"],
                  "pairs": len(info["pairs"]),
                  "ru_maxrss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""

_SIMULATE = r"""
import datetime as dt, sys
from pathlib import Path
import numpy as np, rasterio
from simulators.sar import SimulateSarConfig, simulate
out, dates, size, tile = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
sim = simulate(SimulateSarConfig(out=Path(out), dates=dates, size=size,
                                 start=dt.date(2023, 1, 1), seed=2))
if tile > 1:  # a big stack quickly: each SLC repeated tile x tile times
    for path in sorted(sim.stack_dir.glob("*.tif")):
        with rasterio.open(path) as ds:
            slc, tags, profile = ds.read(1), ds.tags(), ds.profile
        big = np.tile(slc, (tile, tile))
        profile.update(width=big.shape[1], height=big.shape[0], tiled=True,
                       blockxsize=256, blockysize=256)
        tmp = path.with_name("." + path.name + ".tmp")
        with rasterio.open(tmp, "w", **profile) as ds:
            ds.write(big, 1)
            ds.update_tags(**tags)
        tmp.replace(path)
"""


def _spec(work: Path, start: dt.date, dates: int, looks: int, args) -> dict:
    """The campaign of one frame: the stack simulated in ``work / "sim"``."""
    return {"name": "mem", "start": start.isoformat(),
            "end": (start + dt.timedelta(days=12 * dates)).isoformat(),
            "frames": [{"id": "BIG", "track": 1, "source": "folder",
                        "path": str(work / "sim" / "stack")}],
            "network": {"mode": "nearest", "neighbours": args.neighbours},
            "processing": {"azimuth_looks": looks, "range_looks": looks},
            "memory_limit": args.memory_limit, "out": str(work / "out")}


def _run_frame(work: Path, spec: dict, dates: int = 0, size: int = 0, tile: int = 1) -> dict:
    """Run the frame's steps in a child process (simulating the stack first if
    ``dates``); return the child's report."""
    if dates:
        subprocess.run([sys.executable, "-c", _SIMULATE, str(work / "sim"), str(dates),
                        str(size), str(tile)], cwd=ROOT, check=True)
    child = subprocess.run([sys.executable, "-c", _CHILD, json.dumps(spec),
                            f"sqlite:///{work / 'state.sqlite'}"],
                           cwd=ROOT, capture_output=True, text=True)
    if child.returncode != 0:
        sys.stderr.write(child.stderr)
        sys.exit(1)
    return json.loads(child.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=875, help="Simulated SLC size.")
    ap.add_argument("--tile", type=int, default=4, help="Each simulated SLC is repeated "
                    "tile x tile times (a big stack without a long simulation).")
    ap.add_argument("--dates", type=int, default=30)
    ap.add_argument("--memory-limit", default="1GB")
    ap.add_argument("--looks", type=int, default=8, help="Looks in azimuth and range.")
    ap.add_argument("--neighbours", type=int, default=3)
    ap.add_argument("--work", type=Path, default=None)
    ap.add_argument("--keep", action="store_true", help="Keep the stack and products.")
    ap.add_argument("--json", action="store_true", help="End with one JSON line.")
    ap.add_argument("--cold", action="store_true", help="No warm-up run: the measured "
                    "child may compile Numba kernels (and count that memory).")
    args = ap.parse_args()
    from flatsim.spec import parse_bytes

    work = Path(args.work or tempfile.mkdtemp(prefix="flatsim-mem-"))
    try:
        start = dt.date(2023, 1, 1)
        if not args.cold:
            _run_frame(work / "warm", _spec(work / "warm", start, 6, 2, args), 6, 64, 1)
        t0 = time.perf_counter()
        # in a child of its own: this process stays small, so the measured child does
        # not inherit a large ru_maxrss from it
        subprocess.run([sys.executable, "-c", _SIMULATE, str(work / "sim"), str(args.dates),
                        str(args.size), str(args.tile)], cwd=ROOT, check=True)
        t_sim = time.perf_counter() - t0
        stack_dir = work / "sim" / "stack"
        files = sorted(stack_dir.glob("*.tif"))
        stack_mb = sum(p.stat().st_size for p in files) / 2**20
        limit_mb = parse_bytes(args.memory_limit) / 2**20
        side = args.size * args.tile
        print(f"simulated {args.dates} dates of {side}x{side}: {stack_mb:.0f} MiB "
              f"of SLCs in {t_sim:.0f} s; memory limit {limit_mb:.0f} MiB", flush=True)
        spec = _spec(work, start, args.dates, args.looks, args)
        t0 = time.perf_counter()
        doc = _run_frame(work, spec)
        seconds = time.perf_counter() - t0
        peak_mb = max(doc["peaks_mb"].values())
        print(f"frame: {doc['pairs']} pairs, grid {doc['grid']['width']}x"
              f"{doc['grid']['height']}, inversion in {doc['chunks']} chunk(s) of "
              f"{doc['chunk_rows']} rows; {seconds:.0f} s "
              + ", ".join(f"{k} {v:.1f} s" for k, v in doc["times_s"].items()))
        print("peak RSS by the end of each step (MiB): "
              + ", ".join(f"{k} {v:.0f}" for k, v in doc["peaks_mb"].items()))
        print(f"ru_maxrss of the child (getrusage): {doc['ru_maxrss_mb']:.0f} MiB")
        verdict = "under" if peak_mb < limit_mb else "OVER"
        print(f"peak RSS {peak_mb:.0f} MiB vs limit {limit_mb:.0f} MiB ({verdict}); stack "
              f"{stack_mb:.0f} MiB = {stack_mb / limit_mb:.1f} x the limit")
        if args.json:
            print(json.dumps({"stack_mb": stack_mb, "limit_mb": limit_mb,
                              "peak_rss_mb": peak_mb,
                              "ru_maxrss_mb": doc["ru_maxrss_mb"], "chunks": doc["chunks"],
                              "seconds": seconds, "peaks_mb": doc["peaks_mb"]}))
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
