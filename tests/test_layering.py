"""Only storage speaks SQL: the HTTP and dashboard code and the policy package import neither
SQLAlchemy nor the schema, and the server reads through the service instead of opening
database connections of its own."""

from __future__ import annotations

import ast
import re
from pathlib import Path

SRC = Path(__file__).parents[1] / "src" / "faramesh"
# Still reading the database directly, until the service package takes their reads over:
# the /v1 API (key management, the events replay) and the admin pages (keys, webhooks).
NOT_YET_MOVED = {"server/api.py", "server/web/admin.py"}
SQL_MODULES = ("sqlalchemy", "faramesh.storage.schema")
RAW_CONNECTION = re.compile(r"\bstore\.(read|write|connect)\b")


def imported(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def sources(*packages: str) -> list[tuple[str, Path]]:
    return [(p.relative_to(SRC).as_posix(), p) for pkg in packages for p in sorted((SRC / pkg).rglob("*.py"))]


def touches(names: set[str], prefixes: tuple[str, ...]) -> list[str]:
    return sorted(n for n in names if any(n == p or n.startswith(p + ".") for p in prefixes))


def test_server_and_policy_import_no_sql() -> None:
    found = {
        name: touches(imported(path), SQL_MODULES)
        for name, path in sources("server", "policy")
        if name not in NOT_YET_MOVED
    }
    assert {name: mods for name, mods in found.items() if mods} == {}


def test_the_policy_package_needs_no_storage() -> None:
    found = {name: touches(imported(path), ("faramesh.storage",)) for name, path in sources("policy")}
    assert {name: mods for name, mods in found.items() if mods} == {}


def test_the_server_opens_no_database_connection() -> None:
    found = {
        name: RAW_CONNECTION.findall(path.read_text(encoding="utf-8"))
        for name, path in sources("server")
        if name not in NOT_YET_MOVED
    }
    assert {name: calls for name, calls in found.items() if calls} == {}
