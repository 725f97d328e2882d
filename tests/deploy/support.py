"""Reading the files in deploy/ the way Docker and Compose read them, for the checks
that can run on a machine without a Docker daemon."""

from __future__ import annotations

import json
import os
import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"


@dataclass
class Instruction:
    keyword: str  # upper case: RUN, COPY, ENV, ...
    args: str  # the rest of the instruction, continuation lines joined


@dataclass
class Stage:
    name: str
    base: str
    instructions: list[Instruction] = field(default_factory=list)

    def all(self, keyword: str) -> list[Instruction]:
        return [i for i in self.instructions if i.keyword == keyword]

    def env(self) -> dict[str, str]:
        """The stage's ENV, in the `ENV K=V K2=V2` form."""
        found: dict[str, str] = {}
        for instruction in self.all("ENV"):
            for word in shlex.split(instruction.args):
                name, _, value = word.partition("=")
                found[name] = value
        return found

    def arg(self, name: str) -> str | None:
        for instruction in self.all("ARG"):
            key, _, default = instruction.args.partition("=")
            if key.strip() == name:
                return default.strip() or None
        return None


def parse_dockerfile(path: Path) -> tuple[dict[str, str], list[Stage]]:
    """The global ARGs (before the first FROM) and the stages, in order."""
    text = re.sub(
        r"\\\n", " ", "\n".join(line for line in path.read_text().splitlines() if not line.lstrip().startswith("#"))
    )
    global_args: dict[str, str] = {}
    stages: list[Stage] = []
    for line in text.splitlines():
        if not line.strip():
            continue
        keyword, _, args = line.strip().partition(" ")
        keyword, args = keyword.upper(), " ".join(args.split())
        if keyword == "FROM":
            match = re.fullmatch(r"(\S+)(?: AS (\S+))?", args, re.I)
            assert match, line
            stages.append(Stage(name=match.group(2) or str(len(stages)), base=match.group(1)))
        elif not stages:
            assert keyword == "ARG", f"{keyword} before the first FROM"
            key, _, default = args.partition("=")
            global_args[key] = default
        else:
            stages[-1].instructions.append(Instruction(keyword, args))
    return global_args, stages


def exec_form(args: str) -> list[str]:
    """A JSON-array instruction argument (CMD, HEALTHCHECK's CMD, ...)."""
    value = json.loads(args)
    assert isinstance(value, list) and all(isinstance(v, str) for v in value), args
    return value


_VARIABLE = re.compile(r"\$\{(\w+)(?::([-?])([^}]*))?\}")


def interpolate(value: str, env: dict[str, str]) -> str:
    """Compose's ${VAR}, ${VAR:-default} and ${VAR:?error} substitution."""

    def replace(match: re.Match[str]) -> str:
        name, kind, text = match.groups()
        if env.get(name):
            return env[name]
        if kind == "-":
            return text
        raise KeyError(f"{name} is required: {text}")

    return _VARIABLE.sub(replace, value)


def clean_env(**extra: str) -> dict[str, str]:
    """This process's environment without FARAMESH_* settings, plus `extra`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("FARAMESH_")}
    env.update(extra)
    return env
