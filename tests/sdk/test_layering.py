"""The SDK and the integrations stand alone: they need neither the server nor storage,
and the SDK's own modules import each other in one direction only."""

from __future__ import annotations

import ast
import json
import pkgutil
import subprocess
import sys
from pathlib import Path

import faramesh.integrations
import faramesh.sdk

# Packages and modules an agent-side import must never pull in.
FORBIDDEN = ("faramesh.server", "faramesh.storage", "faramesh.service", "sqlalchemy", "fastapi")
SDK_DIR = Path(faramesh.sdk.__file__).parent


def _modules_to_check() -> list[str]:
    integrations = [f"faramesh.integrations.{m.name}" for m in pkgutil.iter_modules(faramesh.integrations.__path__)]
    sdk = [f"faramesh.sdk.{m.name}" for m in pkgutil.iter_modules(faramesh.sdk.__path__)]
    return ["faramesh", "faramesh.sdk", *sdk, "faramesh.integrations", *integrations]


def test_sdk_and_integrations_import_no_server_or_storage() -> None:
    # A fresh interpreter: this one has already imported the server for other tests.
    code = (
        "import importlib, json, sys\n"
        f"for name in {_modules_to_check()!r}:\n"
        "    importlib.import_module(name)\n"
        "print(json.dumps(sorted(sys.modules)))\n"
    )
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    loaded = json.loads(run.stdout)
    assert "faramesh.integrations.mcp" in loaded and "faramesh.sdk.govern" in loaded
    pulled = [m for m in loaded if any(m == f or m.startswith(f + ".") for f in FORBIDDEN)]
    assert pulled == [], f"importing the SDK and integrations loaded {pulled}"


def _sdk_imports(path: Path) -> set[str]:
    """The faramesh.sdk modules a module imports, at the top or inside functions."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module:
            names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
        elif isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        else:
            continue
        found |= {n for n in names if n.startswith("faramesh.sdk.") and (SDK_DIR / f"{n.split('.')[2]}.py").exists()}
    return {".".join(n.split(".")[:3]) for n in found}


def test_sdk_modules_have_no_import_cycle() -> None:
    graph = {f"faramesh.sdk.{p.stem}": _sdk_imports(p) - {f"faramesh.sdk.{p.stem}"} for p in SDK_DIR.glob("*.py")}
    graph.pop("faramesh.sdk.__init__", None)
    done: set[str] = set()

    def visit(module: str, path: tuple[str, ...]) -> None:
        assert module not in path, "import cycle: " + " -> ".join((*path, module))
        if module in done:
            return
        for dep in sorted(graph.get(module, ())):
            visit(dep, (*path, module))
        done.add(module)

    for module in sorted(graph):
        visit(module, ())
    # The decorator builds default clients on top of the cycle; the cycle knows no client.
    assert graph["faramesh.sdk.govern"] >= {"faramesh.sdk.client", "faramesh.sdk.governed"}
    assert "faramesh.sdk.client" not in graph["faramesh.sdk.governed"]
