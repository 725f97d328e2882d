"""What the CLI adds for people at a terminal: progress bars (never in pipes) and shell completion."""

from __future__ import annotations

import os
import pty
import select
import subprocess
import sys
from pathlib import Path

from tests.conftest import faramesh_cmd

FARAMESH = Path(sys.executable).parent / "faramesh"  # the console script pip installed


def database_with_records(tmp_path: Path) -> str:
    url = f"sqlite:///{tmp_path / 'faramesh.db'}"
    for i in range(3):
        args = ["keys", "create", "--role", "agent", "--name", f"a{i}", "--database-url", url, "--create-db"]
        subprocess.run(faramesh_cmd(*args), check=True, capture_output=True, timeout=60)
    return url


def run_with_terminal_stderr(args: list[str]) -> tuple[int, str, str]:
    """Run with standard error on a pseudo-terminal (as in an interactive shell), stdout piped."""
    leader, follower = pty.openpty()
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=follower, text=True)
    os.close(follower)
    seen = b""
    while True:
        ready, _, _ = select.select([leader], [], [], 30)
        if not ready:
            break
        try:
            chunk = os.read(leader, 4096)
        except OSError:  # the child closed the terminal
            break
        if not chunk:
            break
        seen += chunk
    out, _ = proc.communicate(timeout=60)
    os.close(leader)
    return proc.returncode, out, seen.decode(errors="replace")


def test_progress_bar_only_on_a_terminal(tmp_path: Path) -> None:
    url = database_with_records(tmp_path)
    for command, label in (
        (["audit", "verify"], "Verifying the audit log"),
        (["audit", "export", "-o", str(tmp_path / "log.jsonl")], "Exporting the audit log"),
    ):
        code, out, terminal = run_with_terminal_stderr(faramesh_cmd(*command, "--database-url", url))
        assert code == 0, terminal
        assert label in terminal and "100%" in terminal, terminal
        assert label not in out
        piped = subprocess.run(
            faramesh_cmd(*command, "--database-url", url), capture_output=True, text=True, timeout=60
        )
        assert piped.returncode == 0 and label not in piped.stderr + piped.stdout
    assert (tmp_path / "log.jsonl").read_text().count("\n") >= 3


def test_shell_completion_as_documented() -> None:
    doc = (Path(__file__).resolve().parents[2] / "docs" / "cli.md").read_text()
    assert 'eval "$(_FARAMESH_COMPLETE=bash_source faramesh)"' in doc
    env = {**os.environ, "_FARAMESH_COMPLETE": "bash_source"}
    script = subprocess.run([str(FARAMESH)], env=env, capture_output=True, text=True, timeout=60)
    assert script.returncode == 0 and "complete " in script.stdout and "_faramesh_completion" in script.stdout
    env = {**os.environ, "_FARAMESH_COMPLETE": "bash_complete", "COMP_WORDS": "faramesh keys create --role a"}
    env["COMP_CWORD"] = "4"
    words = subprocess.run([str(FARAMESH)], env=env, capture_output=True, text=True, timeout=60)
    assert "plain,agent" in words.stdout.splitlines() and "plain,admin" in words.stdout.splitlines()
