"""`faramesh serve`: run the server with an embedded database and a starter policy."""

from __future__ import annotations

import os
import socket
import sys
import time

import click

from faramesh.cli.common import Count, Seconds, describe_database, open_store, require_server
from faramesh.cli.exitcodes import ExitCode
from faramesh.config import (
    DEFAULT_APPROVAL_LAPSE,
    DEFAULT_APPROVAL_TIMEOUT,
    DEFAULT_OIDC_RECHECK,
    DEFAULT_SESSION_LIFETIME,
    Settings,
    parse_duration,
    parse_timeout,
    seconds_minimum,
)
from faramesh.model import Role
from faramesh.sso import SsoConfig, SsoConfigError


@click.command(
    "serve",
    epilog="Every option can also be set with the environment variable shown beside it. "
    "Environment only: FARAMESH_SECRET_KEY, the key that signs dashboard sessions (random if unset; "
    "give every replica the same one). Settings table: docs/deployment.md#settings.",
)
@click.option("--host", envvar="FARAMESH_HOST", default="127.0.0.1", show_default=True, help="Interface to listen on.")
@click.option(
    "--port", envvar="FARAMESH_PORT", default=8000, show_default=True, type=Count("port"), help="Port to listen on."
)
@click.option(
    "--policy",
    envvar="FARAMESH_POLICY",
    default=None,
    help="Policy file (default ./policy.yaml, else the starter policy).",
)
@click.option(
    "--shadow-policy",
    envvar="FARAMESH_SHADOW_POLICY",
    default=None,
    type=click.Path(dir_okay=False),
    help="Candidate policy to evaluate beside the active one: both decisions are recorded, only the active one applies.",
)
@click.option(
    "--policy-watch-interval",
    envvar="FARAMESH_POLICY_WATCH_INTERVAL",
    default=0.5,
    show_default=True,
    type=Seconds(seconds_minimum("policy_watch_interval")),
    help="Seconds between checks of the policy files for changes; 0 turns watching off (SIGHUP still reloads).",
)
@click.option(
    "--database-url",
    envvar="FARAMESH_DATABASE_URL",
    default="sqlite:///./faramesh.db",
    show_default=True,
    help="sqlite:///path.db or postgresql://user:password@host/db.",
)
@click.option(
    "--approval-timeout",
    envvar="FARAMESH_APPROVAL_TIMEOUT",
    default="24h",
    show_default=True,
    help="Deny pending actions after this long (e.g. 15m) when their rule sets no timeout; 'never' keeps them open.",
)
@click.option(
    "--workers",
    envvar="FARAMESH_WORKERS",
    default=1,
    show_default=True,
    type=Count("workers"),
    help="Server processes sharing the port (PostgreSQL only): each has its own interpreter, so they use more cores.",
)
@click.option(
    "--approval-lapse",
    envvar="FARAMESH_APPROVAL_LAPSE",
    default="1h",
    show_default=True,
    help="Cancel an approval the submitting agent has not picked up within this long; 'never' keeps it valid.",
)
@click.option(
    "--permit-ttl",
    envvar="FARAMESH_PERMIT_TTL",
    default="5m",
    show_default=True,
    help="How long a permit (the signed proof on an allowed or approved action) stays valid; "
    "the agent gets a fresh one when it reads the action again.",
)
@click.option(
    "--execution-lease",
    envvar="FARAMESH_EXECUTION_LEASE",
    default="10m",
    show_default=True,
    help="How long a started action may run without a result or heartbeat before its outcome counts as unknown.",
)
@click.option(
    "--max-body-bytes",
    envvar="FARAMESH_MAX_BODY_BYTES",
    default=1024 * 1024,
    show_default=True,
    type=Count("max_body_bytes"),
    help="Largest request body accepted; larger bodies are refused with 413.",
)
@click.option(
    "--max-header-bytes",
    envvar="FARAMESH_MAX_HEADER_BYTES",
    default=64 * 1024,
    show_default=True,
    type=Count("max_header_bytes"),
    help="Largest request line plus headers; larger requests are refused before they reach the app.",
)
@click.option(
    "--rate-limit",
    envvar="FARAMESH_RATE_LIMIT",
    default="1000/s",
    show_default=True,
    help="Requests per API key (e.g. 50/s, 600/m, or off); over it the answer is 429 with Retry-After.",
)
@click.option("--no-migrate", is_flag=True, help="Refuse to start unless the schema is current, instead of migrating.")
@click.option(
    "--log-format",
    envvar="FARAMESH_LOG_FORMAT",
    type=click.Choice(["text", "json"]),
    default="text",
    show_default=True,
    help="json: one JSON object per log line, with the action id.",
)
@click.option(
    "--webhooks",
    "webhooks_file",
    envvar="FARAMESH_WEBHOOKS",
    default=None,
    type=click.Path(dir_okay=False),
    help="YAML file of outgoing webhooks (url, secret, events, format: json|slack); read-only in the API.",
)
@click.option(
    "--slack-config",
    envvar="FARAMESH_SLACK_CONFIG",
    default=None,
    type=click.Path(dir_okay=False),
    help="YAML file: Slack signing_secret and users (Slack user id -> approver key id) for the buttons.",
)
@click.option(
    "--webhook-retry-base",
    envvar="FARAMESH_WEBHOOK_RETRY_BASE",
    default=2.0,
    show_default=True,
    type=Seconds(seconds_minimum("webhook_retry_base")),
    help="Seconds before the first webhook retry; the delay doubles after each failure.",
)
@click.option(
    "--webhook-timeout",
    envvar="FARAMESH_WEBHOOK_TIMEOUT",
    default=10.0,
    show_default=True,
    type=Seconds(seconds_minimum("webhook_timeout")),
    help="Seconds one webhook delivery may take before it counts as failed.",
)
@click.option(
    "--public-url",
    envvar="FARAMESH_PUBLIC_URL",
    default=None,
    help="The dashboard's address as people reach it (https://faramesh.example.com), for links in Teams and Slack "
    "and the single sign-on redirect URI (<public url>/login/oidc/callback).",
)
@click.option(
    "--dashboard-key-login/--no-dashboard-key-login",
    envvar="FARAMESH_DASHBOARD_KEY_LOGIN",
    default=True,
    show_default=True,
    help="Let approver and admin API keys log in to the dashboard; off: single sign-on only (keys still work for the API).",
)
@click.option(
    "--session-lifetime",
    envvar="FARAMESH_SESSION_LIFETIME",
    default="8h",
    show_default=True,
    help="How long a dashboard session lasts (e.g. 1h, 8h) before its user signs in again.",
)
@click.option(
    "--oidc-issuer",
    envvar="FARAMESH_OIDC_ISSUER",
    default=None,
    help="OpenID Connect issuer for dashboard single sign-on (https; http only on loopback). "
    "The client secret is read from FARAMESH_OIDC_CLIENT_SECRET only.",
)
@click.option(
    "--oidc-client-id", envvar="FARAMESH_OIDC_CLIENT_ID", default=None, help="Client id at the identity provider."
)
@click.option(
    "--oidc-scopes",
    envvar="FARAMESH_OIDC_SCOPES",
    default="openid email profile",
    show_default=True,
    help="Scopes asked for at sign-in (add offline_access where the provider needs it for refresh tokens).",
)
@click.option(
    "--oidc-groups-claim",
    envvar="FARAMESH_OIDC_GROUPS_CLAIM",
    default="groups",
    show_default=True,
    help="The ID token or userinfo claim that lists a person's groups (e.g. groups, roles).",
)
@click.option(
    "--oidc-approver-groups",
    envvar="FARAMESH_OIDC_APPROVER_GROUPS",
    default=None,
    help="Comma-separated groups whose members sign in as approvers.",
)
@click.option(
    "--oidc-admin-groups",
    envvar="FARAMESH_OIDC_ADMIN_GROUPS",
    default=None,
    help="Comma-separated groups whose members sign in as admins.",
)
@click.option(
    "--oidc-email-domains",
    envvar="FARAMESH_OIDC_EMAIL_DOMAINS",
    default=None,
    help="Comma-separated email domains allowed to sign in (the email must be verified); none: any.",
)
@click.option(
    "--oidc-recheck",
    envvar="FARAMESH_OIDC_RECHECK",
    default="5m",
    show_default=True,
    help="Re-check a signed-in person's groups with the identity provider at most this often.",
)
def serve(
    host: str,
    port: int,
    policy: str | None,
    shadow_policy: str | None,
    policy_watch_interval: float,
    database_url: str,
    approval_timeout: str | None,
    approval_lapse: str | None,
    workers: int,
    permit_ttl: str,
    execution_lease: str,
    max_body_bytes: int,
    max_header_bytes: int,
    rate_limit: str,
    no_migrate: bool,
    log_format: str,
    webhooks_file: str | None,
    slack_config: str | None,
    webhook_retry_base: float,
    webhook_timeout: float,
    public_url: str | None,
    dashboard_key_login: bool,
    session_lifetime: str,
    oidc_issuer: str | None,
    oidc_client_id: str | None,
    oidc_scopes: str,
    oidc_groups_claim: str,
    oidc_approver_groups: str | None,
    oidc_admin_groups: str | None,
    oidc_email_domains: str | None,
    oidc_recheck: str,
) -> None:
    """Run the Faramesh server (API, dashboard, expiry sweeper)."""
    require_server("serve")
    import uvicorn

    from faramesh.policy import PolicyError
    from faramesh.server.app import create_app, load_policy
    from faramesh.server.policy_reload import load_shadow_policy
    from faramesh.server.protocol import bounded_http_protocol
    from faramesh.server.ratelimit import parse_rate
    from faramesh.server.security_headers import SECURITY_HEADERS
    from faramesh.service import keys as service_keys
    from faramesh.service import permit_keys

    try:
        timeout = parse_timeout(approval_timeout, DEFAULT_APPROVAL_TIMEOUT)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--approval-timeout") from None
    try:
        lapse = parse_timeout(approval_lapse, DEFAULT_APPROVAL_LAPSE)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--approval-lapse") from None
    durations: dict[str, float] = {}
    for option, name, value in (
        ("--permit-ttl", "permit_ttl", permit_ttl),
        ("--execution-lease", "execution_lease", execution_lease),
    ):
        try:
            parsed = parse_duration(value)
        except ValueError as exc:
            raise click.BadParameter(str(exc), param_hint=option) from None
        if parsed is None:
            raise click.BadParameter("a duration is required, e.g. 5m", param_hint=option)
        durations[name] = parsed
    try:
        parse_rate(rate_limit)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--rate-limit") from None
    for hint, value, default in (
        ("--session-lifetime", session_lifetime, DEFAULT_SESSION_LIFETIME),
        ("--oidc-recheck", oidc_recheck, DEFAULT_OIDC_RECHECK),
    ):
        try:
            durations[hint] = parse_duration(value) or default
        except ValueError as exc:
            raise click.BadParameter(str(exc), param_hint=hint) from None
    settings = Settings(
        host=host,
        port=port,
        database_url=database_url,
        policy=policy,
        shadow_policy=shadow_policy,
        policy_watch_interval=policy_watch_interval,
        approval_timeout=timeout,
        approval_lapse=lapse,
        permit_ttl=durations["permit_ttl"],
        execution_lease=durations["execution_lease"],
        max_body_bytes=max_body_bytes,
        max_header_bytes=max_header_bytes,
        rate_limit=rate_limit,
        migrate=not no_migrate,
        log_format=log_format,
        webhooks=webhooks_file,
        slack_config=slack_config,
        webhook_retry_base=webhook_retry_base,
        webhook_timeout=webhook_timeout,
        public_url=public_url.rstrip("/") if public_url else None,
        secret_key=os.environ.get("FARAMESH_SECRET_KEY") or None,
        workers=workers,
        dashboard_key_login=dashboard_key_login,
        session_lifetime=durations["--session-lifetime"],
        oidc_issuer=oidc_issuer,
        oidc_client_id=oidc_client_id,
        oidc_client_secret=os.environ.get("FARAMESH_OIDC_CLIENT_SECRET") or None,
        oidc_scopes=oidc_scopes,
        oidc_groups_claim=oidc_groups_claim,
        oidc_approver_groups=oidc_approver_groups,
        oidc_admin_groups=oidc_admin_groups,
        oidc_email_domains=oidc_email_domains,
        oidc_recheck=durations["--oidc-recheck"],
    )
    _check_notification_files(settings)
    sso = _check_sso(settings)
    try:
        active = load_policy(settings)
    except (PolicyError, OSError) as exc:
        click.echo(f"Cannot load the policy: {exc}", err=True)
        sys.exit(ExitCode.USAGE)
    try:
        shadow = load_shadow_policy(settings)
    except PolicyError as exc:
        click.echo(f"Cannot load the shadow policy: {exc}", err=True)
        sys.exit(ExitCode.USAGE)

    if workers > 1 and not database_url.startswith("postgresql"):
        click.echo(
            "--workers above 1 needs PostgreSQL: SQLite has one writer per database and no change "
            "notices between processes. Run one worker, or use a postgresql:// database URL.",
            err=True,
        )
        sys.exit(ExitCode.USAGE)
    with open_store(database_url, command="serve", migrate=settings.migrate) as store:
        if not settings.migrate and not store.is_current():
            click.echo("The database schema is not current; run `faramesh db upgrade`.", err=True)
            sys.exit(ExitCode.USAGE)
        secret = None
        if service_keys.count_active_keys(store, Role.ADMIN) == 0:
            _, secret = service_keys.create_key(store, role=Role.ADMIN, name="first admin", actor="serve")
        try:  # made on the first start; refused when sealed under another secret
            signing = permit_keys.ensure_key(
                store, permit_keys.server_secret(settings.secret_key, database_url).sealer, time.time()
            )
        except permit_keys.PermitKeyError as exc:
            click.echo(f"Cannot sign permits: {exc.message}", err=True)
            sys.exit(2)

    shown_host = "127.0.0.1" if host in ("0.0.0.0", "::") else host
    url = f"http://{shown_host}:{port}"
    click.echo(f"Faramesh {active.source} policy ({len(active.rules)} rules, hash {active.hash[:12]})")
    for warning in active.warnings:
        click.echo(f"Policy warning: {warning}")
    if shadow is not None:
        click.echo(
            f"Shadow policy {shadow.source} (hash {shadow.hash[:12]}): recorded beside each decision, never applied"
        )
    click.echo(f"Database: {describe_database(database_url)}")
    click.echo(f"Permits signed with key {signing.kid} (public keys: {url}/v1/permits/keys)")
    click.echo(f"Dashboard: {url}/   API: {url}/v1   Docs: {url}/docs")
    if sso is not None:
        callback = (settings.public_url or url) + "/login/oidc/callback"
        click.echo(f"Single sign-on: {sso.issuer} (client {sso.client_id}; redirect URI {callback})")
    if not dashboard_key_login:
        click.echo("Key login to the dashboard is off" + ("" if sso else ": nobody can log in to the dashboard"))
    if secret:
        click.echo("First start: an admin key was created. Log in to the dashboard with it; it is not shown again:")
        click.echo(f"  {secret}")
    elif dashboard_key_login:
        click.echo("Log in with an approver or admin key (create one: faramesh keys create --role approver).")
    sys.stdout.flush()

    from faramesh.observability.logging import configure_logging

    configure_logging(log_format)
    from faramesh.server.drain import DrainingServer
    from faramesh.server.heap import freeze_startup_objects

    def make_server() -> DrainingServer:
        app = create_app(settings)
        config = uvicorn.Config(
            app,
            host=host,
            port=port,
            log_level="warning",
            access_log=False,
            log_config=None,  # uvicorn's records go through the root handler, in the chosen format
            # On SIGTERM open waits answer 503 + Retry-After and event streams end at once
            # (DrainingServer); this bounds what is left, e.g. a slow request, before the
            # connections are cut. Clients retry or reconnect (Last-Event-ID) elsewhere.
            timeout_graceful_shutdown=5,
            # httptools with a bound on request heads (it has none of its own); h11 and
            # its bound if httptools is missing.
            http=bounded_http_protocol(max_header_bytes, SECURITY_HEADERS),
            h11_max_incomplete_event_size=max_header_bytes,
        )
        return DrainingServer(config, app, after_startup=freeze_startup_objects)

    if workers > 1:
        from faramesh.server.workers import serve_forked

        def run_worker(sock: socket.socket) -> bool:
            server = make_server()
            server.run(sockets=[sock])
            return bool(server.started)

        sock = uvicorn.Config(app=make_server, host=host, port=port).bind_socket()
        sys.exit(serve_forked(workers, sock, run_worker))
    server = make_server()
    server.run()
    if not server.started:  # as uvicorn.run: a failed start (port taken, lifespan error) exits non-zero
        sys.exit(ExitCode.FAILED)


