# -*- test-case-name: tests.test_backoff -*-
"""
Back-off for peers that fail: how long a peer that stopped answering is
passed over before it is tried again.

The reverse proxy's servers and the HTTP proxy's parent proxies follow one
rule: the first retry after a second, the wait doubling with each failure in
a row up to thirty seconds, and a peer that answers is up again at once.
Nothing probes a down peer: once its wait is over, the next request that
would go to it tries it.
"""

from dataclasses import dataclass

FIRST_RETRY = 1.0
MAX_RETRY = 30.0


def retry_wait(failures: int, first_retry: float = FIRST_RETRY, max_retry: float = MAX_RETRY) -> float:
    """
    :param failures: failed attempts in a row, at least 1.
    :returns: seconds before the peer is tried again: C{first_retry}
        doubled for each failure after the first, at most C{max_retry}.
    """
    # The exponent is bounded: a peer down for hours fails more than 1024
    # times in a row, and 2 ** 1024 does not fit in a float.
    return min(max_retry, first_retry * 2.0 ** min(max(failures, 1) - 1, 64))


@dataclass(eq=False)
class BackOff:
    """
    The up or down state of one peer.

    :ivar failures: failed attempts since it last answered.
    :ivar retry_at: when a down peer may be tried again, by the clock the
        caller passes; L{None} when up.
    """

    failures: int = 0
    retry_at: float | None = None

    def available(self, now: float) -> bool:
        """
        :returns: whether the peer is up, or down with its wait over.
        """
        return self.retry_at is None or now >= self.retry_at

    def failed(self, now: float, first_retry: float = FIRST_RETRY, max_retry: float = MAX_RETRY) -> float:
        """
        Record a failed attempt at C{now}.

        :returns: the seconds until the peer may be tried again.
        """
        self.failures += 1
        wait = retry_wait(self.failures, first_retry, max_retry)
        self.retry_at = now + wait
        return wait

    def answered(self) -> bool:
        """
        Record an attempt that succeeded.

        :returns: whether the peer was down until now.
        """
        was_down = self.retry_at is not None
        self.failures = 0
        self.retry_at = None
        return was_down
