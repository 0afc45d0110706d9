"""The API of activity code: ``from cadenza.sdk import activity``.

Activities are ordinary functions (``async def`` or ``def``) that do the I/O workflows may not
do. They run at least once; pass ``activity.info().idempotency_key`` to what they call so the
effect happens once.
"""

from cadenza.activities import (
    ActivityInfo,
    defn,
    heartbeat,
    in_activity,
    info,
    is_cancelled,
)

__all__ = ["ActivityInfo", "defn", "heartbeat", "in_activity", "info", "is_cancelled"]
