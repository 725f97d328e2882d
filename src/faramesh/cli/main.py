"""Entry point: `faramesh <command>`."""

from __future__ import annotations

import json
from typing import Any

import click

from faramesh import __version__, jsonstrict
from faramesh.cli.audit_cmd import audit_group
from faramesh.cli.common import (
    api_errors,
    client,
    database_option,
    describe_database,
    echo_json,
    echo_table,
    key_option,
    open_store,
    require_server,
    service_errors,
    url_option,
)
from faramesh.cli.mcp_cmd import mcp_group
from faramesh.cli.permits_cmd import permits_group, reconcile_command
from faramesh.cli.policy_cmd import init_command, packs_group, policy_group
from faramesh.cli.serve import serve
from faramesh.model import Role


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="faramesh")
def main() -> None:
    """Faramesh: an execution governor for AI agents.

    Exit codes: 0 ok, 1 failed, 2 usage, 3 not found, 4 conflict, 5 auth,
    6 server unreachable, 7 rate limited, 8 undecided (docs/cli.md).
    """


main.add_command(serve)
main.add_command(mcp_group)
main.add_command(audit_group)
main.add_command(policy_group)
main.add_command(packs_group)
main.add_command(init_command)
main.add_command(permits_group)
main.add_command(reconcile_command)


# -- keys --------------------------------------------------------------------------
@main.group("keys")
def keys_group() -> None:
    """Create, list and revoke API keys (works on the database directly)."""


@keys_group.command("create")
@click.option("--role", type=click.Choice([r.value for r in Role]), required=True, help="What the key may do.")
@click.option("--agent-id", default=None, help="Bind the key to one agent id (agent keys).")
@click.option("--name", default="", help="A label for people.")
@click.option("--group", "groups", multiple=True, help="Approver group (repeatable).")
@click.option(
    "--create-db",
    is_flag=True,
    help="Create the database if it does not exist yet (otherwise a missing SQLite file is an error).",
)
@click.option("--json", "as_json", is_flag=True, help="Print the key's details and its secret as JSON.")
@database_option
def keys_create(
    role: str,
    agent_id: str | None,
    name: str,
    groups: tuple[str, ...],
    create_db: bool,
    as_json: bool,
    database_url: str,
) -> None:
    """Create a key in the database the server uses. The secret is printed once, alone on the last line.

    The database used is named on standard error. Run it where the server's FARAMESH_DATABASE_URL
    (or --database-url) points: a key in another database is rejected by the server.
    """
    require_server("keys create")
    from faramesh.service import keys as service_keys

    new_db = " (run this where the server runs, or pass --create-db to start a new database)"
    with open_store(database_url, command="keys create", create=create_db, hint=new_db) as store, service_errors():
        info, secret = service_keys.create_key(
            store, role=role, name=name, agent_id=agent_id, groups=groups, actor="cli"
        )
    if as_json:
        echo_json({**info.to_dict(), "database": describe_database(database_url), "key": secret})
        return
    bound = f", bound to agent {info.agent_id}" if info.agent_id else ""
    grp = f", groups {', '.join(info.groups)}" if info.groups else ""
    click.echo(f"Database: {describe_database(database_url)}", err=True)  # stdout keeps its two lines
    click.echo(f"Created {info.role.value} key {info.id}{bound}{grp}. Store it now; it is not shown again:")
    click.echo(secret)


@keys_group.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@database_option
def keys_list(as_json: bool, database_url: str) -> None:
    """List keys (never their secrets)."""
    require_server("keys list")
    from faramesh.service import keys as service_keys

    with open_store(database_url, command="keys list", create=False) as store:
        infos = service_keys.list_keys(store)
    if as_json:
        echo_json([k.to_dict() for k in infos])
        return
    echo_table(("ID", "ROLE", "STATE", "PREFIX", "AGENT", "GROUPS", "NAME"), (_key_row(k) for k in infos))


def _key_row(k: Any) -> tuple[Any, ...]:
    state = "revoked" if k.revoked_at else "active"
    return (k.id, k.role.value, state, f"{k.prefix}…", k.agent_id or "-", ",".join(k.groups) or "-", k.name)


@keys_group.command("revoke")
@click.argument("key_id")
@database_option
def keys_revoke(key_id: str, database_url: str) -> None:
    """Revoke a key; requests with it are refused from now on."""
    require_server("keys revoke")
    from faramesh.service import keys as service_keys

    with open_store(database_url, command="keys revoke", create=False) as store, service_errors():
        service_keys.revoke_key(store, key_id, actor="cli")
    click.echo(f"Revoked key {key_id}.")


# -- actions -----------------------------------------------------------------------
@main.group("actions")
def actions_group() -> None:
    """Look at actions on a running server."""


ACTION_COLUMNS = ("ID", "STATUS", "TOOL", "OPERATION", "RISK", "AGENT", "REASON")


