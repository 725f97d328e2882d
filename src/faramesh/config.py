"""Settings, declared once. The table drives the environment variables, the `serve`
command's options and the docs; a test checks that they agree."""

from __future__ import annotations

import math
import os
import re
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from faramesh import durations

_PASSWORD_PARAMETER = re.compile(r"(?i)([?&]password=)[^&#]*")

DEFAULT_URL = "http://127.0.0.1:8000"
DEFAULT_DATABASE_URL = "sqlite:///./faramesh.db"
# No approval is open forever, and an approval is permission to run now (service/expiry.py).
DEFAULT_APPROVAL_TIMEOUT = 24 * 3600.0
DEFAULT_APPROVAL_LAPSE = 3600.0
# A permit is checked just before the tool runs: short-lived, renewed when its agent reads
# the action again (service/permits.py). A started action with no result within the
# execution lease becomes outcome_unknown (service/execution.py).
DEFAULT_PERMIT_TTL = 300.0
DEFAULT_EXECUTION_LEASE = 600.0
# Dashboard sessions: a working day; a person's groups are re-checked with their identity
# provider at most this often while the session lasts (docs/sso.md).
DEFAULT_SESSION_LIFETIME = 8 * 3600.0
DEFAULT_OIDC_RECHECK = 300.0


@dataclass(frozen=True)
class Setting:
    name: str  # attribute on Settings and the `serve` option (--name-with-dashes)
    env: str
    default: Any
    help: str
    type: type = str
    # The range a number setting accepts (parse_seconds, parse_count and serve's options).
    minimum: float | None = None
    maximum: int | None = None


