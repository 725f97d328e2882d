"""slack.com's Web API for the single sign-on tests, on a free local port: users.info
answers with the members' emails (and whether Slack confirmed them); other methods
answer ok, as the Slack notifier expects."""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs


@dataclass
class SlackWithPeople:
    members: dict[str, dict[str, Any]] = field(default_factory=dict)  # user id -> {email, is_email_confirmed}
    calls: list[str] = field(default_factory=list)
    server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        assert self.server is not None
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def start(self) -> SlackWithPeople:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                raw = self.rfile.read(int(self.headers.get("Content-Length") or 0)).decode()
                body = (
                    json.loads(raw or "{}")
                    if "json" in (self.headers.get("Content-Type") or "")
                    else {k: v[0] for k, v in parse_qs(raw).items()}
                )
                method = self.path.rsplit("/", 1)[-1]
                fake.calls.append(method)
                answer: dict[str, Any] = {"ok": True, "ts": "1700000000.000100", "channel": body.get("channel")}
                if method == "users.info":
                    member = fake.members.get(str(body.get("user")))
                    if member is None:
                        answer = {"ok": False, "error": "user_not_found"}
                    else:
                        answer = {
                            "ok": True,
                            "user": {
                                "id": body.get("user"),
                                "deleted": False,
                                "is_bot": False,
                                "is_email_confirmed": member.get("is_email_confirmed", False),
                                "profile": {"email": member.get("email")},
                            },
                        }
                data = json.dumps(answer).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
