# -*- test-case-name: tests.test_rate_limit -*-
"""
Rate limits per client address, as token buckets: bytes per second both
ways together (C{--rate-limit}) and requests per second
(C{--max-requests-rate}).

A client is what the per-client connection limit counts as one
(L{netproxy.connections.client_group}: an IPv4 address, the /64 of an IPv6
one), whatever its number of connections: the connections of one client
draw on one byte bucket, so opening more connections, or rotating through
the addresses of its /64, gets a client no more bandwidth.

Bytes are limited without holding any.  What a connection reads or writes
is counted once it has moved, and while the address's bucket is in debt
every one of its connections is paused: its transport stops reading, and
whatever produces into it (an origin's transport, a cache body, a tunnel's
far end) is paused, until the bucket has refilled (C{callLater}).  The
transports' own buffer bounds are thus the only buffers, as without a
limit; a single read or write may overdraw the bucket, and the pause that
follows pays it back, so the long-run rate is the limit.

A client's buckets outlive its connections until they are full again (a
full bucket is a fresh one): closing every connection and opening new ones
forgives no debt, and the table holds only the addresses connected or
recently so.
"""

from typing import Any

from twisted.internet.interfaces import IDelayedCall, IReactorTime

from netproxy.connections import client_group
from netproxy.escaping import Logger
from netproxy.throttling import ThrottledTransport

#: The byte bucket holds this many seconds of the rate (a quarter of a
#: second's worth): short bursts are smooth, long transfers keep to the rate.
BYTE_BURST_SECONDS = 0.25
#: ... and never less than this many bytes, a few socket reads' worth.
MIN_BYTE_BURST = 16 * 1024
#: The shortest pause: shorter ones would cost more timer calls than they save.
MIN_PAUSE = 0.001


class TokenBucket:
    """
    A token bucket: C{rate} tokens a second, up to C{burst} held; it starts
    full.

    :param rate: tokens added per second, more than 0.
    :param burst: the most tokens it holds.
    :param clock: the reactor's clock.
    """

    def __init__(self, rate: float, burst: float, clock: IReactorTime) -> None:
        self.rate = rate
        self.burst = burst
        self._clock = clock
        self._tokens = burst
        self._stamp = clock.seconds()

    @property
    def tokens(self) -> float:
        """The tokens held now: below 0 while in debt."""
        now = self._clock.seconds()
        if now > self._stamp:
            self._tokens = min(self.burst, self._tokens + (now - self._stamp) * self.rate)
            self._stamp = now
        return self._tokens

    def spend(self, amount: float) -> float:
        """
        Take C{amount} tokens, into debt if need be (they were used already).

        :returns: the seconds until the bucket is out of debt, 0 if it is not.
        """
        self._tokens = tokens = self.tokens - amount
        return 0.0 if tokens >= 0 else -tokens / self.rate

    def take(self, amount: float = 1.0) -> float:
        """
        Take C{amount} tokens if the bucket holds them.

        :returns: 0 when they were taken; else the seconds until it will hold
            them (nothing was taken).
        """
        tokens = self.tokens
        if tokens >= amount:
            self._tokens = tokens - amount
            return 0.0
        return (amount - tokens) / self.rate

    def debt(self) -> float:
        """:returns: the seconds until the bucket is out of debt, or 0."""
        tokens = self.tokens
        return 0.0 if tokens >= 0 else -tokens / self.rate

    def full_in(self) -> float:
        """:returns: the seconds until the bucket is full again, or 0."""
        return max(0.0, (self.burst - self.tokens) / self.rate)


def byte_burst(rate: int) -> float:
    """:returns: the size of the byte bucket for C{rate} bytes per second."""
    return max(rate * BYTE_BURST_SECONDS, MIN_BYTE_BURST)


def request_burst(rate: float) -> float:
    """
    :returns: the size of the request bucket for C{rate} requests per
        second: a second's worth, at least one request.
    """
    return max(1.0, rate)


