"""Example strings for a regular expression, and a structural reading of it.

The examples are guesses for the solver to try (it checks each one with the real
regular expression), so this only needs to be useful, not complete: literals,
classes, groups, alternatives, repeats and anchors are handled; look-arounds
and back-references give up.
"""

from __future__ import annotations

import re
import string
from collections.abc import Iterator
from typing import Any

try:  # Python 3.11+: the parser moved; sre_parse still works but warns
    import re._parser as sre_parse  # type: ignore[import-not-found,unused-ignore]
    from re._constants import MAXREPEAT  # type: ignore[import-not-found,unused-ignore]
except ImportError:  # pragma: no cover
    import sre_parse  # type: ignore[no-redef,unused-ignore]
    from sre_constants import MAXREPEAT  # type: ignore[no-redef,unused-ignore]

_PRINTABLE = string.ascii_lowercase + string.digits + " -_./" + string.ascii_uppercase + string.punctuation
_MAX_EXAMPLES = 12
_MAX_LENGTH = 400


class _GiveUp(Exception):
    pass


def parse(pattern: str) -> Any:
    """The parsed form of ``pattern`` (raises ``re.error`` like ``re.compile``)."""
    return sre_parse.parse(pattern)


def regex_examples(pattern: str) -> list[str]:
    """Up to a dozen strings that the pattern probably matches in full (unchecked)."""
    try:
        tree = parse(pattern)
    except (re.error, RecursionError):
        return []
    out: list[str] = []
    for extra in (0, 1, 2):
        for branch in range(3):
            try:
                text = _gen(tree, extra, branch, {})
            except (_GiveUp, RecursionError):
                continue
            if text not in out and len(text) <= _MAX_LENGTH:
                out.append(text)
            if len(out) >= _MAX_EXAMPLES:
                return out
    return out


def _class_chars(items: list[Any]) -> Iterator[str]:
    """Characters a character class accepts, most readable first (raises for negated classes it cannot invert)."""
    negate = bool(items) and str(items[0][0]) == "NEGATE"
    members = items[1:] if negate else items

    def inside(ch: str) -> bool:
        code = ord(ch)
        for op, av in members:
            name = str(op)
            if name == "LITERAL" and code == av:
                return True
            if name == "RANGE" and av[0] <= code <= av[1]:
                return True
            if name == "CATEGORY":
                cat = str(av)
                if cat.endswith("DIGIT") and ("NOT" in cat) != ch.isdigit():
                    return True
                if cat.endswith("WORD") and ("NOT" in cat) != (ch.isalnum() or ch == "_"):
                    return True
                if cat.endswith("SPACE") and ("NOT" in cat) != ch.isspace():
                    return True
        return False

    for ch in _PRINTABLE:
        if inside(ch) != negate:
            yield ch


def _gen(tree: Any, extra: int, branch: int, groups: dict[int, str]) -> str:
    parts: list[str] = []
    for op, av in tree:
        name = str(op)
        if name == "LITERAL":
            parts.append(chr(av))
        elif name == "NOT_LITERAL":
            parts.append(next(ch for ch in _PRINTABLE if ord(ch) != av))
        elif name == "ANY":
            parts.append("a")
        elif name == "IN":
            chars = list(_class_chars(av))
            if not chars:
                raise _GiveUp
            parts.append(chars[min(branch, len(chars) - 1)])
        elif name == "BRANCH":
            options = av[1]
            parts.append(_gen(options[min(branch, len(options) - 1)], extra, branch, groups))
        elif name == "SUBPATTERN":
            group, _, _, sub = av
            text = _gen(sub, extra, branch, groups)
            if group is not None:
                groups[group] = text
            parts.append(text)
        elif name in ("MAX_REPEAT", "MIN_REPEAT", "POSSESSIVE_REPEAT"):
            low, high, sub = av
            count = low + extra if high == MAXREPEAT else min(high, low + extra)
            parts.extend(_gen(sub, 0, branch, groups) for _ in range(count))
        elif name == "AT":
            continue
        elif name == "GROUPREF":
            parts.append(groups.get(av, ""))
        elif name == "ATOMIC_GROUP":
            parts.append(_gen(av, extra, branch, groups))
        else:  # look-arounds, conditionals
            raise _GiveUp
    return "".join(parts)


# -- structure --------------------------------------------------------------------------------------------------


def char_set(items: Any) -> frozenset[str] | None:
    """The characters a single-character element accepts (over printable ASCII); None for anything longer."""
    if len(items) != 1:
        return None
    op, av = items[0]
    name = str(op)
    if name == "LITERAL":
        return frozenset(chr(av))
    if name == "NOT_LITERAL":
        return frozenset(ch for ch in _PRINTABLE if ord(ch) != av)
    if name == "ANY":
        return frozenset(_PRINTABLE)
    if name == "IN":
        return frozenset(_class_chars(av))
    if name == "SUBPATTERN":
        return char_set(av[3])
    return None


def is_unbounded(av: Any) -> bool:
    return bool(av[1] == MAXREPEAT)


def mandatory_sets(items: Any) -> list[frozenset[str]]:
    """Single characters every match of the sequence must contain (as their accepted sets)."""
    out: list[frozenset[str]] = []
    for op, av in items:
        name = str(op)
        if name in ("LITERAL", "NOT_LITERAL", "ANY", "IN"):
            found = char_set([(op, av)])
            if found is not None:
                out.append(found)
        elif name == "SUBPATTERN":
            out.extend(mandatory_sets(av[3]))
        elif name in ("MAX_REPEAT", "MIN_REPEAT", "POSSESSIVE_REPEAT") and av[0] >= 1:
            found = char_set(av[2])
            if found is not None:
                out.append(found)
            else:
                out.extend(mandatory_sets(av[2]))
    return out


def all_chars(items: Any) -> frozenset[str] | None:
    """Every character a match of the sequence can contain (None when that is unclear, e.g. a back-reference)."""
    out: set[str] = set()
    for op, av in items:
        name = str(op)
        if name in ("LITERAL", "NOT_LITERAL", "ANY", "IN"):
            found = char_set([(op, av)])
        elif name == "SUBPATTERN":
            found = all_chars(av[3])
        elif name in ("MAX_REPEAT", "MIN_REPEAT", "POSSESSIVE_REPEAT"):
            found = all_chars(av[2])
        elif name == "BRANCH":
            parts = [all_chars(b) for b in av[1]]
            found = None if any(p is None for p in parts) else frozenset().union(*parts)  # type: ignore[arg-type]
        elif name == "AT":
            continue
        else:
            return None
        if found is None:
            return None
        out |= found
    return frozenset(out)


def variable_parts(items: Any) -> list[frozenset[str] | None]:
    """The characters of every part whose length can vary (repeats, optional parts, alternatives)."""
    out: list[frozenset[str] | None] = []
    for op, av in items:
        name = str(op)
        if name in ("MAX_REPEAT", "MIN_REPEAT"):
            if av[0] != av[1]:
                out.append(all_chars(av[2]))
            out.extend(variable_parts(av[2]))
        elif name == "SUBPATTERN":
            out.extend(variable_parts(av[3]))
        elif name == "BRANCH":
            out.append(all_chars([(op, av)]))
            for branch in av[1]:
                out.extend(variable_parts(branch))
    return out
