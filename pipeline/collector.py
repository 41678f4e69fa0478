"""The garbage collector's setting for batch work (a polling cycle, a DAG poll task).

A polling cycle allocates millions of short-lived objects. At Python's default (a
collection of the youngest generation every 700 allocations) the collector runs a few
hundred times a cycle and walks the young objects each time: 0.3 s of a cycle's main
process (``benchmarks/cycle_speed.py``). Every :data:`COLLECT_EVERY` allocations it runs
about ten times, 0.05 s. Reference counting still frees everything at once; only
reference cycles wait a little longer. Forked prepare workers inherit the setting.
"""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager

# Allocations between two collections of the youngest generation (Python's default: 700).
COLLECT_EVERY = 20_000


def use_batch_threshold() -> tuple[int, int, int]:
    """Collect the youngest generation every :data:`COLLECT_EVERY` allocations from now on
    (or as rarely as already set); returns the threshold there was."""
    earlier = gc.get_threshold()
    gc.set_threshold(max(COLLECT_EVERY, earlier[0]), *earlier[1:])
    return earlier


@contextmanager
def batch_collection() -> Iterator[None]:
    """Collect the youngest generation every :data:`COLLECT_EVERY` allocations inside the block.

    The earlier threshold is restored on the way out, however the block ends, so that a
    host process (an Airflow task runner, a test session) keeps its own setting.
    """
    earlier = use_batch_threshold()
    try:
        yield
    finally:
        gc.set_threshold(*earlier)
