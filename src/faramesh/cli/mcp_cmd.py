"""`faramesh mcp proxy -- COMMAND...`: govern an MCP server's tool calls."""

from __future__ import annotations

import logging

import click

from faramesh.cli.common import Seconds, key_option, url_option


@click.group("mcp")
def mcp_group() -> None:
    """Model Context Protocol gateway (needs the mcp extra: pip install "faramesh[mcp]")."""


@mcp_group.command(
    "proxy",
    context_settings={"ignore_unknown_options": True, "allow_interspersed_args": False},
)
@click.option("--name", default=None, help="Server name for tool names (<name>.<tool>); default: the server's own.")
@click.option("--operation", default="call", show_default=True, help="Faramesh operation for every tool call.")
@click.option(
    "--timeout",
    type=Seconds(0.0),
    default=300.0,
    show_default=True,
    help="Seconds to wait for a person to approve a held call; 0 waits without limit.",
)
@click.option(
    "--progress-interval",
    type=Seconds(0.05),
    default=10.0,
    show_default=True,
    help="Seconds between MCP progress notifications while a call is held (sent when the client asked for progress).",
)
@click.option(
    "--on-abandon",
    type=click.Choice(["keep", "cancel"]),
    default="keep",
    show_default=True,
    help="When the client gives up on a held call (timeout, cancellation): keep the action for the same call "
    "made again, or cancel it.",
)
@click.option("--agent-id", default=None, help="Agent id to submit calls as (unbound keys only).")
@click.option("--cwd", default=None, type=click.Path(file_okay=False), help="Working directory of the server.")
@url_option
@key_option
@click.argument("command", nargs=-1, required=True, type=click.UNPROCESSED)
def proxy(
    name: str | None,
    operation: str,
    timeout: float,
    progress_interval: float,
    on_abandon: str,
    agent_id: str | None,
    cwd: str | None,
    url: str,
    api_key: str | None,
    command: tuple[str, ...],
) -> None:
    """Run COMMAND as a downstream MCP server (stdio) and serve its tools on stdio,
    submitting every tools/call to Faramesh and forwarding it only when allowed or
    approved. Put `--` before the command:

        faramesh mcp proxy --name files -- python files_server.py
    """
    if not api_key:
        raise click.UsageError("no API key: set FARAMESH_API_KEY or pass --api-key")
    try:
        import anyio

        from faramesh.integrations.mcp import run_proxy
    except ImportError as exc:
        raise click.ClickException(
            f'the MCP gateway needs the mcp extra: pip install "faramesh[mcp]" ({exc})'
        ) from None
    # stdout carries the protocol: log to stderr only.
    logging.basicConfig(level=logging.INFO, format="faramesh mcp: %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)

    async def main() -> None:
        await run_proxy(
            list(command),
            name=name,
            url=url,
            api_key=api_key,
            operation=operation,
            timeout=timeout or None,
            progress_interval=progress_interval,
            on_abandon="cancel" if on_abandon == "cancel" else "keep",
            agent_id=agent_id,
            cwd=cwd,
        )

    anyio.run(main)
