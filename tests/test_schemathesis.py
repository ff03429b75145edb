"""Schemathesis against the OpenAPI document a real ``gdm serve`` serves at /ogcapi/api.

Every operation gets a bounded number of generated requests, valid ones (positive) and
invalid ones (negative). The check that matters is ``not_a_server_error`` (no 5xx); the
answers must also conform to the document (status codes, content types, response
schemas), which keeps the served OpenAPI document honest.

The server runs on a Redis broker under a queue prefix of its own with no worker, so the
generated jobs are recorded and queued but never executed: no generated callback URL is
ever called and no generated input reference is ever fetched (nothing but 127.0.0.1 is
contacted). Synchronous executions wait ``GDM_SYNC_TIMEOUT=0.3`` s, then answer 201.
Scene searches go to the local fake STAC and ASF archives of the tests.
"""

from __future__ import annotations

import uuid
from collections import Counter

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable

from workflows.processes import PROCESSES

from .fakeasf import running_asf
from .fakestac import running_stac
from .serverutil import running_server

pytestmark = [pytest.mark.integration, pytest.mark.slow]

REDIS = "redis://127.0.0.1:6379/12"
EXAMPLES = 30  # per operation and generation mode


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    redis = pytest.importorskip("redis")
    client = redis.Redis.from_url(REDIS)
    try:
        client.ping()
    except redis.RedisError:
        pytest.skip("no Redis on 127.0.0.1:6379")
    prefix = f"schemathesis-{uuid.uuid4().hex[:8]}-"
    env = {"GDM_BROKER_URL": REDIS, "GDM_RESULT_BACKEND": REDIS, "GDM_QUEUE_PREFIX": prefix,
           "GDM_SYNC_TIMEOUT": "0.3",
           "GDM_PLEIADES_INDEX": str(tmp_path_factory.mktemp("pleiades") / "index.json")}
    try:
        with running_stac() as stac, running_asf() as asf, \
                running_server({**env, "GDM_STAC_URL": stac.url, "GDM_ASF_URL": asf.url}) as url:
            yield url
    finally:
        for key in client.scan_iter(f"*{prefix}*"):
            client.delete(key)
        client.close()


def _fuzz(op, mode, cases: Counter, codes: Counter, failures: list[str]) -> None:
    """Send up to EXAMPLES generated requests for one operation and generation mode."""
    from schemathesis.checks import not_a_server_error
    from schemathesis.specs.openapi.checks import (
        content_type_conformance,
        response_schema_conformance,
        status_code_conformance,
    )

    CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance,
              response_schema_conformance]
    @settings(max_examples=EXAMPLES, deadline=None, database=None, derandomize=True,
              suppress_health_check=list(HealthCheck), print_blob=False)
    @given(case=op.as_strategy(generation_mode=mode))
    def run(case) -> None:
        cases[mode.value] += 1
        try:
            resp = case.call_and_validate(checks=CHECKS, timeout=60)
        except Exception as exc:  # noqa: BLE001 - collected, reported by the test
            failures.append(f"{op.label} [{mode.value}]: {type(exc).__name__}: "
                            f"{str(exc)[:400]}")
            return
        codes[resp.status_code] += 1

    run()


def test_no_server_error_on_generated_requests(server):
    import schemathesis
    from schemathesis.generation import GenerationMode

    schema = schemathesis.openapi.from_url(server + "/ogcapi/api")
    ops = [op.ok() for op in schema.get_all_operations()]
    # every operation but GET /api itself (schemathesis leaves out the schema's own URL)
    assert len(ops) == 16 + len(PROCESSES), sorted(op.label for op in ops)  # + links, health
    codes: Counter[int] = Counter()
    failures: list[str] = []
    cases: Counter[str] = Counter()
    unbreakable: list[str] = []
    for op in ops:
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            try:
                _fuzz(op, mode, cases, codes, failures)
            except Unsatisfiable:
                assert mode is GenerationMode.NEGATIVE, op.label  # nothing there to break
                unbreakable.append(op.label)

    total = sum(cases.values())
    print(f"\nschemathesis: {total} cases over {len(ops)} operations "
          f"({dict(cases)}); status codes {dict(sorted(codes.items()))}; no negative "
          f"case for {unbreakable}")
    assert not failures, "\n".join(failures[:10])
    assert not [c for c in codes if c >= 500]
    assert total >= len(ops) * 10
    assert codes[200] > 0 and codes[201] > 0 and codes[400] > 0 and codes[404] > 0
