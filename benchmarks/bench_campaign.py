"""FLATSIM campaign throughput with 1 and then 2 Celery workers on Redis.

Runs the same simulated campaign (``--frames`` frames x ``--dates`` dates of
``--size`` px, nearest-3 network) twice under two names, first with one ``celery
worker`` on the batch queue, then with two, and prints the pairs computed per hour
(from the campaign's step records: pairs over the span from the first pair's start to
the last pair's end), the wall time of each campaign, how busy the workers were (step
time over wall time: below 100 % means waiting on the broker or the state database),
the mean time of a pair step (it grows when the CPUs are shared) and the 2-to-1 ratio.
Each worker gets ``--threads`` numerical threads (Numba, BLAS), so that "one worker" means one
core's worth of work. It prints; it asserts nothing.

Needs Redis on 127.0.0.1:6379 (database ``--redis-db``, a unique queue prefix).

Usage::

    .venv/bin/python benchmarks/bench_campaign.py [--frames 4] [--dates 30] [--size 64]
        [--threads 1] [--redis-db 15]
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def _run(n_workers: int, args: argparse.Namespace, env: dict, work: Path) -> dict:
    from flatsim.monitor import campaign_status
    from flatsim.spec import load_spec
    from flatsim.state import get_state
    from workflows.campaign_tasks import start
    from workflows.settings import get_settings
    from workflows.worker import start_worker, stop_worker, wait_ready

    settings = get_settings()
    state = get_state(settings.database_url)
    threads = str(args.threads)
    wenv = {**env, "NUMBA_NUM_THREADS": threads, "OMP_NUM_THREADS": threads,
            "OPENBLAS_NUM_THREADS": threads, "MKL_NUM_THREADS": threads}
    procs = []
    for k in range(n_workers):
        ready = work / f"w{n_workers}-{k}.ready"
        procs.append((start_worker("batch", env=wenv, ready_file=ready,
                                   log_file=work / f"w{n_workers}-{k}.log",
                                   loglevel="WARNING"), ready))
    try:
        for p, ready in procs:
            wait_ready(ready, p, timeout=120)
        spec = load_spec({
            "name": f"bench-w{n_workers}", "start": "2023-01-01", "end": "2025-12-31",
            "frames": [{"id": f"F{k + 1}", "track": k + 1} for k in range(args.frames)],
            "simulation": {"dates": args.dates, "size": args.size, "seed": 7},
            "network": {"mode": "nearest", "neighbours": 3}, "memory_limit": "1GB",
            "out": str(work / f"w{n_workers}")})
        t0 = time.monotonic()
        cid, _, _ = start(spec)
        while not state.campaign(cid)["status"].startswith("finished"):
            if time.monotonic() - t0 > args.timeout:
                raise SystemExit(f"campaign {cid} not finished after {args.timeout} s")
            time.sleep(0.5)
        wall = time.monotonic() - t0
        doc = campaign_status(state, cid)
        rows = [r for r in state.steps(cid) if r["seconds"] and not r["skipped"]]
        busy = sum(r["seconds"] for r in rows)
        pair_s = [r["seconds"] for r in rows if r["kind"] == "pair"]
    finally:
        for p, _ in procs:
            stop_worker(p, timeout=5)
    return {"workers": n_workers, "wall_s": wall, "pairs": doc["totals"]["pairs_done"],
            "pairs_per_hour": doc["throughput_pairs_per_hour"],
            "campaign_pairs_per_hour": doc["totals"]["pairs_done"] / wall * 3600,
            "busy": busy / (wall * n_workers), "pair_s": sum(pair_s) / len(pair_s)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--frames", type=int, default=4)
    ap.add_argument("--dates", type=int, default=30)
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--threads", type=int, default=1, help="Numerical threads per worker.")
    ap.add_argument("--redis-db", type=int, default=15)
    ap.add_argument("--timeout", type=float, default=1800)
    args = ap.parse_args()
    import redis

    client = redis.Redis(host="127.0.0.1", port=6379, db=args.redis_db)
    client.flushdb()
    work = Path(tempfile.mkdtemp(prefix="flatsim-bench-"))
    url = f"redis://127.0.0.1:6379/{args.redis_db}"
    env = {"GDM_HOME": str(work / "home"), "GDM_BROKER_URL": url, "GDM_RESULT_BACKEND": url,
           "GDM_QUEUE_PREFIX": f"bench{uuid.uuid4().hex[:6]}-"}
    os.environ.update(env)
    from workflows.settings import get_settings

    get_settings().ensure_dirs()
    load0 = os.getloadavg()[0]
    try:
        results = [_run(n, args, env, work) for n in (1, 2)]
    finally:
        client.flushdb()
        client.close()
        shutil.rmtree(work, ignore_errors=True)
    print(f"campaign: {args.frames} frames x {args.dates} dates, {args.size} px, "
          f"{args.threads} numerical thread(s) per worker, {os.cpu_count()} CPU(s); "
          f"load average before {load0:.2f}, after {os.getloadavg()[0]:.2f} (other "
          "processes on the machine skew the ratio)")
    for r in results:
        print(f"{r['workers']} worker(s): {r['pairs']} pairs, {r['pairs_per_hour']:.0f} "
              f"pairs/h (pair steps), {r['campaign_pairs_per_hour']:.0f} pairs/h "
              f"(whole campaign, {r['wall_s']:.1f} s); workers busy {r['busy']:.0%} of the "
              f"time, {r['pair_s'] * 1000:.0f} ms per pair step")
    one, two = results
    print(f"ratio 2/1 workers: {two['pairs_per_hour'] / one['pairs_per_hour']:.2f} (pair "
          f"steps), {two['campaign_pairs_per_hour'] / one['campaign_pairs_per_hour']:.2f} "
          "(whole campaign)")


if __name__ == "__main__":
    main()