class ClientLimits:
    """
    The buckets of one client address and its connections' transports.

    :ivar connections: how many connections it has open.
    """

    log = Logger()

    def __init__(self, limiter: "RateLimiter", host: str) -> None:
        self.host = host
        self._limiter = limiter
        clock = limiter.clock
        self.bytes = None if limiter.byte_rate is None else TokenBucket(
            limiter.byte_rate, byte_burst(limiter.byte_rate), clock)
        self.requests = None if limiter.request_rate is None else TokenBucket(
            limiter.request_rate, request_burst(limiter.request_rate), clock)
        self.connections = 0
        self.transports: list[ThrottledTransport] = []
        self._paused_since: float | None = None
        self._resume: IDelayedCall | None = None
        self._expiry: IDelayedCall | None = None
        # Whether the refusal of its requests has been logged since the last
        # one admitted: one warning per episode, not one per request.
        self._warned = False

    def wrap(self, transport: Any) -> Any:
        """
        A new connection of this client: count it.

        :returns: the transport its protocol uses: a L{ThrottledTransport}
            when bytes are limited, else C{transport}.
        """
        self.connections += 1
        if self._expiry is not None:
            self._expiry.cancel()
            self._expiry = None
        if self.bytes is None:
            return transport
        throttled = ThrottledTransport(transport, self)
        self.transports.append(throttled)
        if self._paused_since is not None:
            throttled.throttle(True)
        return throttled

    def leave(self, transport: Any) -> None:
        """
        A connection of this client has closed; C{transport} is what
        L{wrap} returned for it.
        """
        self.connections -= 1
        if transport in self.transports:
            self.transports.remove(transport)
        if self.connections > 0:
            return
        if self._paused_since is not None:
            self._end_pause()
        buckets = [bucket for bucket in (self.bytes, self.requests) if bucket is not None]
        wait = max((bucket.full_in() for bucket in buckets), default=0.0)
        if wait <= 0:
            self._limiter.forget(self)
        else:
            self._expiry = self._limiter.clock.callLater(wait, self._expire)

    def _expire(self) -> None:
        self._expiry = None
        if self.connections == 0:
            self._limiter.forget(self)

    def received(self, size: int) -> None:
        """C{size} bytes were read from one of its connections."""
        if self.bytes is not None:
            self.transferred(size)

    def transferred(self, size: int) -> None:
        """C{size} bytes moved on one of its connections, either way."""
        assert self.bytes is not None
        wait = self.bytes.spend(size)
        if wait <= 0:
            return
        self._limiter.throttled_bytes += size
        if self._paused_since is None and self.transports:
            self._paused_since = self._limiter.clock.seconds()
            for transport in self.transports:
                transport.throttle(True)
            self._resume = self._limiter.clock.callLater(max(wait, MIN_PAUSE), self._refilled)

    def _refilled(self) -> None:
        self._resume = None
        assert self.bytes is not None
        wait = self.bytes.debt()
        if wait > 0:
            # Bytes already on their way while paused added to the debt.
            self._resume = self._limiter.clock.callLater(max(wait, MIN_PAUSE), self._refilled)
            return
        self._end_pause()

    def _end_pause(self) -> None:
        if self._resume is not None:
            self._resume.cancel()
            self._resume = None
        assert self._paused_since is not None
        self._limiter.throttled_seconds += self._limiter.clock.seconds() - self._paused_since
        self._paused_since = None
        for transport in list(self.transports):
            if self._paused_since is not None:
                # A resumed connection moved enough to pause them all again.
                break
            transport.throttle(False)

    def admit_request(self) -> float | None:
        """
        Take a request from the request bucket.

        :returns: L{None} when the request may go on; else the seconds until
            another would be admitted (the request is refused).
        """
        if self.requests is None:
            return None
        wait = self.requests.take()
        if wait <= 0:
            self._warned = False
            return None
        self._limiter.refused_requests += 1
        if not self._warned:
            self._warned = True
            self.log.warn("client {host} is over --max-requests-rate {rate:g}/s: refusing its requests (429)",
                          host=self.host, rate=self.requests.rate)
        return wait


class RateLimiter:
    """
    The rate limits of a role's clients, by address.

    :param clock: the reactor's clock.
    :param byte_rate: bytes per second each client address may move, both
        ways together, or L{None} for no limit.
    :param request_rate: requests per second each client address may make,
        or L{None} for no limit.
    :ivar throttled_bytes: bytes that overdrew a client's bucket, each of
        them paid back by a pause.
    :ivar throttled_seconds: seconds clients' connections spent paused, one
        count per address (counted when each pause ends).
    :ivar refused_requests: requests refused for their client's rate.
    """

    def __init__(self, clock: IReactorTime, byte_rate: int | None = None, request_rate: float | None = None) -> None:
        self.clock = clock
        self.byte_rate = byte_rate
        self.request_rate = request_rate
        self.clients: dict[str, ClientLimits] = {}
        self.throttled_bytes = 0
        self.throttled_seconds = 0.0
        self.refused_requests = 0

    def join(self, host: str) -> ClientLimits:
        """
        :returns: the L{ClientLimits} of client address C{host} (shared by
            its L{client_group}), for a new connection to
            L{ClientLimits.wrap} its transport with.
        """
        group = client_group(host)
        client = self.clients.get(group)
        if client is None:
            client = self.clients[group] = ClientLimits(self, group)
        return client

    def forget(self, client: ClientLimits) -> None:
        """Drop C{client}: no connection is open and its buckets are full."""
        if self.clients.get(client.host) is client:
            del self.clients[client.host]
