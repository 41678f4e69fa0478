"""The few error types users see.

Two levels: a bad *item* is recorded and skipped (:class:`ItemError` and subclasses);
a bad *configuration* or unreachable database stops the run (:class:`ConfigError`,
:class:`DatabaseError`).
"""

from __future__ import annotations


class SummitwatchError(Exception):
    """Base class of everything summitwatch raises on purpose."""


class ConfigError(SummitwatchError):
    """A setting or configuration file is invalid; the message names the key."""


class DatabaseError(SummitwatchError):
    """The database cannot be reached or is not at the expected schema."""


class DatabaseUnavailable(DatabaseError):
    """The database stopped answering during a command (stopped, restarting, cut off):
    what was committed is kept, and the same work can go on once it is back. ``reason``:
    the driver's words."""

    def __init__(self, message: str, *, reason: str = "") -> None:
        super().__init__(message)
        self.reason = reason or message


class DatabaseBusy(DatabaseUnavailable):
    """Another writer held the database's write lock for longer than the busy timeout: what
    was committed is kept, and the same work can go on once that writer is done."""


class FilterError(SummitwatchError):
    """A list filter or search query that cannot be used; the message says which and why."""


class ItemError(SummitwatchError):
    """One item (feed, page, import line) failed; the run goes on.

    ``permanent`` errors (not HTML, blocked address, malformed input) are quarantined and
    never retried; the others (timeouts, 5xx) are retried on a later cycle.
    """

    def __init__(self, message: str, *, permanent: bool = False) -> None:
        super().__init__(message)
        self.permanent = permanent


class FetchError(ItemError):
    """An HTTP fetch failed (timeout, refused, too large, bad status, blocked host).

    ``retry_after``: seconds the server asked to wait (its Retry-After header), if any.
    ``timed_out``: the server did not answer within the time limits. ``deferred``: no
    request was made (its host timed out too often in this run: :class:`pipeline.http.
    HostBreaker`), so the failure is no attempt and the page waits for the next run.
    ``answered``: the server answered, and its answer was not the page (an error status,
    a body over the size limit, a consent wall), as against a link never fetched (refused
    address, malformed URL, redirect loop). ``status``: the HTTP status of an error
    answer (404, 410, 503...), None for every other failure.
    """

    def __init__(
        self,
        message: str,
        *,
        permanent: bool = False,
        retry_after: float | None = None,
        timed_out: bool = False,
        deferred: bool = False,
        answered: bool = False,
        status: int | None = None,
    ) -> None:
        super().__init__(message, permanent=permanent)
        self.retry_after = retry_after
        self.timed_out = timed_out
        self.deferred = deferred
        self.answered = answered
        self.status = status


class ExtractionError(ItemError):
    """A page yielded no article text."""