def _action_row(a: dict[str, Any]) -> tuple[Any, ...]:
    return (a["id"], a["status"], a["tool"], a["operation"], a["risk_level"], a["agent_id"], a["reason"])


@actions_group.command("list")
@click.option("--status", default=None, help="Only this status, e.g. pending_approval.")
@click.option("--tool", default=None)
@click.option("--agent-id", default=None)
@click.option("--limit", default=50, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@url_option
@key_option
def actions_list(
    status: str | None, tool: str | None, agent_id: str | None, limit: int, as_json: bool, url: str, api_key: str | None
) -> None:
    """List actions, newest first."""
    with api_errors(), client(url, api_key) as c:
        page = c.list_actions(status=status, tool=tool, agent_id=agent_id, limit=limit)
    if as_json:
        echo_json(page["actions"])
        return
    if not page["actions"]:
        click.echo("No actions.")
        return
    echo_table(ACTION_COLUMNS, (_action_row(a) for a in page["actions"]))


@actions_group.command("show")
@click.argument("action_id")
@url_option
@key_option
def actions_show(action_id: str, url: str, api_key: str | None) -> None:
    """Show one action as JSON."""
    with api_errors(), client(url, api_key) as c:
        echo_json(c.get_action(action_id))


@actions_group.command("watch")
@click.option("--json", "as_json", is_flag=True, help="Print each event as one JSON object per line.")
@url_option
@key_option
def actions_watch(as_json: bool, url: str, api_key: str | None) -> None:
    """Print every state change as it happens (Ctrl-C to stop)."""
    import time

    last_seen: str | None = None
    with api_errors(), client(url, api_key) as c:
        try:
            while True:
                for event in c.stream_events(last_event_id=last_seen):
                    if event.get("seq") is not None:
                        last_seen = str(event["seq"])
                    if as_json:
                        click.echo(json.dumps(event, ensure_ascii=False, default=str))
                        continue
                    action = event.get("action") or {}
                    click.echo(
                        f"{event.get('type'):<26} {event.get('action_id')}  {action.get('status', '')}  "
                        f"{action.get('tool', '')}.{action.get('operation', '')}"
                    )
                # The server ended the stream (e.g. a restart): resume after the last event seen.
                time.sleep(1.0)
        except KeyboardInterrupt:
            pass


# -- decisions ---------------------------------------------------------------------
@main.command("approve")
@click.argument("action_id")
@click.option("--reason", default=None, help="Why (recorded in the audit log).")
@click.option(
    "--params",
    "params_json",
    default=None,
    metavar="JSON",
    help="Approve these edited params instead, e.g. '{\"amount\": 80}' (the policy re-checks them).",
)
@click.option("--json", "as_json", is_flag=True, help="Print the action as JSON.")
@url_option
@key_option
def approve(
    action_id: str, reason: str | None, params_json: str | None, as_json: bool, url: str, api_key: str | None
) -> None:
    """Approve a pending action."""
    params = _json_arg(params_json, "--params")
    if params is not None and not isinstance(params, dict):
        raise click.BadParameter("must be a JSON object", param_hint="--params")
    with api_errors(), client(url, api_key) as c:
        action = c.approve_action(action_id, reason=reason, params=params)
    if as_json:
        echo_json(action)
        return
    edited = " with edited params" if action.get("original_params") is not None and params is not None else ""
    click.echo(f"{action['id']} is now {action['status']}{edited}.")


@main.command("deny")
@click.argument("action_id")
@click.option("--reason", required=True, help="Why (shown to the agent and recorded).")
@click.option("--json", "as_json", is_flag=True, help="Print the action as JSON.")
@url_option
@key_option
def deny(action_id: str, reason: str, as_json: bool, url: str, api_key: str | None) -> None:
    """Deny a pending action."""
    with api_errors(), client(url, api_key) as c:
        action = c.deny_action(action_id, reason=reason)
    if as_json:
        echo_json(action)
        return
    click.echo(f"{action['id']} is now {action['status']}.")


# -- database ----------------------------------------------------------------------
@main.group("db")
def db_group() -> None:
    """Database schema."""


@db_group.command("upgrade")
@database_option
def db_upgrade(database_url: str) -> None:
    """Apply all migrations (creates the database if it does not exist)."""
    with open_store(database_url, command="db upgrade"):
        pass
    from faramesh.storage.migrate import head_revision

    click.echo(f"Database {describe_database(database_url)} is at revision {head_revision()}.")


def _json_arg(value: str | None, name: str) -> Any:
    if value is None:
        return None
    try:
        return jsonstrict.loads(value)
    except ValueError as exc:
        raise click.BadParameter(f"not valid JSON: {exc}", param_hint=name) from None


if __name__ == "__main__":  # pragma: no cover
    main()
