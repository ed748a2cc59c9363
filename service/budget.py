"""A budget of image pixels in the pipeline, so that memory is bounded by pixels, not by request count.

The request queue bounds how many images wait; a few maximum-size images can
still take far more memory than a queue of small ones. Each admitted image
reserves its width x height once its header is read (before its pixels are
decoded) and returns it once its answer is encoded; an image that does not
fit is refused (503). Reserving happens on a CPU-pool thread, releasing on the
event loop, hence the lock.
"""

from __future__ import annotations

import threading

from service.exceptions import PixelBudgetFull


class ReservationClosed(RuntimeError):
    """The request gave up (cancelled, timed out) before its decode reserved pixels: stop decoding it."""


class PixelBudget:
    """At most ``limit`` pixels reserved at once, across threads."""

    def __init__(self, limit: int) -> None:
        if limit < 1:
            raise ValueError(f"a pixel budget must be positive, got {limit}")
        self.limit = limit
        self._used = 0
        self._lock = threading.Lock()

    @property
    def in_use(self) -> int:
        """Pixels reserved now."""
        return self._used

    def reservation(self) -> Reservation:
        """An empty reservation for one request: :meth:`Reservation.hold` fills it, :meth:`Reservation.release` ends it."""
        return Reservation(self)


class Reservation:
    """One request's share of a :class:`PixelBudget`: held at most once, released exactly once."""

    def __init__(self, budget: PixelBudget) -> None:
        self._budget = budget
        self._pixels = 0
        self._closed = False

    @property
    def pixels(self) -> int:
        """Pixels held now (0 before :meth:`hold` and after :meth:`release`)."""
        return self._pixels

    def hold(self, pixels: int) -> None:
        """Reserve ``pixels`` (any thread), or raise :class:`PixelBudgetFull` when they do not fit now.

        Raises :class:`ReservationClosed` once released: the request is gone.
        """
        budget = self._budget
        with budget._lock:
            if self._closed:
                raise ReservationClosed("the request ended before its image was decoded")
            if self._pixels:
                raise RuntimeError("a reservation is held once")
            if budget._used + pixels > budget.limit:
                raise PixelBudgetFull(
                    f"too many image pixels in progress ({budget._used} of {budget.limit} reserved; "
                    f"this image needs {pixels}); retry later"
                )
            budget._used += pixels
            self._pixels = pixels

    def release(self) -> None:
        """Give the pixels back. Idempotent; a :meth:`hold` after it raises :class:`ReservationClosed`."""
        budget = self._budget
        with budget._lock:
            budget._used -= self._pixels
            self._pixels = 0
            self._closed = True


__all__ = ["PixelBudget", "Reservation", "ReservationClosed"]
