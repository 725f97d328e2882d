"""A small MCP server (the mcp package's MCPServer, formerly FastMCP) for the gateway tests.

Every tool appends a line to the file named by DEMO_LOG, so a test can tell whether a
call reached the server.
"""

from __future__ import annotations

import json
import os

from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ToolError

server = MCPServer("demo")


def _record(tool: str, args: dict[str, object]) -> None:
    with open(os.environ["DEMO_LOG"], "a", encoding="utf-8") as log:
        log.write(json.dumps({"tool": tool, "args": args}) + "\n")


@server.tool()
def add(a: int, b: int) -> int:
    """Add two numbers."""
    _record("add", {"a": a, "b": b})
    return a + b


@server.tool()
def send_email(to: str, subject: str) -> str:
    """Send an email."""
    _record("send_email", {"to": to, "subject": subject})
    return f"sent {subject!r} to {to}"


@server.tool()
def delete_file(path: str) -> str:
    """Delete a file."""
    _record("delete_file", {"path": path})
    return f"deleted {path}"


@server.tool()
def divide(a: float, b: float) -> float:
    """Divide a by b."""
    _record("divide", {"a": a, "b": b})
    if b == 0:
        raise ToolError("division by zero")
    return a / b


if __name__ == "__main__":
    server.run()
