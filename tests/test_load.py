"""Load on a real ``gdm serve`` (127.0.0.1 only): 500 echo submissions while 20 clients
poll job status -> not a single 5xx or refused connection.

Embedded default (SQLite job store and broker, two local workers): the setting with
the least concurrency headroom. Prints submissions/s and p50/p95 latencies.
"""

from __future__ import annotations

import random
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import requests

from .serverutil import running_server

pytestmark = [pytest.mark.integration, pytest.mark.slow]

SUBMISSIONS = 500
SUBMITTERS = 8
POLLERS = 20


def _pct(values: list[float], q: float) -> float:
    return float(np.percentile(values, q) * 1000.0) if values else float("nan")


def test_500_submissions_with_20_pollers_no_5xx():
    with running_server() as base:
        ids: list[str] = []
        lock = threading.Lock()
        codes: Counter[int] = Counter()
        errors: list[str] = []
        submit_lat: list[float] = []
        poll_lat: list[float] = []
        done = threading.Event()
        local = threading.local()

        def session() -> requests.Session:
            if not hasattr(local, "s"):
                local.s = requests.Session()
            return local.s

        def call(method: str, url: str, lat: list[float], **kw) -> requests.Response | None:
            t0 = time.perf_counter()
            try:
                resp = session().request(method, url, timeout=60, **kw)
            except requests.RequestException as exc:
                with lock:
                    errors.append(f"{method} {url}: {exc}")
                return None
            dt_s = time.perf_counter() - t0
            with lock:
                codes[resp.status_code] += 1
                lat.append(dt_s)
            return resp

        def submit(k: int) -> None:
            resp = call("POST", f"{base}/ogcapi/processes/echo/execution", submit_lat,
                        json={"inputs": {"message": f"load {k}"}},
                        headers={"Prefer": "respond-async"})
            if resp is not None and resp.status_code == 201:
                with lock:
                    ids.append(resp.json()["jobID"])

        def poll(seed: int) -> None:
            rng = random.Random(seed)
            n = 0
            while not done.is_set():
                n += 1
                with lock:
                    job_id = rng.choice(ids) if ids else None
                if n % 10 == 0 or job_id is None:
                    call("GET", f"{base}/ogcapi/jobs", poll_lat,
                         params={"status": rng.choice(["accepted", "running", "successful"]),
                                 "limit": 20})
                else:
                    call("GET", f"{base}/ogcapi/jobs/{job_id}", poll_lat)

        pollers = [threading.Thread(target=poll, args=(i,), daemon=True) for i in range(POLLERS)]
        for t in pollers:
            t.start()
        t0 = time.perf_counter()
        with ThreadPoolExecutor(SUBMITTERS) as pool:
            list(pool.map(submit, range(SUBMISSIONS)))
        elapsed = time.perf_counter() - t0
        time.sleep(2.0)  # pollers keep going a little after the last submission
        done.set()
        for t in pollers:
            t.join(90)
        finished = requests.get(f"{base}/ogcapi/jobs", timeout=60,
                                params={"status": "successful", "limit": 10000}).json()["jobs"]

    print(f"\nload: {SUBMISSIONS} submissions in {elapsed:.1f} s = "
          f"{SUBMISSIONS / elapsed:.1f} submissions/s ({SUBMITTERS} submitting clients); "
          f"submit p50 {_pct(submit_lat, 50):.0f} ms p95 {_pct(submit_lat, 95):.0f} ms; "
          f"{len(poll_lat)} polls by {POLLERS} clients: p50 {_pct(poll_lat, 50):.0f} ms "
          f"p95 {_pct(poll_lat, 95):.0f} ms; status codes {dict(codes)}; "
          f"{len(finished)} jobs already successful")
    assert not errors, errors[:5]
    assert not [c for c in codes if c >= 500], dict(codes)
    assert len(ids) == len(set(ids)) == SUBMISSIONS
    assert codes[201] == SUBMISSIONS and codes[200] == len(poll_lat)
    assert len(poll_lat) >= POLLERS * 5
    assert len(finished) >= 1  # the workers kept working under the load
