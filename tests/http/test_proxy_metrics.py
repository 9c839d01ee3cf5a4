"""
Tests for L{netproxy.http.proxy_metrics}: what a finished request counts, and
what is read from the proxy only when the page is rendered.  (The page as
C{/metrics} serves it is tested in L{tests.http.test_admin}.)
"""

from twisted.application.service import MultiService
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from netproxy.http.proxy_metrics import CACHE_RESULTS, HttpMetrics


class FakeStore:
    """
    A cache store holding C{entries} entries of C{size} bytes in all.
    """

    def __init__(self, entries, size, evictions):
        self.entries = entries
        self.size = size
        self.evictions = evictions

    def __len__(self):
        return self.entries


class FakeCache:
    """
    A cache over a L{FakeStore}.
    """

    def __init__(self, store):
        self.store = store


class FakeFactory:
    """
    The parts of a proxy factory the metrics read.
    """

    def __init__(self):
        self.reactor = Clock()
        self.connections = set()
        self.pool = []
        self.cache = None
        self.rate_limiter = None


def samples(metrics, name):
    """
    :returns: the rendered sample lines of the family C{name}.
    """
    return [line for line in metrics.registry.render().decode().splitlines() if line.startswith(name + "{")
            or line.startswith(name + " ")]


class FinishedTests(SynchronousTestCase):
    """
    A finished request is counted by method, status and cache result, and its
    body's bytes are added up.
    """

    def setUp(self):
        self.metrics = HttpMetrics(FakeFactory())

    def test_by_method_and_status(self):
        """Requests are counted per method and status; a request answered with no status counts as '-'."""
        self.metrics.finished(b"GET", 200, 10, "MISS")
        self.metrics.finished(b"GET", 200, 5, "HIT")
        self.metrics.finished(b"POST", None, 0, "BYPASS")
        self.assertEqual(self.metrics.requests.value("GET", "200"), 2)
        self.assertEqual(self.metrics.requests.value("POST", "-"), 1)
        self.assertIn('netproxy_http_requests_total{method="GET",status="200"} 2',
                      samples(self.metrics, "netproxy_http_requests_total"))

    def test_invented_methods_together(self):
        """Methods a client invents are counted together as OTHER, so clients cannot grow the page."""
        for method in (b"BREW", b"WHEN", b"get"):
            self.metrics.finished(method, 405, 0, "BYPASS")
        self.assertEqual(self.metrics.requests.value("OTHER", "405"), 3)
        self.assertEqual(self.metrics.requests.total(), 3)

    def test_sent_bytes(self):
        """The bytes of every body sent are added up."""
        self.metrics.finished(b"GET", 200, 10, "MISS")
        self.metrics.finished(b"HEAD", 200, 0, "HIT")
        self.metrics.finished(b"GET", 200, 32, "HIT")
        self.assertEqual(self.metrics.sent.value(), 42)

    def test_cache_results(self):
        """Every cache result has a sample from the start, and each request adds to its own."""
        self.assertEqual([self.metrics.cache_requests.value(result) for result in CACHE_RESULTS], [0] * 5)
        self.metrics.finished(b"GET", 200, 1, "STALE")
        self.metrics.finished(b"GET", 304, 0, "REVALIDATED")
        self.metrics.finished(b"GET", 304, 0, "REVALIDATED")
        self.assertEqual({result: self.metrics.cache_requests.value(result) for result in CACHE_RESULTS},
                         {"HIT": 0, "MISS": 0, "REVALIDATED": 2, "STALE": 1, "BYPASS": 0})


class ReadWhenRenderedTests(SynchronousTestCase):
    """
    Gauges that mirror the proxy's own state read it when the page is
    rendered, not when it changes.
    """

    def test_connections(self):
        """Client and idle upstream connections are counted from the factory's own collections."""
        factory = FakeFactory()
        metrics = HttpMetrics(factory)
        factory.connections.update({"a", "b"})
        factory.pool.append("idle")
        self.assertIn("netproxy_http_client_connections 2", samples(metrics, "netproxy_http_client_connections"))
        self.assertIn("netproxy_http_upstream_idle_connections 1",
                      samples(metrics, "netproxy_http_upstream_idle_connections"))

    def test_no_cache(self):
        """Without a cache the cache's size, entries and evictions read 0."""
        metrics = HttpMetrics(FakeFactory())
        for name in ("netproxy_cache_stored_bytes", "netproxy_cache_entries", "netproxy_cache_evictions_total"):
            self.assertEqual(samples(metrics, name), [f"{name} 0"])

    def test_cache_set_later(self):
        """A cache given to the factory after the metrics were made is read all the same."""
        factory = FakeFactory()
        metrics = HttpMetrics(factory)
        factory.cache = FakeCache(FakeStore(entries=3, size=4096, evictions=7))
        self.assertEqual(samples(metrics, "netproxy_cache_stored_bytes"), ["netproxy_cache_stored_bytes 4096"])
        self.assertEqual(samples(metrics, "netproxy_cache_entries"), ["netproxy_cache_entries 3"])
        self.assertEqual(samples(metrics, "netproxy_cache_evictions_total"), ["netproxy_cache_evictions_total 7"])

    def test_stalls(self):
        """The reactor's stalls read 0 until the monitor, once started, sees a late timer on the factory's clock."""
        factory = FakeFactory()
        metrics = HttpMetrics(factory)
        self.assertEqual(samples(metrics, "netproxy_reactor_longest_stall_seconds"),
                         ["netproxy_reactor_longest_stall_seconds 0"])
        factory.reactor.advance(1)
        self.assertEqual(metrics.stalls.longest, 0)
        parent = MultiService()
        metrics.stalls.setServiceParent(parent)
        parent.startService()
        factory.reactor.advance(0.51)
        self.assertEqual(samples(metrics, "netproxy_reactor_longest_stall_seconds"),
                         ["netproxy_reactor_longest_stall_seconds 0.5"])
        self.assertIn('netproxy_reactor_stalls_total{over="0.2"} 1', samples(metrics, "netproxy_reactor_stalls_total"))
        self.assertIn('netproxy_reactor_stalls_total{over="1"} 0', samples(metrics, "netproxy_reactor_stalls_total"))
        parent.stopService()
