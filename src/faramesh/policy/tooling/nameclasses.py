"""Which tool (or operation) names behave alike under a set of name patterns.

Every pattern in a policy is an exact name or a glob (``*`` any run, ``?`` one
character). Two names that every pattern treats the same way get the same
decisions, so the analysis needs one representative name per *class*: per set
of patterns that some name matches while matching none of the others.

The classes are found exactly, by running all the patterns as one automaton
over the names the API accepts (1-128 characters from ``a-z 0-9 _ . : / -``
after case folding) and recording the first name that reaches each
combination. Characters no pattern mentions all behave alike, so one of them
stands for the rest.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from functools import lru_cache

from faramesh.policy.names import glob_regex, is_glob

NAME_ALPHABET = "abcdefghijklmnopqrstuvwxyz0123456789_.:/-"
MAX_NAME_LENGTH = 128
MAX_STATES = 50_000


class TooManyNames(Exception):
    """The patterns combine into more states than the analysis explores."""


@dataclass(frozen=True)
class NameClass:
    witness: str  # a shortest name in the class
    accepted: frozenset[str]  # the patterns that match it


def name_classes(patterns: set[str] | frozenset[str]) -> list[NameClass]:
    """One class per combination of ``patterns`` that some valid name matches exactly."""
    pats = sorted(patterns)
    used = {ch for p in pats for ch in p if ch not in "*?"}
    alphabet = sorted(used & set(NAME_ALPHABET), key=NAME_ALPHABET.index)  # letters first: readable witnesses
    spare = next((ch for ch in NAME_ALPHABET if ch not in used), None)
    if spare is not None:
        alphabet.append(spare)

    def close(state: set[tuple[int, int]]) -> frozenset[tuple[int, int]]:
        out = set(state)
        todo = list(state)
        while todo:
            i, pos = todo.pop()
            p = pats[i]
            if pos < len(p) and p[pos] == "*" and (i, pos + 1) not in out:
                out.add((i, pos + 1))
                todo.append((i, pos + 1))
        return frozenset(out)

    def step(state: frozenset[tuple[int, int]], ch: str) -> frozenset[tuple[int, int]]:
        nxt: set[tuple[int, int]] = set()
        for i, pos in state:
            p = pats[i]
            if pos < len(p):
                if p[pos] == "*":
                    nxt.add((i, pos))
                elif p[pos] == "?" or p[pos] == ch:
                    nxt.add((i, pos + 1))
        return close(nxt)

    def accepted(state: frozenset[tuple[int, int]]) -> frozenset[str]:
        return frozenset(pats[i] for i, pos in state if pos == len(pats[i]))

    start = close({(i, 0) for i in range(len(pats))})
    # The empty name is not a name: the start state counts only once a real name reaches it again.
    seen: set[frozenset[tuple[int, int]]] = set()
    queue: deque[tuple[frozenset[tuple[int, int]], str]] = deque([(start, "")])
    classes: dict[frozenset[str], str] = {}
    while queue:
        state, name = queue.popleft()
        if name:
            classes.setdefault(accepted(state), name)
        if len(name) >= MAX_NAME_LENGTH:
            continue
        for ch in alphabet:
            nxt = step(state, ch)
            if nxt not in seen:
                if len(seen) >= MAX_STATES:
                    raise TooManyNames(f"the name patterns combine into more than {MAX_STATES} states")
                seen.add(nxt)
                queue.append((nxt, name + ch))
    return [
        NameClass(_friendly(witness, acc, pats), acc) for acc, witness in sorted(classes.items(), key=lambda kv: kv[1])
    ]


def _friendly(witness: str, accepted: frozenset[str], patterns: list[str]) -> str:
    """A more readable name with the same matches, when there is one (``stripe.example`` over ``stripe.``)."""
    options = [p.replace("*", "example").replace("?", "x") for p in sorted(accepted)]
    options += ["other", "other-tool", "something-else", "x"]
    for name in options:
        valid = bool(name) and len(name) <= MAX_NAME_LENGTH and all(ch in NAME_ALPHABET for ch in name)
        if valid and frozenset(p for p in patterns if accepts(p, name)) == accepted:
            return name
    return witness


@lru_cache(maxsize=4096)
def accepts(pattern: str, name: str) -> bool:
    """Does one normalised pattern match one normalised name?"""
    if not is_glob(pattern):
        return pattern == name
    return glob_regex(pattern).fullmatch(name) is not None


def classes_for_name(patterns: set[str] | frozenset[str], name: str) -> list[NameClass]:
    """The class of one concrete (normalised) name."""
    return [NameClass(name, frozenset(p for p in patterns if accepts(p, name)))]
