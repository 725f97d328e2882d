"""Tool and operation names: normalisation and glob patterns.

Names are compared after NFKC normalisation and case folding on both sides,
so ``REFUND`` and full-width ``ｒｅｆｕｎｄ`` are the same tool as ``refund``.
Patterns in a policy may only use ``A-Z a-z 0-9 _ . : / -`` plus the glob
characters ``*`` (any run of characters) and ``?`` (one character).
"""

from __future__ import annotations

import re
import unicodedata
from functools import lru_cache

PATTERN_CHARS = re.compile(r"[A-Za-z0-9_.:/*?-]+")
GLOB_CHARS = frozenset("*?")
# Longer inputs are normalised without the cache so hostile input cannot pin large strings in memory.
_CACHEABLE_LENGTH = 256


@lru_cache(maxsize=4096)
def _normalize_cached(name: str) -> str:
    return _normalize(name)


def _normalize(name: str) -> str:
    # NFKC, then case folding, then NFKC again: folding can produce sequences that compose differently.
    return unicodedata.normalize("NFKC", unicodedata.normalize("NFKC", name).casefold())


def normalize_name(name: str) -> str:
    """NFKC + casefold, cached for the short names that tools and operations use."""
    if len(name) <= _CACHEABLE_LENGTH:
        return _normalize_cached(name)
    return _normalize(name)


def is_glob(pattern: str) -> bool:
    return any(ch in GLOB_CHARS for ch in pattern)


def glob_regex(pattern: str) -> re.Pattern[str]:
    """Compile a normalised glob: ``*`` is any run of characters, ``?`` exactly one."""
    parts = []
    for ch in pattern:
        if ch == "*":
            parts.append(".*")
        elif ch == "?":
            parts.append(".")
        else:
            parts.append(re.escape(ch))
    return re.compile("".join(parts), re.DOTALL)


def _literal_ends(pattern: str) -> tuple[str, str]:
    """The literal text before the first and after the last glob character."""
    first = min(pattern.index(ch) for ch in GLOB_CHARS if ch in pattern)
    last = max(pattern.rindex(ch) for ch in GLOB_CHARS if ch in pattern)
    return pattern[:first], pattern[last + 1 :]


class NameMatcher:
    """Matches a normalised name against a set of exact names and globs."""

    __slots__ = ("exact", "globs", "patterns")

    def __init__(self, patterns: list[str]) -> None:
        normalized = [normalize_name(p) for p in patterns]
        self.patterns: tuple[str, ...] = tuple(sorted(set(normalized)))
        self.exact: frozenset[str] = frozenset(p for p in normalized if not is_glob(p))
        # (literal prefix, literal suffix, regex): the cheap string checks reject most names first
        self.globs: tuple[tuple[str, str, re.Pattern[str]], ...] = tuple(
            (*_literal_ends(p), glob_regex(p)) for p in sorted({p for p in normalized if is_glob(p)})
        )

    def __call__(self, normalized_name: str) -> bool:
        if normalized_name in self.exact:
            return True
        for prefix, suffix, regex in self.globs:
            if (
                normalized_name.startswith(prefix)
                and normalized_name.endswith(suffix)
                and regex.fullmatch(normalized_name)
            ):
                return True
        return False