SETTINGS: tuple[Setting, ...] = (
    Setting("host", "FARAMESH_HOST", "127.0.0.1", "interface to listen on"),
    Setting("port", "FARAMESH_PORT", 8000, "port to listen on (1-65535)", int, minimum=1, maximum=65535),
    Setting("database_url", "FARAMESH_DATABASE_URL", DEFAULT_DATABASE_URL, "sqlite:///path.db or postgresql://…"),
    Setting("policy", "FARAMESH_POLICY", None, "policy file (default ./policy.yaml, else the starter policy)"),
    Setting(
        "shadow_policy",
        "FARAMESH_SHADOW_POLICY",
        None,
        "candidate policy evaluated beside the active one; its decisions are recorded, never applied",
    ),
    Setting(
        "policy_watch_interval",
        "FARAMESH_POLICY_WATCH_INTERVAL",
        0.5,
        "seconds between checks of the policy files for changes (0: no watching; SIGHUP still reloads)",
        float,
        minimum=0.0,
    ),
    Setting(
        "approval_timeout",
        "FARAMESH_APPROVAL_TIMEOUT",
        "24h",
        "how long (30s/15m/2h/1d) a pending action waits for people before it is denied as expired, "
        "when its rule sets no timeout; 'never' keeps it open until decided",
    ),
    Setting(
        "workers",
        "FARAMESH_WORKERS",
        1,
        "server processes sharing the port (PostgreSQL only, 1-64); each has its own interpreter, so they use more cores",
        int,
        minimum=1,
        maximum=64,
    ),
    Setting(
        "approval_lapse",
        "FARAMESH_APPROVAL_LAPSE",
        "1h",
        "how long an approval stays valid when the submitting agent has not picked it up "
        "(waited on or read it); then the action is cancelled. 'never' keeps it valid",
    ),
    Setting(
        "permit_ttl",
        "FARAMESH_PERMIT_TTL",
        "5m",
        "how long a permit (the signed proof on an allowed or approved action) stays valid; the "
        "submitting agent gets a fresh one when it reads the action again",
    ),
    Setting(
        "execution_lease",
        "FARAMESH_EXECUTION_LEASE",
        "10m",
        "how long a started action may run without a result or a heartbeat before its outcome "
        "counts as unknown (an identical retry is then refused until it is reconciled)",
    ),
    # Below 1 KiB no ordinary submit or request head fits: a server that refuses everything.
    Setting(
        "max_body_bytes",
        "FARAMESH_MAX_BODY_BYTES",
        1024 * 1024,
        "largest request body accepted (at least 1024)",
        int,
        minimum=1024,
    ),
    Setting(
        "max_header_bytes",
        "FARAMESH_MAX_HEADER_BYTES",
        64 * 1024,
        "largest request line plus headers accepted (at least 1024; larger is refused with 400 before the app)",
        int,
        minimum=1024,
    ),
    Setting(
        "rate_limit",
        "FARAMESH_RATE_LIMIT",
        "1000/s",
        "requests per API key, e.g. 50/s, 600/m or off; over it the answer is 429 with Retry-After",
    ),
    Setting("secret_key", "FARAMESH_SECRET_KEY", None, "key that signs dashboard sessions (random if unset)"),
    Setting("log_format", "FARAMESH_LOG_FORMAT", "text", "text or json"),
    Setting("webhooks", "FARAMESH_WEBHOOKS", None, "YAML file of outgoing webhooks (url, secret, events, format)"),
    Setting(
        "slack_config",
        "FARAMESH_SLACK_CONFIG",
        None,
        "YAML file with the Slack signing secret and a map of Slack user ids to approver key ids",
    ),
    Setting(
        "webhook_retry_base",
        "FARAMESH_WEBHOOK_RETRY_BASE",
        2.0,
        "seconds before the first webhook retry; the delay doubles after each failure",
        float,
        minimum=0.01,
    ),
    Setting(
        "webhook_timeout", "FARAMESH_WEBHOOK_TIMEOUT", 10.0, "seconds one webhook delivery may take", float, minimum=0.1
    ),
    Setting(
        "public_url",
        "FARAMESH_PUBLIC_URL",
        None,
        "the dashboard's address as people reach it, for links in Teams cards and Slack messages "
        "and the single sign-on redirect (…/login/oidc/callback)",
    ),
    Setting(
        "dashboard_key_login",
        "FARAMESH_DASHBOARD_KEY_LOGIN",
        True,
        "whether approver and admin API keys can log in to the dashboard (false: single sign-on only; "
        "keys still work for the API)",
        bool,
    ),
    Setting(
        "session_lifetime",
        "FARAMESH_SESSION_LIFETIME",
        "8h",
        "how long a dashboard session lasts before its user signs in again",
    ),
    Setting(
        "oidc_issuer",
        "FARAMESH_OIDC_ISSUER",
        None,
        "OpenID Connect issuer URL for dashboard single sign-on (https; http only on loopback)",
    ),
    Setting("oidc_client_id", "FARAMESH_OIDC_CLIENT_ID", None, "the client id registered with the identity provider"),
    Setting(
        "oidc_client_secret",
        "FARAMESH_OIDC_CLIENT_SECRET",
        None,
        "the client secret registered with the identity provider (none: a public client, PKCE only)",
    ),
    Setting(
        "oidc_scopes",
        "FARAMESH_OIDC_SCOPES",
        "openid email profile",
        "scopes asked for at sign-in (add offline_access where the provider needs it for refresh tokens)",
    ),
    Setting(
        "oidc_groups_claim",
        "FARAMESH_OIDC_GROUPS_CLAIM",
        "groups",
        "the ID token or userinfo claim that lists a person's groups (e.g. groups, roles)",
    ),
    Setting(
        "oidc_approver_groups",
        "FARAMESH_OIDC_APPROVER_GROUPS",
        None,
        "comma-separated groups whose members sign in as approvers",
    ),
    Setting(
        "oidc_admin_groups",
        "FARAMESH_OIDC_ADMIN_GROUPS",
        None,
        "comma-separated groups whose members sign in as admins",
    ),
    Setting(
        "oidc_email_domains",
        "FARAMESH_OIDC_EMAIL_DOMAINS",
        None,
        "comma-separated email domains allowed to sign in (none: any); the email must be verified",
    ),
    Setting(
        "oidc_recheck",
        "FARAMESH_OIDC_RECHECK",
        "5m",
        "how often at most a signed-in person's groups are re-checked with the identity provider",
    ),
)
SETTING: dict[str, Setting] = {s.name: s for s in SETTINGS}  # by name


def parse_bool(value: str | bool) -> bool:
    """'true'/'false' (also 1/0, yes/no, on/off) as a bool; anything else is an error."""
    if isinstance(value, bool):
        return value
    text = value.strip().lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off"):
        return False
    raise ValueError(f"expected true or false, got {value!r}")


