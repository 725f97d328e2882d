"""Hot reload of the policy files: a file watcher, SIGHUP and the admin endpoint.

All three go through :meth:`PolicyReloader.reload`. A file that does not
compile is rejected: every problem is logged, the rejection is counted in the
metrics, and the last good policy stays in force. The same holds for the
shadow policy (``--shadow-policy``), which is reloaded alongside.

The watcher polls each file's modification time, size and content hash, so
it sees edits however they are made (in place, or written elsewhere and
renamed over the file). A file that is missing for a moment (mid-rename) is
left alone until it is back.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import os
import signal
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from starlette.concurrency import run_in_threadpool

from faramesh.config import Settings
from faramesh.policy import Policy, PolicyError
from faramesh.service import Governor

log = logging.getLogger("faramesh.policy")

Fingerprint = tuple[int, int, str]
WATCH_ACTOR = "system:policy-watch"
SIGHUP_ACTOR = "system:sighup"


def fingerprint(path: Path) -> Fingerprint | None:
    """(mtime in ns, size, SHA-256 of the content); None while the file cannot be read."""
    try:
        stat = path.stat()
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
    except OSError:
        return None
    return (stat.st_mtime_ns, stat.st_size, digest)


def load_shadow_policy(settings: Settings) -> Policy | None:
    """The shadow policy named by the settings, or None; raises PolicyError like the active policy."""
    return Policy.from_file(settings.shadow_policy) if settings.shadow_policy else None


class PolicyReloader:
    """Reloads the active and the shadow policy of one governor; thread-safe."""

    def __init__(self, governor: Governor, settings: Settings, load: Callable[[Settings], Policy]) -> None:
        self.governor = governor
        self.settings = settings
        self._load = load
        self._lock = threading.Lock()
        self._seen: dict[Path, Fingerprint | None] = {}
        self.shadow_problems: list[str] = []  # why the last shadow file was rejected, if it was
        # The versions last rejected: asking again about the same broken file (the watcher and
        # an admin both noticing one edit) answers the same, but logs and counts it once.
        self._rejected: Fingerprint | None = None
        self._shadow_rejected: Fingerprint | None = None
        self._task: asyncio.Task[None] | None = None
        self._signal_tasks: set[asyncio.Future[Any]] = set()
        self._loop: asyncio.AbstractEventLoop | None = None
        for path in self._paths():
            self._seen[path] = fingerprint(path)

    def _paths(self) -> list[Path]:
        paths = []
        active = self.settings.policy_path()
        if active is not None:
            paths.append(active)
        if self.settings.shadow_policy:
            paths.append(Path(self.settings.shadow_policy))
        return paths

    # -- reloading

    def reload(self, actor: str | None = None) -> Policy:
        """Load the policy file again and apply it if it changed; raises PolicyError (logged) if it is invalid."""
        with self._lock:
            path = self.settings.policy_path()
            seen = fingerprint(path) if path is not None else None
            if path is not None:
                self._seen[path] = seen  # the watcher need not look at this version again
            try:
                policy = self._load(self.settings)
            except PolicyError as exc:
                if seen is not None and seen == self._rejected:
                    raise
                self._rejected = seen
                self.governor.telemetry.metrics.policy_reload(applied=False)
                log.error(
                    "policy %s rejected; the previous policy (hash %s) stays in force:\n%s",
                    self.settings.policy_path() or "<starter policy>",
                    self.governor.policy.hash[:12],
                    "\n".join(f"  {p}" for p in exc.problems),
                )
                raise
            finally:
                self._reload_shadow()
            self._rejected = None
            if policy.hash != self.governor.policy.hash:
                self.governor.set_policy(policy, actor=actor)
                log.warning("policy %s reloaded by %s (hash %s)", policy.source, actor or "?", policy.hash[:12])
            return policy

    def _reload_shadow(self) -> None:
        if not self.settings.shadow_policy:
            return
        path = Path(self.settings.shadow_policy)
        seen = self._seen[path] = fingerprint(path)
        try:
            shadow = load_shadow_policy(self.settings)
        except PolicyError as exc:
            self.shadow_problems = [str(p) for p in exc.problems]
            if seen is not None and seen == self._shadow_rejected:
                return
            self._shadow_rejected = seen
            current = self.governor.shadow_policy
            log.error(
                "shadow policy %s rejected; the previous shadow policy (hash %s) stays:\n%s",
                self.settings.shadow_policy,
                current.hash[:12] if current else "none",
                "\n".join(f"  {p}" for p in exc.problems),
            )
            return
        self.shadow_problems = []
        self._shadow_rejected = None
        old = self.governor.shadow_policy
        self.governor.set_shadow_policy(shadow)
        if shadow is not None and (old is None or old.hash != shadow.hash):
            log.warning("shadow policy %s loaded (hash %s)", shadow.source, shadow.hash[:12])

    def reload_logged(self, actor: str) -> None:
        """Reload, with failures only logged (the watcher and SIGHUP have nobody to answer)."""
        with contextlib.suppress(PolicyError):
            self.reload(actor)

    def poll(self) -> bool:
        """Reload if a watched file changed since the last look; True when one did."""
        changed = False
        for path in self._paths():
            now = fingerprint(path)
            if now is None or now == self._seen.get(path):
                continue
            self._seen[path] = now
            changed = True
        if changed:
            self.reload_logged(WATCH_ACTOR)
        return changed

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
            "source": shadow.source if shadow else os.fspath(self.settings.shadow_policy or ""),
            "hash": shadow.hash if shadow else None,
            "loaded_at": g.shadow_loaded_at,
            "rejected": list(self.shadow_problems),
            "stats": g.shadow_stats.to_dict(),
        }
