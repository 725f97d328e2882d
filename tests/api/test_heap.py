"""The server process exempts what start-up made from later garbage collections, once the
app has started (a full collection over those objects held the event loop up to 93 ms)."""

from __future__ import annotations

import gc
import threading
import time
import weakref
from pathlib import Path

import uvicorn

from faramesh.config import Settings
from faramesh.server.app import create_app
from faramesh.server.drain import DrainingServer
from faramesh.server.heap import freeze_startup_objects
from tests.conftest import free_port


class _Cycle:
    def __init__(self) -> None:
        self.me = self


def test_start_up_garbage_is_collected_and_what_lives_on_is_frozen() -> None:
    garbage = _Cycle()
    gone = weakref.ref(garbage)
    del garbage
    before = gc.get_freeze_count()
    try:
        freeze_startup_objects()
        assert gone() is None, "garbage must be collected, not frozen for the life of the process"
        assert gc.get_freeze_count() > before
        assert len(gc.get_objects()) < gc.get_freeze_count()  # what is left to scan is small
    finally:
        gc.unfreeze()  # this test process makes and drops many apps: give them back


def test_the_server_runs_its_after_startup_step_once_the_app_has_started(tmp_path: Path) -> None:
    settings = Settings(database_url=f"sqlite:///{tmp_path / 'heap.db'}", rate_limit=None)
    app = create_app(settings)
    started: list[bool] = []
    server = DrainingServer(
        uvicorn.Config(app, port=free_port(), log_level="warning", lifespan="on"),
        app,
        after_startup=lambda: started.append(hasattr(app.state, "governor")),
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started and thread.is_alive() and time.monotonic() < deadline:
        time.sleep(0.01)
    server.should_exit = True
    thread.join(30)
    assert not thread.is_alive()
    assert started == [True], "called once, after the lifespan built the governor"
