"""Entry point: `faramesh <command>`."""

from __future__ import annotations

from typing import Any

import click

from faramesh import __version__, jsonstrict
from faramesh.cli.audit_cmd import audit_group
from faramesh.cli.common import (
    api_errors,
    client,
    database_option,
    echo_json,
    key_option,
    open_store,
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
    """Faramesh: an execution governor for AI agents."""


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
@database_option
def keys_create(role: str, agent_id: str | None, name: str, groups: tuple[str, ...], database_url: str) -> None:
    """Create a key. The secret is printed once, alone on the last line."""
    from faramesh.errors import FarameshError
    from faramesh.service import keys as service_keys

    with open_store(database_url) as store:
        try:
            info, secret = service_keys.create_key(
                store, role=role, name=name, agent_id=agent_id, groups=groups, actor="cli"
            )
        except FarameshError as exc:
            raise click.ClickException(exc.message) from None
    bound = f", bound to agent {info.agent_id}" if info.agent_id else ""
    grp = f", groups {', '.join(info.groups)}" if info.groups else ""
    click.echo(f"Created {info.role.value} key {info.id}{bound}{grp}. Store it now; it is not shown again:")
    click.echo(secret)


@keys_group.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@database_option
def keys_list(as_json: bool, database_url: str) -> None:
    """List keys (never their secrets)."""
    from faramesh.service import keys as service_keys

    with open_store(database_url) as store:
        infos = service_keys.list_keys(store)
    if as_json:
        echo_json([k.to_dict() for k in infos])
        return
    for k in infos:
        state = "revoked" if k.revoked_at else "active"
        extra = f" agent={k.agent_id}" if k.agent_id else ""
        extra += f" groups={','.join(k.groups)}" if k.groups else ""
        click.echo(f"{k.id}  {k.role.value:<8} {state:<7} {k.prefix}…  {k.name}{extra}")


@keys_group.command("revoke")
@click.argument("key_id")
@database_option
def keys_revoke(key_id: str, database_url: str) -> None:
    """Revoke a key; requests with it are refused from now on."""
    from faramesh.errors import FarameshError
    from faramesh.service import keys as service_keys

    with open_store(database_url) as store:
        try:
            service_keys.revoke_key(store, key_id, actor="cli")
        except FarameshError as exc:
            raise click.ClickException(exc.message) from None
    click.echo(f"Revoked key {key_id}.")


# -- actions -----------------------------------------------------------------------
@main.group("actions")
def actions_group() -> None:
    """Look at actions on a running server."""


def _action_line(a: dict[str, Any]) -> str:
    return (
        f"{a['id']}  {a['status']:<16} {a['tool']}.{a['operation']:<20} "
        f"risk={a['risk_level']:<8} agent={a['agent_id']}  {a['reason']}"
    )


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
    for a in page["actions"]:
        click.echo(_action_line(a))


@actions_group.command("show")
@click.argument("action_id")
@url_option
@key_option
def actions_show(action_id: str, url: str, api_key: str | None) -> None:
    """Show one action as JSON."""
    with api_errors(), client(url, api_key) as c:
        echo_json(c.get_action(action_id))


@actions_group.command("watch")
@url_option
@key_option
def actions_watch(url: str, api_key: str | None) -> None:
    """Print every state change as it happens (Ctrl-C to stop)."""
    import time

    last_seen: str | None = None
    with api_errors(), client(url, api_key) as c:
        try:
            while True:
                for event in c.stream_events(last_event_id=last_seen):
                    if event.get("seq") is not None:
                        last_seen = str(event["seq"])
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
@url_option
@key_option
def approve(action_id: str, reason: str | None, params_json: str | None, url: str, api_key: str | None) -> None:
    """Approve a pending action."""
    params = _json_arg(params_json, "--params")
    if params is not None and not isinstance(params, dict):
        raise click.BadParameter("must be a JSON object", param_hint="--params")
    with api_errors(), client(url, api_key) as c:
        action = c.approve_action(action_id, reason=reason, params=params)
    edited = " with edited params" if action.get("original_params") is not None and params is not None else ""
    click.echo(f"{action['id']} is now {action['status']}{edited}.")


@main.command("deny")
@click.argument("action_id")
@click.option("--reason", required=True, help="Why (shown to the agent and recorded).")
@url_option
@key_option
def deny(action_id: str, reason: str, url: str, api_key: str | None) -> None:
    """Deny a pending action."""
    with api_errors(), client(url, api_key) as c:
        action = c.deny_action(action_id, reason=reason)
    click.echo(f"{action['id']} is now {action['status']}.")


# -- database ----------------------------------------------------------------------
@main.group("db")
def db_group() -> None:
    """Database schema."""


@db_group.command("upgrade")
@database_option
def db_upgrade(database_url: str) -> None:
    """Apply all migrations."""
    from faramesh.storage.migrate import head_revision

    with open_store(database_url):
        pass
    click.echo(f"Database is at revision {head_revision()}.")


def _json_arg(value: str | None, name: str) -> Any:
    if value is None:
        return None
    try:
        return jsonstrict.loads(value)
    except ValueError as exc:
        raise click.BadParameter(f"not valid JSON: {exc}", param_hint=name) from None


if __name__ == "__main__":  # pragma: no cover
    main()
