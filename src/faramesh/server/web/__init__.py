"""The dashboard: server-rendered pages at `/`, a live feed at `/ui/events`, assets at `/static`."""

from __future__ import annotations

from fastapi import FastAPI
from starlette.staticfiles import StaticFiles

from faramesh.server.web import admin, decisions, live, pages
from faramesh.server.web.render import STATIC_DIR
from faramesh.server.web.session import SessionCodec


def install(app: FastAPI, secret_key: str | None) -> None:
    """Mount the dashboard on `app`. Without a secret key, sessions end when the server restarts."""
    app.state.web_sessions = SessionCodec.from_settings(secret_key)
    app.include_router(pages.router)
    app.include_router(decisions.router)
    app.include_router(admin.router)
    app.include_router(live.router)
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")


__all__ = ["install"]
