"""docs/audit.md stays true: every recorded event is documented, every documented
option exists."""

from __future__ import annotations

import re
from pathlib import Path

import click

from faramesh.cli.audit_cmd import audit_group

ROOT = Path(__file__).resolve().parents[2]
DOC = (ROOT / "docs" / "audit.md").read_text()


def appended_events() -> set[str]:
    events: set[str] = set()
    for path in (ROOT / "src" / "faramesh").rglob("*.py"):
        text = path.read_text()
        if "audit.append(" not in text:
            continue
        for line in re.findall(r"\bevent\s*=\s*(.+)", text):
            events.update(re.findall(r'"([a-z_]+\.[a-z_]+)"', line))
    return events


def test_every_recorded_event_is_documented() -> None:
    events = appended_events()
    assert {"action.submitted", "action.approved", "key.created", "policy.reloaded"} <= events
    table = DOC.split("## How records are chained")[0]
    missing = sorted(e for e in events if f"`{e}`" not in table)
    assert not missing, f"events recorded but not in the table of docs/audit.md: {missing}"


def test_documented_options_exist() -> None:
    commands = {name: cmd for name, cmd in audit_group.commands.items() if isinstance(cmd, click.Command)}
    assert set(commands) == {"verify", "export", "checkpoint"}
    shown = 0
    for line in DOC.splitlines():
        code = line.split("#", 1)[0]  # examples carry comments after "#"
        for match in re.finditer(r"faramesh audit (verify|export|checkpoint)\b((?:(?!faramesh)[^|])*)", code):
            options = {o for p in commands[match.group(1)].params for o in p.opts}
            for option in re.findall(r"(?<![\w-])(--[a-z][a-z-]*|-o)\b", match.group(2)):
                shown += 1
                assert option in options, f"docs/audit.md shows {option} for `faramesh audit {match.group(1)}`: {line}"
    assert shown >= 8
