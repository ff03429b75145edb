"""Peak memory and time of a large GDM-SAR job: a simulated 100-date 2000 x 2000 stack.

Simulates the stack (dates written one at a time, so the simulator itself stays small),
then runs the whole pipeline in a child process and prints the wall time of each stage
and the child's peak resident memory (``ru_maxrss``). Target: peak RSS < 4 GB. It prints;
it asserts nothing. Every size is configurable, for machines with less disk or time
(the full stack takes 3.2 GB of SLCs).

Usage::

    .venv/bin/python benchmarks/bench_sar_memory.py [--dates 100] [--size 2000]
        [--looks 2 8] [--block-mb 256] [--workdir DIR] [--keep] [--stack DIR]
"""

from __future__ import annotations

import argparse
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

_CHILD = """
import json, resource, sys, time
from gdm_sar.config import SarConfig
from gdm_sar.pipeline import run
stages, peaks = {}, {}  # peak RSS (GB) reached by the end of each stage
t0 = time.perf_counter()
def progress(fraction, message):
    # the pipeline reports 0-0.4 interferograms, 0.4-0.75 unwrapping, 0.75-0.95 inversion
    stage = ("interferograms" if fraction <= 0.4 else "unwrapping" if fraction <= 0.75
             else "inversion" if fraction <= 0.95 else "products")
    stages[stage] = time.perf_counter() - t0
    peaks[stage] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2, 3)
stack, out, la, lr, block = sys.argv[1:6]
run(SarConfig(stack=stack, out=out, azimuth_looks=int(la), range_looks=int(lr),
              block_mb=int(block)), progress=progress)
ends = dict(stages)
prev, spans = 0.0, {}
for name, end in ends.items():
    spans[name] = round(end - prev, 1)
    prev = end
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2
print(json.dumps({"stages_s": spans, "peak_rss_gb_by_stage": peaks,
                  "peak_rss_gb": round(peak, 3)}))
"""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dates", type=int, default=100)
    ap.add_argument("--size", type=int, default=2000)
    ap.add_argument("--looks", type=int, nargs=2, default=[2, 8],
                    metavar=("AZIMUTH", "RANGE"))
    ap.add_argument("--block-mb", type=int, default=256)
    ap.add_argument("--workdir", type=Path, default=None)
    ap.add_argument("--stack", type=Path, default=None,
                    help="Process this existing stack instead of simulating one.")
    ap.add_argument("--keep", action="store_true", help="Keep the stack and products.")
    args = ap.parse_args()
    from simulators.sar import SimulateSarConfig, simulate

    work = Path(args.workdir or tempfile.mkdtemp(prefix="gdm-sar-mem-"))
    try:
        if args.stack is None:
            t0 = time.perf_counter()
            sim = simulate(SimulateSarConfig(out=work / "sim", dates=args.dates,
                                             size=args.size))
            stack_dir = sim.stack_dir
            print(f"simulated {args.dates} dates of {args.size}x{args.size} in "
                  f"{time.perf_counter() - t0:.0f} s", flush=True)
        else:
            stack_dir = args.stack
        files = sorted(stack_dir.glob("*.tif"))
        stack_gb = sum(p.stat().st_size for p in files) / 1e9
        print(f"stack: {len(files)} SLCs, {stack_gb:.2f} GB", flush=True)
        out = work / "out"
        shutil.rmtree(out, ignore_errors=True)
        t0 = time.perf_counter()
        child = subprocess.run(
            [sys.executable, "-c", _CHILD, str(stack_dir), str(out), str(args.looks[0]),
             str(args.looks[1]), str(args.block_mb)],
            check=True, cwd=ROOT, capture_output=True, text=True)
        t_run = time.perf_counter() - t0
        peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024**2  # kB -> GB
        n_pairs = len(list((out / "interferograms").iterdir()))
        print(f"pipeline: {t_run:.0f} s for {n_pairs} pairs, looks "
              f"{args.looks[0]}x{args.looks[1]}, block {args.block_mb} MiB")
        print(f"stages: {child.stdout.strip().splitlines()[-1]}")
        print(f"peak RSS {peak:.2f} GB (target < 4 GB)")
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
