"""What a failed delivery attempt tells its worker: retry later, wait as told, or give up."""

from __future__ import annotations


class DeliveryFailure(Exception):
    """`retry_after_s`: the destination asked us to wait (429); `permanent`: no retry can fix it, the
    entry goes to the dead letters; otherwise retried with backoff."""

    def __init__(self, reason: str, *, permanent: bool = False, retry_after_s: float | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.permanent = permanent
        self.retry_after_s = retry_after_s
