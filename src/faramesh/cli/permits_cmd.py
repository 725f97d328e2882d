"""`faramesh permits`: the keys that sign permits (on the database directly), and
`faramesh reconcile` for an action whose outcome is unknown (through the server)."""

from __future__ import annotations

import os
from datetime import UTC, datetime
from typing import Any

import click

from faramesh.cli.common import api_errors, client, database_option, echo_json, key_option, open_store, url_option
from faramesh.config import DEFAULT_PERMIT_TTL, parse_duration


def _when(ts: float | None) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M:%SZ") if ts is not None else "-"


@click.group("permits")
def permits_group() -> None:
    """The Ed25519 keys that sign permits (works on the database directly)."""


@permits_group.command("rotate-key")
@database_option
@click.option(
    "--permit-ttl",
    envvar="FARAMESH_PERMIT_TTL",
    default="5m",
    show_default=True,
    help="The servers' permit lifetime: the retired key stays published this long (plus a minute).",
)
@click.option(
    "--new-secret",
    is_flag=True,
    help="Seal the new key under this secret although the current key was sealed under another "
    "(after changing FARAMESH_SECRET_KEY). Servers still on the old secret then cannot sign.",
)
def rotate_key(database_url: str, permit_ttl: str, new_secret: bool) -> None:
    """Make a new signing key; the old one stops signing and stays published until its permits expire.

    Running servers switch to the new key within 5 seconds. The private key is sealed
    under FARAMESH_SECRET_KEY (or the secret file beside the SQLite database): run this
    with the servers' secret.
    """
    import time

    from faramesh.service import permit_keys

    try:
        ttl = parse_duration(permit_ttl) or DEFAULT_PERMIT_TTL
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--permit-ttl") from None
    with open_store(database_url, command="permits rotate-key", create=False) as store:
        try:
            secret = permit_keys.server_secret(os.environ.get("FARAMESH_SECRET_KEY"), database_url, create=new_secret)
        except permit_keys.PermitKeyError as exc:
            raise click.ClickException(exc.message) from None
        sealer = secret.sealer
        current = permit_keys.active_row(store)
        if current is not None and current.secret_id != sealer.secret_id and not new_secret:
            raise click.ClickException(
                f"the current key {current.kid} was sealed under another server secret than {secret.source}; "
                "run with the servers' FARAMESH_SECRET_KEY, or pass --new-secret after changing it everywhere"
            )
        publish_for = ttl + permit_keys.PUBLISH_SLACK + permit_keys.RELOAD_INTERVAL
        now = time.time()
        old, new = permit_keys.rotate(store, sealer, now, publish_for=publish_for, actor="cli")
    click.echo(f"New permit signing key {new} (servers switch to it within {permit_keys.RELOAD_INTERVAL:g} seconds).")
    if old is not None:
        click.echo(f"The old key {old} stays published until {_when(now + publish_for)}, when its last permits expire.")


@permits_group.command("keys")
@database_option
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def list_keys(database_url: str, as_json: bool) -> None:
    """List the signing keys (never their private halves), newest first."""
    import time

    from faramesh.service import permit_keys

    with open_store(database_url, command="permits keys", create=False) as store:
        rows = permit_keys.key_rows(store)
    now = time.time()
    entries: list[dict[str, Any]] = [
        {
            "kid": r.kid,
            "state": "signing" if r.active else ("published" if (r.publish_until or 0) > now else "retired"),
            "created_at": _when(r.created_at),
            "retired_at": _when(r.retired_at) if r.retired_at else None,
            "published_until": _when(r.publish_until) if r.publish_until else None,
        }
        for r in rows
    ]
    if as_json:
        echo_json(entries)
        return
    if not entries:
        click.echo("No permit keys yet; `faramesh serve` makes the first one.")
    for e in entries:
        until = f"  published until {e['published_until']}" if e["state"] == "published" else ""
        click.echo(f"{e['kid']}  {e['state']:<9} created {e['created_at']}{until}")


@click.command("reconcile")
@click.argument("action_id")
@click.option(
    "--outcome",
    type=click.Choice(["succeeded", "failed"]),
    required=True,
    help="What became of the action: it ran (succeeded) or it did not (failed).",
)
@click.option("--reason", required=True, help="How you know (recorded in the audit log).")
@url_option
@key_option
def reconcile_command(action_id: str, outcome: str, reason: str, url: str, api_key: str | None) -> None:
    """Record what became of an action whose outcome is unknown (approver or admin key)."""
    with api_errors(), client(url, api_key) as c:
        action = c.reconcile(action_id, outcome, reason=reason)
    click.echo(f"{action['id']} is now {action['status']}.")
