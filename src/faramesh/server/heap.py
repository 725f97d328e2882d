"""The server process's heap once it has started.

What start-up makes (modules, the app and its routes, the compiled policy, the database
engine) lives as long as the process, about 150,000 objects the cyclic garbage collector
would otherwise scan again at each full collection. Under load such a collection held the
event loop for up to 93 ms, every request in flight waiting behind it (`benchmarks/`,
docs/performance.md). Moving them to the permanent generation leaves the collector only
what requests and background work make.

Only the server process does this (`faramesh serve`, each worker after its own start),
never an app embedded in another program or a test run: frozen objects are never
collected, which is right for what lives as long as the process and wrong for a
process that makes and drops many apps.
"""

from __future__ import annotations

import gc


def freeze_startup_objects() -> None:
    """Collect start-up's garbage, then exempt what is left from later collections."""
    gc.collect()
    gc.freeze()
