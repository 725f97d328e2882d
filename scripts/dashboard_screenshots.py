"""Take the dashboard screenshots in docs/images/ from a real server and Chromium.

    .venv/bin/python scripts/dashboard_screenshots.py [--out docs/images] [--width 1280]
    .venv/bin/python scripts/dashboard_screenshots.py --width 390 --suffix=-phone

Starts `faramesh serve` on a temporary database, submits a few actions the way an
agent would, logs in with an approver key and saves the queue and two action pages:
a payout waiting for its second approver, and a refund with "Approve, and allow the
same for …" open. Needs Debian's Chromium at /usr/bin/chromium.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import httpx
from playwright.sync_api import sync_playwright

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.conftest import ServerProcess, auth  # noqa: E402
from tests.web.conftest import CHROMIUM, CHROMIUM_ARGS, WEB_POLICY  # noqa: E402


def submit(server: ServerProcess, key: str, tool: str, operation: str, params: dict, context: dict) -> dict:
    r = httpx.post(
        server.url + "/v1/actions",
        json={"tool": tool, "operation": operation, "params": params, "context": context},
        headers=auth(key),
        timeout=10,
    )
    r.raise_for_status()
    return dict(r.json())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "images")
    parser.add_argument("--width", type=int, default=1280)
    parser.add_argument("--height", type=int, default=800)
    parser.add_argument("--suffix", default="", help="added to the file names, e.g. -390")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)

    with tempfile.TemporaryDirectory() as tmp:
        server = ServerProcess(f"sqlite:///{tmp}/faramesh.db", WEB_POLICY, cwd=Path(tmp)).start()
        try:
            agent = server.create_key("agent", name="billing-bot")
            ops = server.create_key("agent", name="ops-bot")
            approver = server.create_key("approver", name="alice")
            submit(server, agent, "refund", "process", {"amount": 40, "customer_id": "cus_101"}, {})
            submit(server, agent, "refund", "process", {"amount": 640, "customer_id": "cus_789"},
                   {"agent_id": "billing-bot"})
            detail = submit(
                server,
                ops,
                "payout",
                "send",
                {"amount": 12500, "currency": "EUR", "iban": "DE89 3704 0044 0532 0130 00", "invoice": "INV-2291"},
                {"agent_id": "treasury-bot", "ticket": "FIN-2291", "note": "<img src=x onerror=alert(1)>"},
            )
            refund = submit(server, agent, "refund", "process",
                            {"amount": 4321.5, "customer_id": "cus_123", "order": "ORD-88412"},
                            {"agent_id": "billing-bot"})
            bob = server.create_key("approver", name="bob")
            httpx.post(
                server.url + f"/v1/actions/{detail['id']}/approve",
                json={"reason": "Invoice INV-2291 matches the contract"},
                headers=auth(bob),
                timeout=10,
            ).raise_for_status()
            with sync_playwright() as pw:
                browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
                page = browser.new_page(viewport={"width": args.width, "height": args.height})
                page.goto(server.url + "/login")
                page.get_by_label("API key").fill(approver)
                page.get_by_role("button", name="Log in").click()
                page.wait_for_selector("#queue-rows tr")
                page.set_viewport_size({"width": args.width, "height": 360})  # full_page grows it to fit
                page.screenshot(path=str(args.out / f"dashboard-queue{args.suffix}.png"), full_page=True)
                page.set_viewport_size({"width": args.width, "height": args.height})
                page.goto(server.url + f"/actions/{detail['id']}")
                page.screenshot(path=str(args.out / f"dashboard-detail{args.suffix}.png"), full_page=True)
                page.goto(server.url + f"/actions/{refund['id']}")
                page.locator("#grant-offer summary").click()
                page.screenshot(path=str(args.out / f"dashboard-grant{args.suffix}.png"), full_page=True)
                browser.close()
        finally:
            server.stop()
    print(f"wrote {args.out}/dashboard-{{queue,detail,grant}}{args.suffix}.png")


if __name__ == "__main__":
    main()
