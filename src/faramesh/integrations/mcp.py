"""An MCP gateway that governs every tool call (`pip install "faramesh[mcp]"`).

    faramesh mcp proxy --name files -- python my_server.py

The gateway starts the downstream MCP server as a subprocess over stdio and serves the
same tools upstream over its own stdio. Every `tools/call` is submitted to Faramesh as
tool `<server>.<tool>` (other characters mapped to `_`), operation `call`, with the
call's arguments as `params`. It is forwarded only when allowed or approved (with the
approved arguments), and the downstream result is reported. A denial, an approval
timeout or an unreachable Faramesh server answers the call with an MCP error result
(`isError: true`) that says why; the downstream server never sees the call.

While a call is held (waiting for a person, or for a restarting Faramesh server), the
gateway sends `notifications/progress` every `progress_interval` seconds to a client that
gave the call a progress token, so a client that resets its request timeout on progress
keeps waiting instead of giving up after its usual 60 seconds.

When the client gives up on a held call (its request timeout sends `notifications/cancelled`,
or it cancels the call or disconnects), the call is cancelled here too and `on_abandon`
decides what becomes of the action: "keep" (default) leaves it held, so the client calling
the same tool with the same arguments again picks up the decision (and the tool runs
once); "cancel" withdraws it. The gateway's own `timeout` is treated the same way.

MCP tasks (protocol revision 2025-11-25: task-augmented `tools/call`, `tasks/get`,
`tasks/result`) are not offered: the `mcp` package (2.3) carries their types only. Its
server validates a 2025-11-25 `tools/call` result as a `CallToolResult` (so a
`CreateTaskResult` is refused as an invalid result) and routes no `tasks/*` method, and
its client has no way to request a task. Progress notifications and re-attach cover
the long wait instead.

Only tools are proxied: the gateway does not expose the downstream server's resources
or prompts, which would bypass governance.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import re
import time
import unicodedata
from collections.abc import AsyncIterator, Mapping, Sequence
from typing import Any

import mcp.types as types
from mcp.client.session import ClientSession
from mcp.client.stdio import StdioServerParameters, stdio_client
from mcp.server import Server, ServerRequestContext
from mcp.server.stdio import stdio_server

from faramesh.sdk.client import AsyncExecutionGovernorClient
from faramesh.sdk.errors import ActionDenied, ApprovalTimeout, FarameshClientError, ServerUnavailable
from faramesh.sdk.govern import DEFAULT_ON_ABANDON, DEFAULT_TIMEOUT, Gate, OnAbandon, Outcome, json_params, jsonable

__all__ = ["faramesh_tool_name", "run_proxy"]

log = logging.getLogger("faramesh.mcp")

_NOT_NAME = re.compile(r"[^A-Za-z0-9_.:/-]")
# Faramesh's own credentials are not passed on to the downstream server.
_PRIVATE_ENV = ("FARAMESH_API_KEY", "FARAMESH_TOKEN")
PROGRESS_INTERVAL = 10.0


def faramesh_tool_name(server: str, tool: str) -> str:
    """`<server>.<tool>` in the characters Faramesh accepts for a tool name."""
    name = unicodedata.normalize("NFKC", f"{server}.{tool}")
    return _NOT_NAME.sub("_", name)[:128]


def _error_result(text: str) -> types.CallToolResult:
    return types.CallToolResult(content=[types.TextContent(type="text", text=text)], is_error=True)


def _outcome(result: types.CallToolResult) -> Outcome:
    content = jsonable(result.content)
    report: dict[str, Any] = {"content": content}
    if result.structured_content is not None:
        report["structured_content"] = jsonable(result.structured_content)
    if result.is_error:
        texts = [c.text for c in result.content if isinstance(c, types.TextContent)]
        return False, report, "\n".join(texts) or "the tool reported an error"
    return True, report, None


def downstream_env(env: Mapping[str, str] | None = None) -> dict[str, str]:
    source = os.environ if env is None else env
    return {k: v for k, v in source.items() if k not in _PRIVATE_ENV}


@contextlib.asynccontextmanager
async def progress_while_held(
    ctx: ServerRequestContext[Any], label: str, interval: float
) -> AsyncIterator[dict[str, str]]:
    """Send a progress notification every `interval` seconds until the block ends (a no-op
    for a client that sent no progress token). The block may change `status["message"]`."""
    status = {"message": f"waiting for Faramesh to decide on {label} (a person may need to approve it)"}
    started = time.monotonic()

    async def beat() -> None:
        while True:
            await asyncio.sleep(interval)
            held = round(time.monotonic() - started, 1)
            try:
                await ctx.session.report_progress(held, None, f"{status['message']} ({held:g}s)")
            except Exception as exc:  # a client that went away must not fail the call here
                log.debug("could not send progress for %s: %s", label, exc)
                return

    task = asyncio.create_task(beat())
    try:
        yield status
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


class Gateway:
    """Serves the downstream session's tools; asks Faramesh before forwarding each call."""

    def __init__(
        self,
        downstream: ClientSession,
        governor: AsyncExecutionGovernorClient,
        *,
        server_name: str,
        operation: str = "call",
        timeout: float | None = DEFAULT_TIMEOUT,
        agent_id: str | None = None,
        progress_interval: float = PROGRESS_INTERVAL,
        on_abandon: OnAbandon = DEFAULT_ON_ABANDON,
    ) -> None:
        self.downstream = downstream
        self.progress_interval = progress_interval
        self.on_abandon = on_abandon
        self.governor = governor
        self.server_name = server_name
        self.operation = operation
        self.timeout = timeout
        self.agent_id = agent_id
        self.server: Server[Any] = Server(
            server_name,
            on_list_tools=self.list_tools,
            on_call_tool=self.call_tool,
        )

    async def list_tools(
        self, ctx: ServerRequestContext[Any], params: types.PaginatedRequestParams | None
    ) -> types.ListToolsResult:
        return await self.downstream.list_tools(params=params)

    async def call_tool(
        self, ctx: ServerRequestContext[Any], params: types.CallToolRequestParams
    ) -> types.CallToolResult:
        name = params.name
        gate = Gate(
            faramesh_tool_name(self.server_name, name),
            self.operation,
            client=self.governor,
            timeout=self.timeout,
            agent_id=self.agent_id,
            on_abandon=self.on_abandon,
        )

        try:
            arguments = json_params(params.arguments or {}, gate.label)
        except TypeError as exc:
            return _error_result(f"Not forwarded: {exc}")
        async with progress_while_held(ctx, gate.label, self.progress_interval) as progress:

            async def forward(decided: dict[str, Any], edited: bool) -> types.CallToolResult:
                progress["message"] = f"approved; {name} is running"
                result = await self.downstream.call_tool(name, decided)
                if not isinstance(result, types.CallToolResult):
                    raise TypeError(f"the downstream server answered {name} with {type(result).__name__}")
                return result

            try:
                return await gate.arun(arguments, forward, outcome=_outcome)
            except ServerUnavailable as exc:
                log.error("Faramesh could not decide on %s: %s", gate.label, exc)
                return _error_result(f"Faramesh could not decide on this call ({exc}). The tool was not run.")
            except (ActionDenied, ApprovalTimeout) as exc:
                return _error_result(f"Not permitted by Faramesh: {exc}. The tool was not run.")
            except FarameshClientError as exc:
                log.error("Faramesh could not decide on %s: %s", gate.label, exc)
                return _error_result(f"Faramesh could not decide on this call ({exc}). The tool was not run.")


