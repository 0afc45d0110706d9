"""JSON bodies of the schedule routes (``/api/v1/schedules``), shared by the server and
:class:`~cadenza.frontend.remote.RemoteService`.

Specs travel as JSON objects (``{"kind": "cron", "cron": "0 0 2 * * ?", ...}``) and are decoded
by the engine with the lenient rules of schedule files (``15m``, ``PT15M`` or seconds), so bad
fields are named ``spec.<path>``. Date-times without an offset are read in the server's time
zone.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import msgspec

from cadenza.engine._schedule_api import (
    FireTimeView,
    ScheduleAction,
    ScheduleSummary,
)
from cadenza.history import RetryPolicySpec
from cadenza.history._schedule_records import ScheduleEvent

__all__ = [
    "ActionBody",
    "BackfillBody",
    "CreateScheduleBody",
    "DeleteScheduleBody",
    "FireTimeList",
    "NoteBody",
    "PreviewBody",
    "ScheduleEventPage",
    "ScheduleList",
    "ScheduleVerifyResponse",
    "TriggerBody",
    "UpdateScheduleBody",
]


class _Body(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    pass


class _StrictRetryPolicy(RetryPolicySpec, forbid_unknown_fields=True):
    pass


class ActionBody(ScheduleAction, forbid_unknown_fields=True):
    """What each fire starts: the fields of :class:`~cadenza.engine.ScheduleAction`."""

    retry_policy: _StrictRetryPolicy | None = None

    def to_action(self) -> ScheduleAction:
        """The engine's struct."""
        fields = msgspec.structs.asdict(self)
        if self.retry_policy is not None:
            fields["retry_policy"] = RetryPolicySpec(**msgspec.structs.asdict(self.retry_policy))
        return ScheduleAction(**fields)


class CreateScheduleBody(_Body, kw_only=True):
    """``POST /api/v1/schedules``."""

    schedule_id: str
    spec: dict[str, Any]
    action: ActionBody
    identity: str = ""


class UpdateScheduleBody(_Body, kw_only=True):
    """``POST …/update``: a new spec and/or action (omitted: unchanged)."""

    spec: dict[str, Any] | None = None
    action: ActionBody | None = None
    identity: str = ""


class NoteBody(_Body, kw_only=True):
    """``POST …/pause`` and ``…/unpause``."""

    note: str = ""
    identity: str = ""


class TriggerBody(_Body, kw_only=True):
    """``POST …/trigger``: ``overlap`` overrides the schedule's policy for this fire."""

    overlap: str = ""
    identity: str = ""


class BackfillBody(_Body, kw_only=True):
    """``POST …/backfill``: the spec's fires in ``[start, end]``."""

    start: datetime
    end: datetime
    overlap: str = ""
    identity: str = ""


class DeleteScheduleBody(_Body, kw_only=True):
    """``DELETE /api/v1/schedules/{id}`` (the body is optional)."""

    reason: str = ""
    identity: str = ""


class PreviewBody(_Body, kw_only=True):
    """``POST /api/v1/schedules/preview``: fire times of a spec that is not created."""

    spec: dict[str, Any]
    count: int = 10
    after: datetime | None = None
    schedule_id: str = ""


class ScheduleList(msgspec.Struct, frozen=True, kw_only=True):
    """``GET /api/v1/schedules``; ``next_after`` continues the listing when set."""

    schedules: list[ScheduleSummary]
    next_after: str | None = None


class FireTimeList(msgspec.Struct, frozen=True, kw_only=True):
    """``POST /api/v1/schedules/preview``."""

    fire_times: list[FireTimeView]


class ScheduleEventPage(msgspec.Struct, frozen=True, kw_only=True):
    """``GET …/events``: audit events after ``after`` (their hashes verify)."""

    schedule_id: str
    events: list[ScheduleEvent]
    next_after: int | None = None


class ScheduleVerifyResponse(msgspec.Struct, frozen=True, kw_only=True):
    """``GET …/verify``: the hash chain verdict of a schedule's audit log."""

    schedule_id: str
    ok: bool
    events_checked: int
    first_bad_event_id: int | None = None
    reason: str = ""
