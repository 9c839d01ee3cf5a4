# -*- test-case-name: tests.http.cache.test_use_order -*-
"""
How L{netproxy.http.cache.sqlite_store.SQLiteStore} records the order in
which entries are used, which eviction follows: the times it stamps uses
with, and which uses are worth a write to the index.
"""

from collections.abc import Callable

from twisted.internet.interfaces import IReactorTime

#: Seconds between two uses of an entry recorded in the index: the order of
#: eviction is exact to this (among entries near eviction), and a hit costs
#: no write more often.
TOUCH_INTERVAL = 1.0
#: What two stamps given within one tick of the clock differ by.
_STEP = 1e-6


class UseOrder:
    """
    Stamps uses, and tells which to record.

    :param reactor: the clock.
    :param oldest: returns the oldest use recorded in the index (0 when
        empty); may raise L{Exception}, taken as "now".
    """

    def __init__(self, reactor: IReactorTime, oldest: Callable[[], float]) -> None:
        self._reactor = reactor
        self._oldest_of = oldest
        self._last = 0.0
        self._oldest = 0.0
        self._oldest_read = float("-inf")

    def stamp(self) -> float:
        """
        :returns: the time of a use: now, but always later than the stamp
            before, even within one tick of the clock, so that the least
            recently used entry is always one.
        """
        self._last = max(self._reactor.seconds(), self._last + _STEP)
        return self._last

    def worth_recording(self, last: float) -> bool:
        """
        :param last: when the entry's use was last recorded.
        :returns: whether a use now should be recorded: not within
            L{TOUCH_INTERVAL} of the last, and only for entries last used
            before the time halfway between the oldest recorded use and now
            (second chance, as a CLOCK cache gives): those in the newer half
            are far from eviction, and a hit on them costs no write.  The
            oldest use is read at most once per L{TOUCH_INTERVAL}; an older
            reading only records fewer uses.
        """
        now = self._reactor.seconds()
        if now - last < TOUCH_INTERVAL:
            return False
        if now - self._oldest_read >= TOUCH_INTERVAL:
            self._oldest_read = now
            try:
                self._oldest = self._oldest_of()
            except Exception:
                self._oldest = now
        return last <= self._oldest + (now - self._oldest) / 2
