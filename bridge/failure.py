"""What a failed delivery attempt tells its worker: retry later, wait as told, pause, or give up."""

from __future__ import annotations

import math

# The longest a destination's Retry-After is obeyed: a misbehaving proxy's `1e9` must not pause a
# channel (for every replica) for years. Values that are not a finite number of seconds count as 1 s.
RETRY_AFTER_MAX_S = 30.0
RETRY_AFTER_FALLBACK_S = 1.0


def retry_after_s(header: str | None) -> float:
    """A Retry-After header as seconds to wait: finite numbers capped at RETRY_AFTER_MAX_S; anything
    else (missing, non-numeric, negative, NaN, infinite) is RETRY_AFTER_FALLBACK_S."""
    try:
        value = float(header) if header is not None else RETRY_AFTER_FALLBACK_S
    except ValueError:
        return RETRY_AFTER_FALLBACK_S
    if not math.isfinite(value) or value < 0:
        return RETRY_AFTER_FALLBACK_S
    return min(value, RETRY_AFTER_MAX_S)


class DeliveryFailure(Exception):
    """`retry_after_s`: the destination asked us to wait (429); `permanent`: no retry can fix it, the
    entry goes to the dead letters; otherwise retried with backoff."""

    def __init__(self, reason: str, *, permanent: bool = False, retry_after_s: float | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.permanent = permanent
        self.retry_after_s = retry_after_s
