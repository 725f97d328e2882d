"""The dashboard: server-rendered pages at `/`, a live feed at `/ui/events`, assets at `/static`."""

from __future__ import annotations

from fastapi import FastAPI
from starlette.staticfiles import StaticFiles

from faramesh.config import Settings
from faramesh.server.web import admin, decisions, live, pages, sso_routes
from faramesh.server.web.oidc import OidcClient
from faramesh.server.web.render import STATIC_DIR
from faramesh.server.web.session import SessionCodec
from faramesh.server.web.sso import SsoRuntime
from faramesh.sso import SsoConfig


def install(app: FastAPI, settings: Settings) -> None:
    """Mount the dashboard on `app`. Without a secret key, sessions end when the server restarts.

    Raises faramesh.sso.SsoConfigError when the single sign-on settings are incomplete or unsafe.
    """
    app.state.web_sessions = SessionCodec.from_settings(settings.secret_key, settings.session_lifetime)
    config = SsoConfig.from_settings(settings)
    client = OidcClient(config) if config is not None else None
    app.state.sso = SsoRuntime(config=config, client=client, key_login=settings.dashboard_key_login)
    app.include_router(pages.router)
    app.include_router(sso_routes.router)
    app.include_router(decisions.router)
    app.include_router(admin.router)
    app.include_router(live.router)
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")


__all__ = ["install"]