def parse_timeout(value: str | float | int | None, default: float) -> float | None:
    """A timeout setting: a duration, 'never' (None: no timeout), or empty for `default`."""
    if isinstance(value, str) and value.strip().lower() == "never":
        return None
    parsed = parse_duration(value)
    return default if parsed is None else parsed


def shown_database_url(url: str) -> str:
    """A database URL for messages and logs, with its password (in the address or as a
    `password=` parameter) replaced by ***: start-up lines and errors end up in logs.
    Nothing else in the URL changes."""
    try:
        parts = urlsplit(url)
        has_password = parts.password is not None
    except ValueError:  # not a URL at all: nothing in it can be told apart, so show none of it
        return "(an invalid URL)"
    if has_password:
        userinfo, _, host = parts.netloc.rpartition("@")
        url = url.replace(parts.netloc, f"{userinfo.split(':', 1)[0]}:***@{host}", 1)
    return _PASSWORD_PARAMETER.sub(r"\1***", url)


def parse_seconds(value: str | float, minimum: float) -> float:
    """A plain number of seconds, finite and at least `minimum`; else a ValueError that
    says why. (float() alone reads 'nan' and 'inf': a webhook timeout of nan seconds.)"""
    try:
        seconds = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"expected a number of seconds, got {value!r}") from None
    if not math.isfinite(seconds):
        raise ValueError(f"expected a finite number of seconds, got {value!r}")
    if seconds < minimum:
        raise ValueError(f"{value!r} is below the least accepted, {minimum:g} seconds")
    return seconds


def parse_count(value: str | int, minimum: float, maximum: int | None) -> int:
    """A whole number within [minimum, maximum]; else a ValueError that says why."""
    try:
        count = int(value)
    except (TypeError, ValueError):
        raise ValueError(f"expected a whole number, got {value!r}") from None
    if count < minimum or (maximum is not None and count > maximum):
        upper = f" to {maximum}" if maximum is not None else " or more"
        raise ValueError(f"{value!r} is outside the accepted range, {minimum:g}{upper}")
    return count


def count_range(name: str) -> tuple[int, int | None]:
    """The whole numbers the setting `name` accepts (the SETTINGS table's)."""
    setting = SETTING[name]
    assert setting.type is int and setting.minimum is not None, f"{name} is not a whole-number setting"
    return int(setting.minimum), setting.maximum


def _count(name: str) -> Callable[[Any], int]:
    return lambda value: parse_count(value, *count_range(name))


def seconds_minimum(name: str) -> float:
    """The least number of seconds the setting `name` accepts (the SETTINGS table's)."""
    minimum = SETTING[name].minimum
    assert minimum is not None, f"{name} is not a number of seconds"
    return minimum


def parse_duration(value: str | float | int | None) -> float | None:
    """A duration setting in seconds (`faramesh.durations`: 90, '90', '15m', '1h30m',
    '500ms'); None for None or ''. A bad one is a ValueError that says what is accepted."""
    if value is None or value == "":
        return None
    try:
        return durations.parse_duration(value)
    except durations.DurationError as exc:
        raise ValueError(f"{exc.message}; {exc.hint}") from None


def _or(default: float) -> Callable[[Any], float]:
    """A duration setting whose empty value means `default`."""

    def parse(value: Any) -> float:
        parsed = parse_duration(value)
        return default if parsed is None else parsed

    return parse


def _seconds(name: str) -> Callable[[Any], float]:
    return lambda value: parse_seconds(value, seconds_minimum(name))


# How Settings.from_env reads each setting that is not plain text.
_PARSERS: dict[str, Callable[[Any], Any]] = {
    "port": _count("port"),
    "workers": _count("workers"),
    "max_body_bytes": _count("max_body_bytes"),
    "max_header_bytes": _count("max_header_bytes"),
    "approval_timeout": lambda value: parse_timeout(value, DEFAULT_APPROVAL_TIMEOUT),
    "approval_lapse": lambda value: parse_timeout(value, DEFAULT_APPROVAL_LAPSE),
    "permit_ttl": _or(DEFAULT_PERMIT_TTL),
    "execution_lease": _or(DEFAULT_EXECUTION_LEASE),
    "webhook_retry_base": _seconds("webhook_retry_base"),
    "webhook_timeout": _seconds("webhook_timeout"),
    "policy_watch_interval": _seconds("policy_watch_interval"),
    "session_lifetime": _or(DEFAULT_SESSION_LIFETIME),
    "oidc_recheck": _or(DEFAULT_OIDC_RECHECK),
    "dashboard_key_login": parse_bool,
}


