"""Fuzzing from the server's own /openapi.json with schemathesis: requests that fit
the schema and requests that break it, for every operation, with an admin key and
with an agent key. No answer may be a server error. Bounded so CI stays quick.

The schema is loaded from the live server; the list of operations that names the
tests comes from the same app built in-process (a test checks that both agree)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error

from faramesh.config import Settings
from faramesh.server.app import create_app
from tests.conftest import SEED_POLICY, ServerProcess, auth

# Per operation, mode and role; raise it for a deeper run: FARAMESH_FUZZ_EXAMPLES=500 pytest ...
EXAMPLES = int(os.environ.get("FARAMESH_FUZZ_EXAMPLES", "25"))
# The event stream never ends by design; its error paths have their own tests.
SKIP = {("GET", "/v1/events")}


def operations() -> list[tuple[str, str]]:
    spec = create_app(Settings(policy=str(SEED_POLICY))).openapi()
    return sorted(
        (method.upper(), path)
        for path, ops in spec["paths"].items()
        for method in ops
        if (method.upper(), path) not in SKIP
    )


OPERATIONS = operations()


@pytest.fixture(scope="module")
def fuzz(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    tmp = tmp_path_factory.mktemp("fuzz")
    srv = ServerProcess(f"sqlite:///{tmp / 'faramesh.db'}", SEED_POLICY, cwd=tmp, extra_args=("--rate-limit", "off"))
    srv.start()
    agent = srv.create_key("agent")
    # Something to find: a pending and an allowed action.
    for amount in (500, 5):
        httpx.post(
            srv.url + "/v1/actions",
            json={"tool": "refund", "operation": "process", "params": {"amount": amount}},
            headers=auth(agent),
        )
    yield {
        "server": srv,
        "schema": schemathesis.openapi.from_url(srv.url + "/openapi.json"),
        "keys": {"admin": srv.admin_key or "", "agent": agent},
    }
    srv.stop()


def test_live_schema_lists_the_same_operations(fuzz: dict[str, Any]) -> None:
    spec = httpx.get(fuzz["server"].url + "/openapi.json").json()
    live = sorted((m.upper(), p) for p, ops in spec["paths"].items() for m in ops if (m.upper(), p) not in SKIP)
    assert live == OPERATIONS


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE], ids=["valid", "invalid"])
@pytest.mark.parametrize("role", ["admin", "agent"])
@pytest.mark.parametrize(("method", "path"), OPERATIONS, ids=[f"{m} {p}" for m, p in OPERATIONS])
def test_no_server_errors(fuzz: dict[str, Any], method: str, path: str, role: str, mode: GenerationMode) -> None:
    srv: ServerProcess = fuzz["server"]
    operation = fuzz["schema"][path][method]
    key = fuzz["keys"][role]

    @settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck), database=None)
    @given(data=st.data())
    def run(data: st.DataObject) -> None:
        case = data.draw(operation.as_strategy(generation_mode=mode))
        if path.endswith("/wait"):
            case.query = (case.query or {}) | {"timeout": 0}  # a long-poll must not hold the fuzzer
        case.call_and_validate(
            base_url=srv.url,
            headers=dict(case.headers or {}) | auth(key),
            checks=[not_a_server_error],
            timeout=30,
        )

    try:
        run()
    except Unsatisfiable:
        if mode is GenerationMode.POSITIVE:
            raise
        pytest.skip("the schema leaves nothing to get wrong in this operation's request")
