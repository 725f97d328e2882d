"""YAML text to a tree of values that remember where they came from.

The policy compiler needs the line and column of every key and value so that
each problem can point at the place to fix. PyYAML's node API
(:func:`yaml.compose`) keeps those marks; this module turns the node graph
into a small tree (:class:`YMap`, :class:`YSeq`, :class:`YScalar`), rejects
duplicate keys and non-string keys, and guards against alias bombs and
self-referencing anchors.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import yaml

from faramesh.jsonstrict import reads_exactly

from .errors import PolicyProblem

# An alias-heavy document can expand exponentially; a policy never needs this many values.
MAX_VALUES = 200_000
MAX_DEPTH = 64


@dataclass(frozen=True, slots=True)
class Loc:
    """1-based line and column."""

    line: int
    column: int


@dataclass(slots=True)
class YScalar:
    value: Any
    loc: Loc


@dataclass(slots=True)
class YSeq:
    items: list[YNode]
    loc: Loc


@dataclass(slots=True)
class YMap:
    """A mapping whose keys are strings, in document order, each with its own location."""

    entries: dict[str, tuple[Loc, YNode]]
    loc: Loc
    # keys that arrived through a YAML merge key (``<<: *anchor``)
    merged: set[str] = field(default_factory=set)

    def __iter__(self) -> Iterator[tuple[str, Loc, YNode]]:
        for key, (loc, node) in self.entries.items():
            yield key, loc, node

    def get(self, key: str) -> YNode | None:
        entry = self.entries.get(key)
        return entry[1] if entry else None

    def key_loc(self, key: str) -> Loc:
        entry = self.entries.get(key)
        return entry[0] if entry else self.loc


YNode = YScalar | YSeq | YMap


# libyaml's parser when PyYAML was built with it (much faster on large policies), else the pure-Python one.
_Base: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class _Loader(_Base):  # type: ignore[valid-type,misc]
    """PyYAML's safe loader with YAML 1.2 core-schema scalars, so a value means what it looks like.

    YAML 1.1 (PyYAML's default) reads ``yes``/``no``/``on``/``off`` as booleans, ``010`` as 8,
    ``1:30`` as 90 and ``2024-01-05`` as a date: in a list of user names or ids that silently
    changes what a rule compares. Here only ``true``/``false`` are booleans, numbers are
    decimal (``0x``/``0b`` prefixes and ``_`` separators allowed; a leading zero keeps the text a
    string), ``1e6`` is a float as in YAML 1.2, and everything else plain is a string.
    """


# Implicit resolvers replaced wholesale: (tag, pattern, first characters).
_SCALARS: tuple[tuple[str, str, str], ...] = (
    ("tag:yaml.org,2002:bool", r"^(?:true|True|TRUE|false|False|FALSE)$", "tTfF"),
    (
        "tag:yaml.org,2002:int",
        r"^(?:[-+]?(?:0|[1-9][0-9_]*)|[-+]?0x[0-9a-fA-F_]+|[-+]?0b[01_]+)$",
        "-+0123456789",
    ),
    (
        "tag:yaml.org,2002:float",
        r"^(?:[-+]?(?:0|[1-9][0-9_]*)?\.[0-9_]*(?:[eE][-+]?[0-9]+)?"
        r"|[-+]?(?:0|[1-9][0-9_]*)[eE][-+]?[0-9]+"
        r"|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$",
        "-+0123456789.",
    ),
    ("tag:yaml.org,2002:null", r"^(?:~|null|Null|NULL|)$", "~nN"),
    ("tag:yaml.org,2002:merge", r"^(?:<<)$", "<"),
)
_Loader.yaml_implicit_resolvers = {}
for _tag, _pattern, _first in _SCALARS:
    _Loader.add_implicit_resolver(_tag, re.compile(_pattern), [*_first, ""] if _tag.endswith("null") else list(_first))

# Plain scalars that YAML 1.1 tools read as something other than text; used for hints.
YAML11_BOOLS = frozenset(["yes", "no", "on", "off", "y", "n"])
_YAML11_NUMBER = re.compile(r"[-+]?(?:0[0-9_]+|[0-9][0-9_]*(?::[0-5]?[0-9])+(?:\.[0-9_]*)?)")


def yaml11_hint(value: object, expected: str) -> str | None:
    """A fix for a string that YAML 1.1 would have read as a boolean or number, or None."""
    if not isinstance(value, str):
        return None
    if value.lower() in YAML11_BOOLS:
        if expected == "bool":
            return f"{value!r} is text in a policy file, not a boolean; write true or false"
        return None
    if expected == "number" and _YAML11_NUMBER.fullmatch(value):
        digits = value.replace("_", "")
        if ":" in digits:
            return f"{value!r} is text in a policy file, not a number; write one decimal number (YAML 1.1 would read it as base 60)"
        return f"{value!r} is text in a policy file, not a number; write {int(digits)} without the leading zero"
    return None


def load_plain(text: str) -> Any:
    """Plain Python values from YAML with the same scalar rules as policies, for Faramesh's other YAML files."""
    return yaml.load(text, Loader=_Loader)


def _loc(mark: Any) -> Loc:
    if mark is None:
        return Loc(0, 0)
    return Loc(mark.line + 1, mark.column + 1)


class _TooBig(Exception):
    pass


def parse_yaml(text: str, source: str) -> tuple[YNode | None, list[PolicyProblem]]:
    """Parse ``text``; return the located tree (None for an empty document) and any problems."""
    problems: list[PolicyProblem] = []
    try:
        root = yaml.compose(text, Loader=_Loader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        loc = _loc(mark)
        message = exc.problem or "invalid YAML"
        if exc.context:
            message = f"{exc.context}, {message}"
        hint = "fix the YAML syntax"
        lines = text.splitlines()
        if 0 < loc.line <= len(lines) and "\t" in lines[loc.line - 1]:
            hint = "YAML does not allow tabs for indentation; indent with spaces"
        problems.append(PolicyProblem(source, loc.line, loc.column, "", f"invalid YAML: {message}", hint))
        return None, problems
    except yaml.YAMLError as exc:  # pragma: no cover - PyYAML raises marked errors for syntax
        problems.append(PolicyProblem(source, 0, 0, "", f"invalid YAML: {exc}", "fix the YAML syntax"))
        return None, problems
    if root is None:
        return None, problems
    builder = _Builder(source, problems)
    try:
        tree = builder.build(root, 0, set())
    except _TooBig:
        loc = _loc(root.start_mark)
        problems.append(
            PolicyProblem(
                source,
                loc.line,
                loc.column,
                "",
                f"the document expands to more than {MAX_VALUES} values",
                "remove the YAML aliases that multiply the content",
            )
        )
        return None, problems
    return tree, problems


class _Builder:
    def __init__(self, source: str, problems: list[PolicyProblem]) -> None:
        self.source = source
        self.problems = problems
        self.count = 0
        # Scalars are turned into Python values by PyYAML's own safe constructor, after
        # _Loader's YAML 1.2 resolvers chose their type (so `yes` stays the text "yes").
        self.constructor = _Loader("")

    def problem(self, loc: Loc, path: str, message: str, hint: str = "") -> None:
        self.problems.append(PolicyProblem(self.source, loc.line, loc.column, path, message, hint))

    def build(self, node: yaml.Node, depth: int, active: set[int], path: str = "") -> YNode:
        self.count += 1
        if self.count > MAX_VALUES:
            raise _TooBig
        loc = _loc(node.start_mark)
        if depth > MAX_DEPTH or id(node) in active:
            self.problem(loc, path, "the document nests too deeply or refers to itself", "remove the recursive alias")
            return YScalar(None, loc)
        if isinstance(node, yaml.ScalarNode):
            try:
                value = self.constructor.construct_object(node, deep=True)
            except yaml.YAMLError as exc:
                self.problem(loc, path, f"cannot read this value: {getattr(exc, 'problem', exc)}", "remove the tag")
                value = None
            if isinstance(value, float) and not reads_exactly(node.value, value):
                self.problem(
                    loc,
                    path,
                    f"the number {node.value} has more digits than a policy can compare exactly (it reads as {value!r})",
                    f"write {value!r}, or at most 17 significant digits",
                )
            return YScalar(value, loc)
        active = active | {id(node)}
        if isinstance(node, yaml.SequenceNode):
            items = [self.build(c, depth + 1, active, f"{path}[{i}]") for i, c in enumerate(node.value)]
            return YSeq(items, loc)
        if isinstance(node, yaml.MappingNode):
            return self._mapping(node, loc, depth, active, path)
        self.problem(loc, path, "unsupported YAML node")  # pragma: no cover - compose yields only the three kinds
        return YScalar(None, loc)  # pragma: no cover

    def _mapping(self, node: yaml.MappingNode, loc: Loc, depth: int, active: set[int], path: str) -> YMap:
        out = YMap({}, loc)
        merges: list[yaml.Node] = []
        for key_node, value_node in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                merges.append(value_node)
                continue
            key_loc = _loc(key_node.start_mark)
            key = self._key(key_node, key_loc, path)
            if key is None:
                continue
            child = f"{path}.{key}" if path else key
            if key in out.entries:
                first = out.entries[key][0]
                self.problem(
                    key_loc,
                    child,
                    f"duplicate key {key!r} (first defined on line {first.line})",
                    "keep only one of them",
                )
                continue
            out.entries[key] = (key_loc, self.build(value_node, depth + 1, active, child))
        # YAML merge keys: explicit keys win over merged ones, earlier merges over later ones.
        for merge_node in merges:
            sources = merge_node.value if isinstance(merge_node, yaml.SequenceNode) else [merge_node]
            for src in sources:
                built = self.build(src, depth + 1, active, path)
                if not isinstance(built, YMap):
                    self.problem(built.loc, path, "a merge key (<<) must refer to a mapping")
                    continue
                for key, key_loc, value in built:
                    if key not in out.entries:
                        out.entries[key] = (key_loc, value)
                        out.merged.add(key)
        return out

    def _key(self, key_node: yaml.Node, loc: Loc, path: str) -> str | None:
        if isinstance(key_node, yaml.ScalarNode):
            try:
                key = self.constructor.construct_object(key_node, deep=True)
            except yaml.YAMLError:
                key = None
            if isinstance(key, str):
                return key
            shown = key_node.value
        else:
            shown = "<collection>"
        self.problem(loc, path, f"keys must be strings, got {shown!r}", "quote the key")
        return None
