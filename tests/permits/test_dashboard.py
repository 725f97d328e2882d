"""The dashboard lists actions needing reconciliation and lets a person record what
became of one (in-process app, fake clock; the form goes through CSRF and the service)."""

from __future__ import annotations

from typing import Any

import httpx

from tests.inprocess import InProcessServer
from tests.permits.support import SMALL, events, get, keys, post, submit
from tests.web.conftest import csrf_of


def login(app: InProcessServer, key: str) -> httpx.Client:
    client = httpx.Client(transport=app.transport, base_url=app.url, follow_redirects=False, timeout=10)
    page = client.get("/login")
    r = client.post("/login", data={"key": key, "csrf_token": csrf_of(page.text), "next": "/"})
    assert r.status_code == 303, r.text
    return client


def test_the_queue_lists_unknown_outcomes_and_a_person_reconciles_one(make_client: Any) -> None:
    app: InProcessServer = make_client()
    k = keys(app)
    action = submit(app, k["agent"], SMALL)
    running = submit(app, k["agent"], SMALL | {"params": {"amount": 9}})
    for a in (action, running):
        post(app, f"/v1/actions/{a['id']}/start", k["agent"])
    app.advance(601)  # both leases run out
    post(app, f"/v1/actions/{running['id']}/result", k["agent"], {"success": True})  # one reports late

    person = login(app, k["approver"])
    queue = person.get("/")
    assert queue.status_code == 200
    assert "Needing reconciliation" in queue.text
    assert f'href="/actions/{action["id"]}"' in queue.text
    assert running["id"] not in queue.text

    page = person.get(f"/actions/{action['id']}")
    assert 'id="reconcile-form"' in page.text and "Outcome unknown" in page.text
    token = csrf_of(page.text)
    no_reason = person.post(f"/actions/{action['id']}/reconcile", data={"csrf_token": token, "outcome": "failed"})
    assert no_reason.status_code == 303
    assert get(app, k["agent"], action["id"])["status"] == "outcome_unknown"
    done = person.post(
        f"/actions/{action['id']}/reconcile",
        data={"csrf_token": token, "outcome": "failed", "reason": "no refund in the ledger"},
    )
    assert done.status_code == 303
    assert get(app, k["agent"], action["id"])["status"] == "failed"
    [record] = [e for e in events(app, action["id"]) if e["event"] == "action.reconciled"]
    assert record["data"]["reason"] == "no refund in the ledger" and record["data"]["by"] == "a person"
    assert "Needing reconciliation" not in person.get("/").text
    person.close()
