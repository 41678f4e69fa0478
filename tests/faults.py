"""Fault injection for the tests: real steps that fail after their work is done.

A task that commits its work and then dies (the worker is killed, the network drops
before Airflow records success) is the hard case for idempotency: the retry repeats
work that is already in the database. These wrappers run the real step and then raise,
so the retry meets exactly that state.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any


class FailsOnceAfterWork:
    """Wraps ``step``: every call runs it; the first call then raises instead of returning."""

    def __init__(self, step: Callable[..., Any]) -> None:
        self.step = step
        self.calls = 0
        self.failures = 0

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        result = self.step(*args, **kwargs)
        self.calls += 1
        if not self.failures:
            self.failures += 1
            raise RuntimeError(f"injected failure after {self.step.__name__} finished its work")
        return result


class InterruptedOnce:
    """Wraps ``step``: the first call for which ``when(*args, **kwargs)`` holds raises
    ``error`` instead of running, as a task stopped there would (its timeout, a worker
    killed, the database connection cut); every other call runs the step."""

    def __init__(
        self, step: Callable[..., Any], when: Callable[..., bool], error: Callable[[], BaseException]
    ) -> None:
        self.step = step
        self.when = when
        self.error = error
        self.interrupted = False

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        if not self.interrupted and self.when(*args, **kwargs):
            self.interrupted = True
            raise self.error()
        return self.step(*args, **kwargs)