async def run_proxy(
    command: Sequence[str],
    *,
    name: str | None = None,
    url: str | None = None,
    api_key: str | None = None,
    operation: str = "call",
    timeout: float | None = DEFAULT_TIMEOUT,
    agent_id: str | None = None,
    cwd: str | None = None,
    progress_interval: float = PROGRESS_INTERVAL,
    on_abandon: OnAbandon = DEFAULT_ON_ABANDON,
) -> None:
    """Run the gateway on this process's stdin/stdout until the upstream client leaves."""
    if not command:
        raise ValueError("no downstream server command given")
    params = StdioServerParameters(command=command[0], args=list(command[1:]), env=downstream_env(), cwd=cwd)
    async with (
        AsyncExecutionGovernorClient(url, api_key) as governor,
        stdio_client(params) as (down_read, down_write),
        ClientSession(down_read, down_write) as downstream,
    ):
        init = await downstream.initialize()
        server_name = name or init.server_info.name
        gateway = Gateway(
            downstream,
            governor,
            server_name=server_name,
            operation=operation,
            timeout=timeout,
            agent_id=agent_id,
            progress_interval=progress_interval,
            on_abandon=on_abandon,
        )
        log.info("governing MCP server %r as %s.<tool>", command, server_name)
        async with stdio_server() as (up_read, up_write):
            await gateway.server.run(up_read, up_write, gateway.server.create_initialization_options())