# `serve --help` shows each option's environment variable beside it, so every setting is visible there.
for _param in serve.params:
    if isinstance(_param, click.Option) and _param.envvar:
        _param.show_envvar = True


def _check_notification_files(settings: Settings) -> None:
    """Refuse to start on a broken webhooks or Slack file, naming the problem."""
    from faramesh.errors import FarameshError
    from faramesh.notify import load_slack_config, load_webhook_file

    for option, path, load in (
        ("--webhooks", settings.webhooks, load_webhook_file),
        ("--slack-config", settings.slack_config, load_slack_config),
    ):
        if not path:
            continue
        try:
            load(path)
        except FarameshError as exc:
            click.echo(f"Cannot use {option} {path}: {exc.message}", err=True)
            sys.exit(ExitCode.USAGE)
        except OSError as exc:
            click.echo(f"Cannot read {option} {path}: {exc.strerror}", err=True)
            sys.exit(ExitCode.USAGE)


def _check_sso(settings: Settings) -> SsoConfig | None:
    """Refuse to start on incomplete or unsafe single sign-on settings, naming the setting."""
    try:
        return SsoConfig.from_settings(settings)
    except SsoConfigError as exc:
        click.echo(f"Cannot use single sign-on: {exc}", err=True)
        sys.exit(ExitCode.USAGE)
