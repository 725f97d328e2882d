"""Satisfiability of condition literals, field by field, with a concrete witness.

A *literal* says which results a condition may have: ``amount > 100`` must be
true, or must not be true (false or unknown). A :class:`Store` collects the
literals of one case of the analysis, and :meth:`Solver.status` answers:

- ``SAT`` with a witness value for every field (checked against every literal),
- ``UNSAT`` only when no input can satisfy them — an exact answer, argued per kind below,
- ``UNKNOWN`` when a literal is outside what is modelled exactly (a regular
  expression the witness search cannot satisfy, a time window no sampled
  instant fits).

Each field's value is one of six kinds (missing, number, string, boolean, list,
object); a condition's result depends only on the kind and, for some kinds, the
value. Numbers are solved with intervals and excluded points, strings with
prefixes, suffixes, substrings and excluded constants, lists by the items
``contains`` needs. ``agent.*`` fields have the shapes the server gives them:
``agent.id`` a string, ``agent.role`` one of the three roles, ``agent.groups`` a
list of strings, nothing else.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from faramesh.policy.conditions import value_kind
from faramesh.policy.timing import Window
from faramesh.policy.values import FieldPath

from .model import COMPARE_OPS, Atom, Truth, truth
from .regexgen import regex_examples

SAT, UNKNOWN, UNSAT = "sat", "unknown", "unsat"
KINDS = ("missing", "num", "str", "bool", "list", "dict")
ROLES = ("agent", "approver", "admin")
# Characters tried as the separator in built strings; the first that no constant uses wins.
_FILLERS = "xqzjkvwyXQZ-_~#%@!" + "".join(chr(c) for c in range(0x3B1, 0x3C9))
_WEEK_START = datetime(2026, 1, 5, tzinfo=UTC)  # a Monday


@dataclass(frozen=True)
class Lit:
    atom: Atom
    allowed: frozenset[Truth]


@dataclass(frozen=True)
class KindResult:
    status: str  # SAT or UNKNOWN
    value: Any = None
    reason: str = ""


@dataclass
class Solution:
    status: str
    values: dict[str, tuple[str, Any]] = field(default_factory=dict)  # path -> (kind, witness)
    now: datetime | None = None
    reasons: list[str] = field(default_factory=list)


class Store:
    """The literals of one case; immutable (``with_*`` return new stores)."""

    __slots__ = ("lits", "windows")

    def __init__(self, lits: dict[Any, Lit] | None = None, windows: dict[int, tuple[Window, bool]] | None = None):
        self.lits: dict[Any, Lit] = lits or {}
        self.windows: dict[int, tuple[Window, bool]] = windows or {}

    def with_lit(self, atom: Atom, allowed: frozenset[Truth]) -> Store | None:
        """Add a literal; None when it contradicts one already on the same condition."""
        key = atom.ident
        old = self.lits.get(key)
        if old is not None:
            allowed = old.allowed & allowed
            if allowed == old.allowed:
                return self
        if not allowed:
            return None
        lits = dict(self.lits)
        lits[key] = Lit(old.atom if old else atom, allowed)
        return Store(lits, self.windows)

    def with_window(self, index: int, window: Window, inside: bool) -> Store | None:
        old = self.windows.get(index)
        if old is not None:
            return self if old[1] == inside else None
        windows = dict(self.windows)
        windows[index] = (window, inside)
        return Store(self.lits, windows)

    def by_field(self) -> dict[str, list[Lit]]:
        out: dict[str, list[Lit]] = {}
        for lit in self.lits.values():
            out.setdefault(lit.atom.path.text, []).append(lit)
        return out


class Solver:
    """Solves stores; remembers per-field answers, which repeat across the cases of an analysis."""

    def __init__(self) -> None:
        self._fields: dict[Any, dict[str, KindResult]] = {}
        self._windows: dict[frozenset[tuple[int, bool]], datetime | None] = {}

    def status(self, store: Store) -> Solution:
        per_field: dict[str, dict[str, KindResult]] = {}
        paths: dict[str, FieldPath] = {}
        for text, lits in store.by_field().items():
            key = (text, frozenset((lit.atom.ident, lit.allowed) for lit in lits))
            found = self._fields.get(key)
            if found is None:
                found = self._fields[key] = solve_field(lits[0].atom.path, lits)
            per_field[text] = found
            paths[text] = lits[0].atom.path
        solution = _assign(per_field, paths)
        if solution.status == UNSAT:
            return solution
        if store.windows:
            now = self._window_time(store)
            if now is None:
                solution.status = UNKNOWN
                spans = ", ".join(
                    f"{'inside' if inside else 'outside'} {_window_text(w)}" for w, inside in store.windows.values()
                )
                solution.reasons.append(f"no time found that is {spans}")
            solution.now = now
        return solution

    def _window_time(self, store: Store) -> datetime | None:
        key = frozenset((i, inside) for i, (_, inside) in store.windows.items())
        if key not in self._windows:
            self._windows[key] = find_time(list(store.windows.values()))
        return self._windows[key]


def find_time(wanted: list[tuple[Window, bool]]) -> datetime | None:
    """An instant inside/outside each window, searched over a sample week (every 15 minutes, then every minute)."""
    for step in (15, 1):
        for minute in range(0, 8 * 24 * 60, step):
            now = _WEEK_START + timedelta(minutes=minute)
            if all(w.contains(now) is inside for w, inside in wanted):
                return now
    return None


def _window_text(window: Window) -> str:
    d = window.to_dict()
    return f"{','.join(d['days'])} {d['hours']} {d['tz']}"  # type: ignore[arg-type]


# -- one field ---------------------------------------------------------------------------------------------------


def kinds_for(path: FieldPath) -> tuple[str, ...]:
    if path.root != "agent":
        return KINDS
    segs = path.segments
    if segs in (("id",), ("role",)):
        return ("str",)
    if segs == ("groups",):
        return ("list",)
    if len(segs) == 2 and segs[0] == "groups" and segs[1].isascii() and segs[1].isdigit():
        return ("missing", "str")
    return ("missing",)


def solve_field(path: FieldPath, lits: list[Lit]) -> dict[str, KindResult]:
    """For each kind the field could have: a witness (SAT) or UNKNOWN; kinds left out are impossible."""

    def ok(value: Any) -> bool:
        return all(truth(lit.atom, value) in lit.allowed for lit in lits)

    out: dict[str, KindResult] = {}
    for kind in kinds_for(path):
        result = None
        if kind == "missing":
            result = KindResult(SAT, None) if ok(None) else None
        elif kind == "dict":
            result = KindResult(SAT, {}) if ok({}) else None
        elif kind == "bool":
            result = next((KindResult(SAT, v) for v in (True, False) if ok(v)), None)
        elif kind == "num":
            result = _solve_number(lits, ok)
        elif kind == "str":
            result = _solve_string(path, lits, ok)
        elif kind == "list":
            result = _solve_list(path, lits, ok)
        if result is not None:
            out[kind] = result
    return out


def _wanted(lit: Lit) -> Truth | str:
    """The one definite result a literal needs ("any" when both true and false are fine, "none" when neither)."""
    definite = lit.allowed & {True, False}
    if len(definite) == 2:
        return "any"
    if not definite:
        return "none"
    return next(iter(definite))


def _relevant_for_number(atom: Atom) -> bool:
    if atom.op in COMPARE_OPS:
        return True
    if atom.op in ("eq", "ne"):
        return value_kind(atom.operand) == "num"
    if atom.op in ("in", "not_in"):
        return any(value_kind(v) == "num" for v in atom.operand)
    return False


def _solve_number(lits: list[Lit], ok: Callable[[Any], bool]) -> KindResult | None:
    lo: Any = None
    lo_strict = False
    hi: Any = None
    hi_strict = False
    points: set[Any] | None = None
    excluded: set[Any] = set()
    for lit in lits:
        atom = lit.atom
        if not _relevant_for_number(atom):
            if truth(atom, 0) not in lit.allowed:  # the same result for every number
                return None
            continue
        want = _wanted(lit)
        if want == "any":
            continue
        if want == "none":
            return None
        c = atom.operand
        if atom.op in COMPARE_OPS:
            # (is it a lower bound, strict) for the condition being true; false flips both
            lower, strict = {"gt": (True, True), "gte": (True, False), "lt": (False, True), "lte": (False, False)}[
                atom.op
            ]
            if want is False:
                lower, strict = not lower, not strict
            if lower and (lo is None or c > lo or (c == lo and strict)):
                lo, lo_strict = c, strict
            if not lower and (hi is None or c < hi or (c == hi and strict)):
                hi, hi_strict = c, strict
            continue
        members = {c} if atom.op in ("eq", "ne") else {v for v in c if value_kind(v) == "num"}
        positive = atom.op in ("eq", "in")
        if positive == (want is True):  # the value must be one of members
            points = members if points is None else {p for p in points if p in members}
        else:
            excluded |= members
    if points is not None:
        return next((KindResult(SAT, p) for p in sorted(points) if ok(p)), None)
    if lo is not None and hi is not None and (lo > hi or (lo == hi and (lo_strict or hi_strict))):
        return None
    for candidate in _number_candidates(lo, lo_strict, hi, hi_strict, len(excluded)):
        if ok(candidate):
            return KindResult(SAT, candidate)
    # The candidates include the first len(excluded)+2 integers and floats of the interval
    # from one end, so if none fits, the interval holds no value outside the excluded points.
    return None


def _number_candidates(lo: Any, lo_strict: bool, hi: Any, hi_strict: bool, n_excluded: int) -> Iterable[Any]:
    nice: list[Any] = []
    if lo is None and hi is None:
        nice = [0, 1, 10, 100]
    elif hi is None:
        nice = [lo] if not lo_strict else []
        base = math.floor(lo)
        nice += [base + 1, base + 10, _round_up(lo)]
    elif lo is None:
        nice = [hi] if not hi_strict else []
        base = math.ceil(hi)
        nice += [base - 1, base - 10, 0]
    else:
        nice = [lo] if not lo_strict else []
        nice += [math.floor(lo) + 1, 0, hi if not hi_strict else None, _midpoint(lo, hi)]
    for value in nice:
        if value is not None:
            yield value
    steps = n_excluded + 3
    if lo is None and hi is None:
        yield from range(steps)
        return
    upward = lo is not None
    start = lo if upward else hi
    # integers from the bound inwards
    first = math.floor(start) if upward else math.ceil(start)
    for i in range(steps + 1):
        yield first + i if upward else first - i
    # floats from the bound inwards
    try:
        x = float(start)
    except OverflowError:
        return
    for _ in range(steps + 1):
        yield x
        x = math.nextafter(x, math.inf if upward else -math.inf)


def _round_up(value: Any) -> Any:
    """A round number above ``value`` (1000 -> 1001 is fine, but 1500 reads better for 1234)."""
    magnitude = 10 ** max(0, len(str(abs(int(value)))) - 1)
    return (math.floor(value / magnitude) + 1) * magnitude


def _midpoint(lo: Any, hi: Any) -> Any:
    try:
        return lo + (hi - lo) / 2
    except OverflowError:
        return None


def _solve_list(path: FieldPath, lits: list[Lit], ok: Callable[[Any], bool]) -> KindResult | None:
    items: list[Any] = []
    strings_only = path.root == "agent"  # agent.groups holds strings
    for lit in lits:
        if lit.atom.op != "contains":
            continue
        if _wanted(lit) is True:
            if strings_only and not isinstance(lit.atom.operand, str):
                return None
            items.append(lit.atom.operand)
    # The items contains needs, and nothing else: if that fails a literal, so does every list.
    return KindResult(SAT, items) if ok(items) else None


def _string_candidates_fixed(lits: list[Lit]) -> set[str] | None:
    fixed: set[str] | None = None
    for lit in lits:
        atom = lit.atom
        want = _wanted(lit)
        if want not in (True, False):
            continue
        if atom.op in ("eq", "ne") and isinstance(atom.operand, str):
            members = {atom.operand}
        elif atom.op in ("in", "not_in"):
            members = {v for v in atom.operand if isinstance(v, str)}
            if not members:
                continue
        else:
            continue
        if (atom.op in ("eq", "in")) == (want is True):
            fixed = members if fixed is None else fixed & members
    return fixed


def _valid_agent_string(path: FieldPath, value: str) -> bool:
    if path.root != "agent":
        return True
    if path.segments == ("role",):
        return value in ROLES
    return bool(value.strip()) and len(value) <= 200 and value.isprintable()


def _solve_string(path: FieldPath, lits: list[Lit], ok: Callable[[Any], bool]) -> KindResult | None:
    def good(value: str) -> bool:
        return ok(value) and _valid_agent_string(path, value)

    fixed = _string_candidates_fixed(lits)
    if path.segments == ("role",) and path.root == "agent":
        fixed = set(ROLES) if fixed is None else fixed & set(ROLES)
    if fixed is not None:
        return next((KindResult(SAT, v) for v in sorted(fixed) if good(v)), None)

    prefixes: list[str] = []
    suffixes: list[str] = []
    pieces: list[str] = []
    not_prefixes: list[str] = []
    not_suffixes: list[str] = []
    not_pieces: list[str] = []
    regexes: list[str] = []
    constants: list[str] = []
    for lit in lits:
        atom = lit.atom
        operand = atom.operand
        if isinstance(operand, str):
            constants.append(operand)
        elif atom.op in ("in", "not_in"):
            constants.extend(v for v in operand if isinstance(v, str))
        if not _relevant_for_string(atom):
            if truth(atom, "") not in lit.allowed:  # the same result for every string
                return None
            continue
        want = _wanted(lit)
        if want == "none":  # these conditions are true or false for every string, never unknown
            return None
        if want == "any":
            continue
        if atom.op == "startswith":
            (prefixes if want else not_prefixes).append(operand)
        elif atom.op == "endswith":
            (suffixes if want else not_suffixes).append(operand)
        elif atom.op == "contains":
            (pieces if want else not_pieces).append(operand)
        elif atom.op == "matches":
            regexes.append(operand)
    prefix = max(prefixes, key=len, default="")
    suffix = max(suffixes, key=len, default="")
    if any(not prefix.startswith(p) for p in prefixes) or any(not suffix.endswith(s) for s in suffixes):
        return None
    required = [prefix, suffix, *pieces]
    # Every string meeting the positive conditions starts with `prefix`, ends with
    # `suffix` and contains each piece; a negative condition that those already
    # violate cannot be met by any string.
    if any(prefix.startswith(p) for p in not_prefixes) or any(suffix.endswith(s) for s in not_suffixes):
        return None
    if any(n in r for n in not_pieces for r in required):
        return None
    filler = next((ch for ch in _FILLERS if not any(ch in c for c in constants)), "\u2063")
    # Separated by a character no constant contains, the pieces create no new prefix,
    # suffix or substring that a negative condition could object to, and the result
    # equals no constant. So without regular expressions this string always fits.
    built = prefix + filler + "".join(p + filler for p in pieces) + suffix
    if good(built):
        return KindResult(SAT, built)
    tried: list[str] = ["", prefix + suffix, prefix, suffix, "".join(pieces), prefix + "".join(pieces) + suffix]
    tried += constants
    for pattern in regexes:
        for example in regex_examples(pattern):
            tried += [example, prefix + example + suffix, prefix + example, example + suffix]
    for candidate in tried:
        if good(candidate):
            return KindResult(SAT, candidate)
    if regexes:
        shown = ", ".join(repr(r) for r in regexes)
        return KindResult(UNKNOWN, None, f"no string found for {path.text} that fits the regular expression {shown}")
    return KindResult(UNKNOWN, None, f"no string found for {path.text}")


def _relevant_for_string(atom: Atom) -> bool:
    if atom.op in ("startswith", "endswith", "matches"):
        return True
    if atom.op in ("eq", "ne", "contains"):
        return isinstance(atom.operand, str)
    if atom.op in ("in", "not_in"):
        return any(isinstance(v, str) for v in atom.operand)
    return False


# -- fields together ----------------------------------------------------------------------------------------------


def _nested_ok(outer: FieldPath, inner: FieldPath, outer_kind: str, inner_kind: str) -> bool:
    """Can ``outer`` have ``outer_kind`` while ``inner`` (a longer path under it) has ``inner_kind``?"""
    if inner_kind == "missing":
        return True
    if outer_kind == "dict":
        return True
    nxt = inner.segments[len(outer.segments)]
    return outer_kind == "list" and nxt.isascii() and nxt.isdigit()


def _is_prefix(a: FieldPath, b: FieldPath) -> bool:
    return a.root == b.root and len(a.segments) < len(b.segments) and b.segments[: len(a.segments)] == a.segments


def _assign(per_field: dict[str, dict[str, KindResult]], paths: dict[str, FieldPath]) -> Solution:
    """Pick a kind for every field so that nested fields agree; prefer witnesses over unknowns."""
    names = sorted(per_field, key=lambda t: (len(paths[t].segments), t))
    for name in names:
        if not per_field[name]:
            return Solution(UNSAT)
    related = [(a, b) for a in names for b in names if _is_prefix(paths[a], paths[b])]
    if not related:
        sol = Solution(SAT)
        for name in names:
            kinds = per_field[name]
            kind = next((k for k, r in kinds.items() if r.status == SAT), None)
            if kind is None:
                kind = next(iter(kinds))
                sol.status = UNKNOWN
                sol.reasons.append(kinds[kind].reason)
            sol.values[name] = (kind, kinds[kind].value)
        return sol
    best: tuple[int, dict[str, str]] | None = None

    def search(i: int, chosen: dict[str, str], unknowns: int) -> None:
        nonlocal best
        if best is not None and (best[0] == 0 or unknowns >= best[0]):
            return
        if i == len(names):
            best = (unknowns, dict(chosen))
            return
        name = names[i]
        options = sorted(per_field[name].items(), key=lambda kv: kv[1].status != SAT)
        for kind, result in options:
            if all(_nested_ok(paths[a], paths[b], chosen[a], kind) for a, b in related if b == name and a in chosen):
                chosen[name] = kind
                search(i + 1, chosen, unknowns + (result.status != SAT))
                del chosen[name]

    search(0, {}, 0)
    if best is None:
        return Solution(UNSAT)
    sol = Solution(SAT if best[0] == 0 else UNKNOWN)
    for name, kind in best[1].items():
        result = per_field[name][kind]
        sol.values[name] = (kind, result.value)
        if result.status != SAT:
            sol.reasons.append(result.reason)
    return sol
