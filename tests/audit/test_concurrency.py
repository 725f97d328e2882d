"""Many threads submitting and deciding at once (on SQLite, and on PostgreSQL through
two server processes sharing one database) still leave one unbroken chain."""

from __future__ import annotations

import queue
import random
import threading
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import httpx
import orjson
import pytest
from click.testing import CliRunner

from faramesh.cli.main import main
from tests.audit.conftest import pg_database
from tests.conftest import ServerProcess, auth

AGENTS = 6
APPROVERS = 3
ROUNDS = 10


@contextmanager
def database(backend: str, tmp_url: str) -> Iterator[str]:
    if backend == "sqlite":
        yield tmp_url
    else:
        with pg_database() as url:
            yield url


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_concurrent_submits_and_decisions_keep_one_chain(
    backend: str, start_server: Callable[..., ServerProcess], tmp_path_factory: pytest.TempPathFactory
) -> None:
    tmp_url = f"sqlite:///{tmp_path_factory.mktemp('concurrency') / 'faramesh.db'}"
    with database(backend, tmp_url) as url:
        first = start_server(database_url=url)
        # On PostgreSQL a second server process appends to the same chain.
        servers = [first, start_server(database_url=url)] if backend == "postgresql" else [first]
        agents = [first.create_key("agent", name=f"agent {i}") for i in range(AGENTS)]
        approvers = [first.create_key("approver", name=f"approver {i}") for i in range(APPROVERS)]
        counts: Counter[str] = Counter()
        lock = threading.Lock()
        pending: queue.Queue[str | None] = queue.Queue()
        errors: list[str] = []

        def count(what: str) -> None:
            with lock:
                counts[what] += 1

        def agent_work(index: int) -> None:
            key = agents[index]
            rng = random.Random(index)
            clients = [httpx.Client(base_url=s.url, headers=auth(key), timeout=30) for s in servers]
            try:
                for n in range(ROUNDS):
                    c = clients[n % len(clients)]
                    small = c.post(
                        "/v1/actions", json={"tool": "refund", "operation": "process", "params": {"amount": 20}}
                    )
                    large = c.post(
                        "/v1/actions",
                        json={"tool": "refund", "operation": "process", "params": {"amount": rng.randint(101, 999)}},
                    )
                    delete = c.post(
                        "/v1/actions", json={"tool": "user_management", "operation": "delete", "params": {}}
                    )
                    for r in (small, large, delete):
                        if r.status_code != 201:
                            errors.append(r.text)
                        else:
                            count("submitted")
                    other = clients[(n + 1) % len(clients)]
                    done = other.post(f"/v1/actions/{small.json()['id']}/result", json={"success": True, "result": n})
                    if done.status_code == 200:
                        count("results")
                    else:
                        errors.append(done.text)
                    # Two approvers race for each pending action.
                    pending.put(large.json()["id"])
                    pending.put(large.json()["id"])
            finally:
                for client in clients:
                    client.close()

        def approver_work(index: int) -> None:
            key = approvers[index]
            rng = random.Random(100 + index)
            clients = [httpx.Client(base_url=s.url, headers=auth(key), timeout=30) for s in servers]
            try:
                while (action_id := pending.get()) is not None:
                    verb = rng.choice(["approve", "deny"])
                    r = rng.choice(clients).post(f"/v1/actions/{action_id}/{verb}", json={"reason": f"by {index}"})
                    if r.status_code == 200:
                        count("decided")
                    elif r.status_code == 409:
                        count("lost races")
                    else:
                        errors.append(r.text)
            finally:
                for client in clients:
                    client.close()

        workers = [threading.Thread(target=agent_work, args=(i,)) for i in range(AGENTS)]
        deciders = [threading.Thread(target=approver_work, args=(i,)) for i in range(APPROVERS)]
        for t in workers + deciders:
            t.start()
        for t in workers:
            t.join()
        for _ in deciders:
            pending.put(None)
        for t in deciders:
            t.join()

        assert not errors, errors[:5]
        assert counts["submitted"] == AGENTS * ROUNDS * 3
        # Of each pair of racing decisions exactly one won.
        assert counts["decided"] == AGENTS * ROUNDS and counts["lost races"] == AGENTS * ROUNDS

        env = {"FARAMESH_DATABASE_URL": url}
        result = CliRunner().invoke(main, ["audit", "verify"], env=env)
        assert result.exit_code == 0, result.output
        keys = 1 + AGENTS + APPROVERS
        permit_key = 1  # permits.key_created: the first start makes the permit signing key
        expected = keys + permit_key + counts["submitted"] + counts["results"] + counts["decided"]
        assert result.output.startswith(f"audit log intact: {expected} records, head seq {expected} ")
        exported = CliRunner().invoke(main, ["audit", "export"], env=env).stdout_bytes.splitlines()
        seqs = [orjson.loads(line)["seq"] for line in exported]
        assert seqs == list(range(1, expected + 1))
