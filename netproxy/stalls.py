# -*- test-case-name: tests.test_stalls -*-
"""
How long the reactor went without running its timers: a stall monitor.

Everything a role does runs on one reactor thread, so a callback that
blocks (a large synchronous write, a long loop over a cache's index) holds
back every connection at once.  Such a stall is seen from outside as a
timer that runs late: L{StallMonitor} keeps a timer due every
L{INTERVAL} seconds, measures how late each one ran, and keeps the longest
lateness and how many went over each of a few thresholds, for the roles'
metrics pages (L{stall_metrics}).

Lateness is measured with the reactor's own clock, as its timers are
scheduled: a step of the system clock forward reads as one stall of that
length.
"""

from collections.abc import Iterable

from twisted.application.service import Service
from twisted.internet.interfaces import IDelayedCall, IReactorTime

from netproxy.instruments import Counter, Gauge

#: Seconds between two checks.  A stall of D seconds is read as a lateness
#: between D - INTERVAL and D (the timer may fall due anywhere in it), so
#: 10 ms sees a 50 ms stall as at least 40 ms; and a hundred wake-ups a
#: second cost an idle daemon a fraction of a percent of one core.
INTERVAL = 0.01
#: Seconds: a stall longer than each is counted against it.  50 ms is what a
#: client begins to notice on a loopback round trip of well under one.
THRESHOLDS = (0.01, 0.05, 0.2, 1.0)


class StallMonitor(Service):
    """
    While running, measures how late a timer due every C{interval} seconds
    runs on C{clock}.

    :param clock: the reactor, whose timers it measures.
    :param interval: seconds between two checks.
    :param thresholds: seconds; a stall longer than each is counted.
    :ivar longest: the longest stall seen since the monitor was made, in
        seconds.
    :ivar stalls: C{{threshold: how many stalls were longer}}.
    :raises ValueError: for an interval or a threshold that is not a
        positive number.
    """

    def __init__(self, clock: IReactorTime, interval: float = INTERVAL,
                 thresholds: Iterable[float] = THRESHOLDS) -> None:
        thresholds = tuple(sorted(thresholds))
        # "not x > 0" also refuses NaN, which would never count a stall.
        if not interval > 0 or not all(threshold > 0 for threshold in thresholds):
            raise ValueError(f"interval and thresholds must be positive seconds: {interval!r}, {thresholds!r}")
        self._clock = clock
        self._interval = interval
        self._due = 0.0
        self._call: IDelayedCall | None = None
        self.longest = 0.0
        self.stalls = dict.fromkeys(thresholds, 0)

    # Service's methods named rather than reached through super(): mypy
    # knows Twisted's untyped methods by their own class.
    def startService(self) -> None:
        Service.startService(self)
        self._schedule()

    def stopService(self) -> None:
        if self._call is not None and self._call.active():
            self._call.cancel()
        self._call = None
        Service.stopService(self)

    def _schedule(self) -> None:
        # Each timer is set from when the previous one ran, not on a fixed
        # grid (as LoopingCall would), so that one stall is counted once and
        # not again for every tick it swallowed.
        self._due = self._clock.seconds() + self._interval
        self._call = self._clock.callLater(self._interval, self._check)

    def _check(self) -> None:
        self.record(self._clock.seconds() - self._due)
        self._schedule()

    def record(self, late: float) -> None:
        """
        Count a timer that ran C{late} seconds after it was due; a negative
        lateness (the clock stepped back) is no stall.
        """
        if late > self.longest:
            self.longest = late
        for threshold in self.stalls:
            if late <= threshold:
                break
            self.stalls[threshold] += 1


def stall_metrics(monitor: StallMonitor) -> tuple[Gauge, Counter]:
    """
    :returns: the gauge of C{monitor}'s longest stall and the counter of its
        stalls over each threshold, read from it when the page is rendered,
        for a role's L{netproxy.instruments.Registry}.
    """
    longest = Gauge("netproxy_reactor_longest_stall_seconds",
                    "The longest the reactor went without running a timer that was due, since the daemon started.",
                    read=lambda: monitor.longest)
    stalls = Counter("netproxy_reactor_stalls_total",
                     "Times the reactor ran a timer more than OVER seconds after it was due.", ("over",),
                     read=lambda: {(f"{threshold:g}",): count for threshold, count in monitor.stalls.items()})
    return longest, stalls