@dataclass
class Settings:
    host: str = "127.0.0.1"
    port: int = 8000
    database_url: str = DEFAULT_DATABASE_URL
    policy: str | None = None
    shadow_policy: str | None = None
    approval_timeout: float | None = DEFAULT_APPROVAL_TIMEOUT
    approval_lapse: float | None = DEFAULT_APPROVAL_LAPSE
    workers: int = 1
    permit_ttl: float = DEFAULT_PERMIT_TTL
    execution_lease: float = DEFAULT_EXECUTION_LEASE
    max_body_bytes: int = 1024 * 1024
    max_header_bytes: int = 64 * 1024
    rate_limit: str | None = "1000/s"
    secret_key: str | None = None
    log_format: str = "text"
    webhooks: str | None = None
    slack_config: str | None = None
    webhook_retry_base: float = 2.0
    webhook_timeout: float = 10.0
    public_url: str | None = None
    dashboard_key_login: bool = True
    session_lifetime: float = DEFAULT_SESSION_LIFETIME
    oidc_issuer: str | None = None
    oidc_client_id: str | None = None
    oidc_client_secret: str | None = None
    oidc_scopes: str = "openid email profile"
    oidc_groups_claim: str = "groups"
    oidc_approver_groups: str | None = None
    oidc_admin_groups: str | None = None
    oidc_email_domains: str | None = None
    oidc_recheck: float = DEFAULT_OIDC_RECHECK
    migrate: bool = True
    sweep_interval: float = 0.5
    policy_watch_interval: float = 0.5
    extra: dict[str, Any] = field(default_factory=dict)
    # The policy files, decided on first use and fixed from then on (see policy_path).
    _pinned: dict[str, Path | None] = field(default_factory=dict, init=False, repr=False, compare=False)

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None, **overrides: Any) -> Settings:
        env = dict(os.environ if env is None else env)
        values: dict[str, Any] = {}
        for s in SETTINGS:
            raw = env.get(s.env)
            if raw is not None and raw != "":
                values[s.name] = raw
        values.update({k: v for k, v in overrides.items() if v is not None})
        for name, parse in _PARSERS.items():
            if name in values:
                try:
                    values[name] = parse(values[name])
                except (TypeError, ValueError) as exc:  # name the setting: there are thirty
                    raise ValueError(f"{SETTING[name].env} ({name}): {exc}") from None
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in values.items() if k in known})

    def policy_path(self) -> Path | None:
        """The policy file: the explicit setting, else ./policy.yaml if present; None for the starter policy.

        Decided once, on the first call, and fixed for the life of these settings (as an
        absolute path, symlinks kept so a swapped link target is still seen): a file renamed
        or removed later is an error to reload, never a reason to fall back to the starter
        policy, and a policy.yaml that appears later does not replace the starter policy.
        """
        if "policy" not in self._pinned:
            if self.policy:
                chosen: Path | None = Path(self.policy)
            else:
                default = Path("policy.yaml")
                chosen = default if default.exists() else None
            self._pinned["policy"] = chosen.absolute() if chosen is not None else None
        return self._pinned["policy"]

    def shadow_policy_path(self) -> Path | None:
        """The shadow policy file, or None; fixed on the first call like policy_path."""
        if "shadow_policy" not in self._pinned:
            shadow = Path(self.shadow_policy).absolute() if self.shadow_policy else None
            self._pinned["shadow_policy"] = shadow
        return self._pinned["shadow_policy"]


def client_url(env: dict[str, str] | None = None) -> str:
    env = dict(os.environ if env is None else env)
    return (env.get("FARAMESH_URL") or env.get("FARAMESH_BASE_URL") or DEFAULT_URL).rstrip("/")


def client_key(env: dict[str, str] | None = None) -> str | None:
    env = dict(os.environ if env is None else env)
    return env.get("FARAMESH_API_KEY") or env.get("FARAMESH_TOKEN") or None
