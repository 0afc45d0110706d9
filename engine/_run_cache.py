"""What this process wrote of recent runs, so the hot path need not read it back.

The engine owns a run's shard while it writes the run, and every write it commits passes
through :meth:`WrittenRuns.record`. Two things are kept, each in a bounded LRU:

* the whole history of short runs this process created and has written every event of: a
  workflow task hands its worker the history up to ``seen_up_to``, read in the same statement
  that claimed the task; the cache answers when it holds exactly events ``1..seen_up_to``
  (event ids are dense and never rewritten, so that check is exact even if another server wrote
  to the run meanwhile — the cache then simply does not match and the database is read);
* the closed row and closing event of runs that closed here: a result waiter takes them
  without reading, and a closed run never changes again.
"""

from __future__ import annotations

import collections
from collections.abc import Sequence

from cadenza.history import ExecutionRecord, HistoryEvent

_HISTORIES = 2_000
_CLOSED = 2_000
_MAX_CACHED_EVENTS = 200


class WrittenRuns:
    """Bounded caches of recently written histories and recently closed runs."""

    def __init__(
        self,
        histories: int = _HISTORIES,
        closed: int = _CLOSED,
        max_events: int = _MAX_CACHED_EVENTS,
    ) -> None:
        self._histories: collections.OrderedDict[str, tuple[int, list[HistoryEvent]]] = (
            collections.OrderedDict()
        )
        self._closed: collections.OrderedDict[str, tuple[ExecutionRecord, HistoryEvent]] = (
            collections.OrderedDict()
        )
        self._max_histories = histories
        self._max_closed = closed
        self._max_events = max_events

    def record(
        self,
        shard_id: int,
        run_id: str,
        events: Sequence[HistoryEvent],
        *,
        created: bool,
        closed_record: ExecutionRecord | None = None,
    ) -> None:
        """A write of ``run_id`` committed with these events (``closed_record`` if it closed
        the run)."""
        if closed_record is not None:
            self._histories.pop(run_id, None)
            close_id = closed_record.state.close_event_id
            closing = next((e for e in events if e.event_id == close_id), None)
            if closing is not None:
                self._closed[run_id] = (closed_record, closing)
                if len(self._closed) > self._max_closed:
                    self._closed.popitem(last=False)
            return
        if not events:
            return
        if created:
            history = list(events)
        else:
            cached = self._histories.pop(run_id, None)
            if cached is None or not cached[1] or cached[1][-1].event_id + 1 != events[0].event_id:
                return
            history = cached[1]
            history.extend(events)
        if len(history) > self._max_events:
            return
        self._histories[run_id] = (shard_id, history)
        if len(self._histories) > self._max_histories:
            self._histories.popitem(last=False)

    def history(self, run_id: str, after: int, up_to: int) -> list[HistoryEvent] | None:
        """Events ``after < id <= up_to`` of the run if this process holds exactly its first
        ``up_to`` events, else None."""
        cached = self._histories.get(run_id)
        if cached is None:
            return None
        events = cached[1]
        if len(events) < up_to or up_to < 1 or events[up_to - 1].event_id != up_to:
            return None
        return events[after:up_to]

    def closed(self, run_id: str) -> tuple[ExecutionRecord, HistoryEvent] | None:
        """The closed row and closing event of a run that closed in this process."""
        return self._closed.get(run_id)

    def forget_shard(self, shard_id: int) -> None:
        """Drop the histories of a shard this process no longer owns (closed runs stay: they
        cannot change)."""
        for run_id in [r for r, (s, _) in self._histories.items() if s == shard_id]:
            del self._histories[run_id]
