# -*- test-case-name: tests.http.test_proxy_metrics -*-
"""
The HTTP proxy's metrics, as its C{/metrics} page shows them.

Requests, bytes and cache results are counted when a request is finished
(where its access line is written); latencies where they are measured;
connections, the cache's size and its evictions are read from the objects
that keep them when the page is rendered, as are the reactor's stalls, which
the metrics' own L{StallMonitor} measures once the role's services start it.
A worker's page shows the whole service (L{HttpMetrics.share}).
"""

from collections.abc import Sized
from typing import Protocol

from twisted.internet.interfaces import IReactorTime

from netproxy.instruments import Counter, Gauge, Histogram
from netproxy.rate_limit import RateLimiter
from netproxy.role_metrics import RoleMetrics

# Seconds: from a loopback origin's sub-millisecond answers to timeouts.
LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
CACHE_RESULTS = ("HIT", "MISS", "REVALIDATED", "STALE", "BYPASS")
# Other methods are counted together: a label per method a client invents
# would let clients grow the page without bound.
METHODS = frozenset(b"GET HEAD POST PUT DELETE PATCH OPTIONS TRACE CONNECT PURGE".split())


class MeteredStore(Protocol):
    """
    What the metrics read of a cache's store.
    """

    def __len__(self) -> int:
        """The number of entries."""

    @property
    def size(self) -> int:
        """The bytes the entries take."""

    @property
    def evictions(self) -> int:
        """The entries evicted so far."""


class MeteredCache(Protocol):
    """
    What the metrics read of the proxy's cache.
    """

    @property
    def store(self) -> MeteredStore:
        """Where the entries are kept."""


class MeteredFactory(Protocol):
    """
    What the metrics read of the proxy (a
    L{netproxy.http.proxy.ProxyFactory}) when the page is rendered.
    """

    @property
    def reactor(self) -> IReactorTime:
        """The reactor it runs on, whose stalls are measured."""

    @property
    def connections(self) -> Sized:
        """The open client connections."""

    @property
    def pool(self) -> Sized:
        """The idle connections to origins."""

    @property
    def cache(self) -> MeteredCache | None:
        """The cache, or L{None} without one."""

    @property
    def rate_limiter(self) -> RateLimiter | None:
        """The clients' rate limits, or L{None} without any."""


class HttpMetrics(RoleMetrics):
    """
    The proxy's counters, gauges and histograms, and the registry that
    renders them.
    """

    def __init__(self, factory: MeteredFactory) -> None:
        """
        :param factory: the proxy they describe.
        """
        super().__init__()
        add = self.registry.add
        # Counted in plain dictionaries and integers, turned into labelled
        # samples only when the page is rendered: a request costs a few
        # dictionary operations.
        self._requests: dict[tuple[bytes, int | None], int] = {}
        self._results = dict.fromkeys(CACHE_RESULTS, 0)
        self.received_bytes = 0
        self.sent_bytes = 0
        self.requests = add(Counter(
            "netproxy_http_requests_total", "Requests finished, by method and status (- when none was sent).",
            ("method", "status"), read=self._request_samples))
        self.received = add(Counter(
            "netproxy_http_received_bytes_total", "Bytes read from clients: request heads, bodies and tunnel data.",
            read=lambda: self.received_bytes))
        self.sent = add(Counter(
            "netproxy_http_sent_bytes_total", "Bytes of response bodies and tunnel data sent to clients.",
            read=lambda: self.sent_bytes))
        self.connect_seconds = add(Histogram(
            "netproxy_http_upstream_connect_seconds", "Time to connect to an origin.", LATENCY_BUCKETS))
        self.response_seconds = add(Histogram(
            "netproxy_http_upstream_response_seconds",
            "Time from sending a request to an origin to receiving its response head.", LATENCY_BUCKETS))
        add(Gauge("netproxy_http_client_connections", "Open client connections.",
                  read=lambda: len(factory.connections)))
        self.upstream_connections = add(Gauge(
            "netproxy_http_upstream_connections", "Open connections to origins, in use or idle in the pool."))
        add(Gauge("netproxy_http_upstream_idle_connections", "Idle connections to origins, in the pool.",
                  read=lambda: len(factory.pool)))
        self.cache_requests = add(Counter(
            "netproxy_cache_requests_total",
            "Requests by what the cache did: HIT, MISS, REVALIDATED, STALE or BYPASS (not consulted).", ("result",),
            read=lambda: {(result,): count for result, count in self._results.items()}))
        self.collapsed = add(Counter(
            "netproxy_cache_collapsed_total",
            "Misses answered with the response another request was fetching (collapsed forwarding)."))
        # Read through the factory, whose cache may be set after it is made
        # (0 without one).
        add(Gauge("netproxy_cache_stored_bytes", "Bytes the cache's entries take (bodies and records).",
                  read=lambda: 0 if factory.cache is None else factory.cache.store.size))
        add(Gauge("netproxy_cache_entries", "Entries in the cache.",
                  read=lambda: 0 if factory.cache is None else len(factory.cache.store)))
        add(Counter("netproxy_cache_evictions_total", "Entries evicted to keep within --cache-size.",
                    read=lambda: 0 if factory.cache is None else factory.cache.store.evictions))
        # Read through the factory too: its limits are set after it is made.
        add(Counter("netproxy_http_throttled_bytes_total",
                    "Bytes of clients over --rate-limit that overdrew their address's bucket (paid back by pausing).",
                    read=lambda: _limiter_count(factory, "throttled_bytes")))
        add(Counter("netproxy_http_throttled_seconds_total",
                    "Seconds client addresses spent paused by --rate-limit (counted as each pause ends).",
                    read=lambda: _limiter_count(factory, "throttled_seconds")))
        add(Counter("netproxy_http_rate_limited_requests_total",
                    "Requests refused with 429 by --max-requests-rate.",
                    read=lambda: _limiter_count(factory, "refused_requests")))
        # Not running until a service parent starts it (netproxy.tap does).
        self.watch_stalls(factory.reactor)

    def finished(self, method: bytes, status: int | None, size: int, cache: str) -> None:
        """
        Count a finished request: its C{method} and C{status} (L{None} when
        none was sent), the C{size} of the body sent, the C{cache} result.
        """
        key = (method if method in METHODS else b"OTHER", status)
        requests = self._requests
        requests[key] = requests.get(key, 0) + 1
        self.sent_bytes += size
        self._results[cache] += 1

    def _request_samples(self) -> dict[tuple[str, str], int]:
        return {(method.decode("ascii"), "-" if status is None else str(status)): count
                for (method, status), count in self._requests.items()}


def _limiter_count(factory: MeteredFactory, name: str) -> float:
    limiter = factory.rate_limiter
    count: float = 0 if limiter is None else getattr(limiter, name)
    return count
