"""Hot reload of the policy files: a file watcher, SIGHUP and the admin endpoint.

The files are the ones chosen at start (:meth:`Settings.policy_path`), for the life
of the process. A file that does not compile, or that is missing or unreadable, is
rejected: every problem is logged, the rejection is counted in the metrics, and the
last good policy stays in force. A server that started with the built-in starter
policy keeps it: there is no file to reload. The same holds for the shadow policy
(``--shadow-policy``), which is reloaded alongside.

The watcher polls each file's modification time, size and content hash, so it sees
edits however they are made (in place, or written elsewhere and renamed over the
file). It applies a version only once two polls in a row saw it unchanged, and only
if it compiles: a file caught half-written (or missing mid-rename) is left alone
until it settles. Writing the new file elsewhere and renaming it over the old one
is the safe way to edit; a writer that pauses longer than a poll interval in the
middle of an in-place write can still be caught with a half file that compiles.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import os
import signal
import threading
from pathlib import Path
from typing import Any, NamedTuple

from starlette.concurrency import run_in_threadpool

from faramesh.config import Settings
from faramesh.policy import Policy, PolicyError
from faramesh.policy.errors import PolicyProblem
from faramesh.service import Governor

log = logging.getLogger("faramesh.policy")

Fingerprint = tuple[int, int, str]
WATCH_ACTOR = "system:policy-watch"
SIGHUP_ACTOR = "system:sighup"
_NEVER: Any = object()  # "no version seen yet": unlike None, which means "the file could not be read"


class Snapshot(NamedTuple):
    """One read of a policy file: its fingerprint and bytes, or why it could not be read."""

    fingerprint: Fingerprint | None
    data: bytes | None
    error: str | None


def snapshot(path: Path) -> Snapshot:
    """Read the file once; the fingerprint (mtime in ns, size, SHA-256) describes exactly the bytes read."""
    try:
        with open(path, "rb") as fh:
            stat = os.fstat(fh.fileno())
            data = fh.read()
    except OSError as exc:
        return Snapshot(None, None, exc.strerror or type(exc).__name__)
    return Snapshot((stat.st_mtime_ns, stat.st_size, hashlib.sha256(data).hexdigest()), data, None)


def fingerprint(path: Path) -> Fingerprint | None:
    """(mtime in ns, size, SHA-256 of the content); None while the file cannot be read."""
    return snapshot(path).fingerprint


def compile_snapshot(path: Path, snap: Snapshot) -> Policy:
    """The policy in the bytes read; a file that could not be read is a PolicyError like a broken one."""
    if snap.data is None:
        problem = PolicyProblem(
            os.fspath(path),
            0,
            0,
            "",
            f"cannot read the policy file: {snap.error}",
            "restore the file at this path; the server reads only the file it started with",
        )
        raise PolicyError([problem])
    return Policy.from_yaml(snap.data, source=os.fspath(path))


def load_shadow_policy(settings: Settings) -> Policy | None:
    """The shadow policy named by the settings, or None; raises PolicyError like the active policy."""
    path = settings.shadow_policy_path()
    return compile_snapshot(path, snapshot(path)) if path is not None else None


class PolicyReloader:
    """Reloads the active and the shadow policy of one governor; thread-safe."""

    def __init__(self, governor: Governor, settings: Settings) -> None:
        self.governor = governor
        self.settings = settings
        self._lock = threading.Lock()
        # The version of each file last acted on (applied, rejected, or there at start) ...
        self._seen: dict[Path, Fingerprint | None] = {}
        # ... and a newer version seen by one poll, applied if the next poll sees it unchanged.
        self._pending: dict[Path, Fingerprint | None] = {}
        self.shadow_problems: list[str] = []  # why the last shadow file was rejected, if it was
        # The versions last rejected: asking again about the same broken file (the watcher and
        # an admin both noticing one edit) answers the same, but logs and counts it once.
        self._rejected: Fingerprint | None = _NEVER
        self._shadow_rejected: Fingerprint | None = _NEVER
        self._task: asyncio.Task[None] | None = None
        self._signal_tasks: set[asyncio.Future[Any]] = set()
        self._loop: asyncio.AbstractEventLoop | None = None
        for path in self._paths():
            self._seen[path] = fingerprint(path)

    def _paths(self) -> list[Path]:
        return [p for p in (self.settings.policy_path(), self.settings.shadow_policy_path()) if p is not None]

    # -- reloading

    def reload(self, actor: str | None = None) -> Policy:
        """Read the policy files now and apply them if they compile; raises PolicyError (logged) if not.

        Serving the starter policy (no file at start), this keeps it and answers the current policy.
        """
        with self._lock:
            active = self.settings.policy_path()
            shadow = self.settings.shadow_policy_path()
            try:
                if active is None:
                    return self.governor.policy
                return self._apply_active(active, snapshot(active), actor)
            finally:
                if shadow is not None:
                    self._apply_shadow(shadow, snapshot(shadow))

    def _apply_active(self, path: Path, snap: Snapshot, actor: str | None) -> Policy:
        self._seen[path] = snap.fingerprint  # the watcher need not look at this version again
        self._pending.pop(path, None)
        try:
            policy = compile_snapshot(path, snap)
        except PolicyError as exc:
            if snap.fingerprint == self._rejected:
                raise
            self._rejected = snap.fingerprint
            self.governor.telemetry.metrics.policy_reload(applied=False)
            log.error(
                "policy %s rejected; the previous policy (hash %s) stays in force:\n%s",
                path,
                self.governor.policy.hash[:12],
                "\n".join(f"  {p}" for p in exc.problems),
            )
            raise
        self._rejected = _NEVER
        if policy.hash != self.governor.policy.hash:
            self.governor.set_policy(policy, actor=actor)
            log.warning("policy %s reloaded by %s (hash %s)", policy.source, actor or "?", policy.hash[:12])
        return policy

    def _apply_shadow(self, path: Path, snap: Snapshot) -> None:
        self._seen[path] = snap.fingerprint
        self._pending.pop(path, None)
        try:
            shadow = compile_snapshot(path, snap)
        except PolicyError as exc:
            self.shadow_problems = [str(p) for p in exc.problems]
            if snap.fingerprint == self._shadow_rejected:
                return
            self._shadow_rejected = snap.fingerprint
            current = self.governor.shadow_policy
            log.error(
                "shadow policy %s rejected; the previous shadow policy (hash %s) stays:\n%s",
                path,
                current.hash[:12] if current else "none",
                "\n".join(f"  {p}" for p in exc.problems),
            )
            return
        self.shadow_problems = []
        self._shadow_rejected = _NEVER
        old = self.governor.shadow_policy
        self.governor.set_shadow_policy(shadow)
        if old is None or old.hash != shadow.hash:
            log.warning("shadow policy %s loaded (hash %s)", shadow.source, shadow.hash[:12])

    def reload_logged(self, actor: str) -> None:
        """Reload, with failures only logged (the watcher and SIGHUP have nobody to answer)."""
        with contextlib.suppress(PolicyError):
            self.reload(actor)

    def poll(self) -> bool:
        """One look at the watched files; True when a version was acted on (applied or rejected).

        A new version is acted on only when two looks in a row saw the same one (same
        modification time, size and content), so a file caught mid-write is not applied;
        the bytes compiled are the bytes of the second look.
        """
        acted = False
        with self._lock:
            active = self.settings.policy_path()
            for path in self._paths():
                snap = snapshot(path)
                now = snap.fingerprint
                if now == self._seen.get(path, _NEVER):
                    self._pending.pop(path, None)
                    continue
                if now != self._pending.get(path, _NEVER):
                    self._pending[path] = now  # new, or still changing: wait for the next look
                    continue
                acted = True
                if path == active:
                    with contextlib.suppress(PolicyError):  # logged and counted; the old policy stays
                        self._apply_active(path, snap, WATCH_ACTOR)
                else:
                    self._apply_shadow(path, snap)
        return acted

    # -- running

    def start(self) -> None:
        """Start watching (when there is a file and an interval) and listen for SIGHUP."""
        self._loop = asyncio.get_running_loop()
        if self._paths() and self.settings.policy_watch_interval > 0:
            self._task = asyncio.create_task(self._watch(self.settings.policy_watch_interval))
        if hasattr(signal, "SIGHUP"):
            # Only the main thread can take signals (not an embedded app); the watcher works regardless.
            with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
                self._loop.add_signal_handler(signal.SIGHUP, self._on_sighup)

    async def stop(self) -> None:
        if self._loop is not None and hasattr(signal, "SIGHUP"):
            with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
                self._loop.remove_signal_handler(signal.SIGHUP)
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        for task in list(self._signal_tasks):
            with contextlib.suppress(Exception):
                await task

    def _on_sighup(self) -> None:
        log.warning("SIGHUP: reloading the policy")
        task = asyncio.ensure_future(run_in_threadpool(self.reload_logged, SIGHUP_ACTOR))
        self._signal_tasks.add(task)
        task.add_done_callback(self._signal_tasks.discard)

    async def _watch(self, interval: float) -> None:
        while True:
            await asyncio.sleep(interval)
            try:
                await run_in_threadpool(self.poll)
            except Exception:  # keep watching; one failed look must not end hot reload
                log.exception("policy file watch failed")

    def describe_shadow(self) -> dict[str, Any] | None:
        """The shadow policy as `GET /v1/policy` shows it (None without one)."""
        g = self.governor
        shadow = g.shadow_policy
        if shadow is None and not self.settings.shadow_policy:
            return None
        return {
            "source": shadow.source if shadow else os.fspath(self.settings.shadow_policy_path() or ""),
            "hash": shadow.hash if shadow else None,
            "loaded_at": g.shadow_loaded_at,
            "rejected": list(self.shadow_problems),
            "stats": g.shadow_stats.to_dict(),
        }
