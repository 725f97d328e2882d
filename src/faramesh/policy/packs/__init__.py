"""Ready-made policies for common tools, each with its own test cases.

``index.yaml`` lists the packs: a name, a one-line description and the two
files (``<name>/policy.yaml`` and ``<name>/cases.yaml``). The tests run every
pack's cases and lint every pack.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from importlib import resources

from faramesh.policy.parser import load_plain

INDEX = "index.yaml"


class UnknownPack(KeyError):
    def __init__(self, name: str, known: list[str]) -> None:
        close = difflib.get_close_matches(name, known, n=1)
        hint = f"did you mean {close[0]}?" if close else "known packs: " + ", ".join(known)
        self.message = f"no pack named {name!r} ({hint})"
        super().__init__(self.message)

    def __str__(self) -> str:
        return self.message


@dataclass(frozen=True)
class Pack:
    name: str
    description: str
    policy_file: str
    cases_file: str

    @property
    def policy_text(self) -> str:
        return _read(self.policy_file)

    @property
    def cases_text(self) -> str:
        return _read(self.cases_file)


def _read(relative: str) -> str:
    return resources.files(__package__).joinpath(relative).read_text(encoding="utf-8")


def list_packs() -> list[Pack]:
    """Every pack, in the index's order."""
    data = load_plain(_read(INDEX))
    return [
        Pack(
            name=str(entry["name"]),
            description=str(entry["description"]),
            policy_file=str(entry.get("policy", f"{entry['name']}/policy.yaml")),
            cases_file=str(entry.get("cases", f"{entry['name']}/cases.yaml")),
        )
        for entry in data["packs"]
    ]


def get_pack(name: str) -> Pack:
    packs = list_packs()
    for pack in packs:
        if pack.name == name:
            return pack
    raise UnknownPack(name, [p.name for p in packs])


__all__ = ["Pack", "UnknownPack", "get_pack", "list_packs"]
