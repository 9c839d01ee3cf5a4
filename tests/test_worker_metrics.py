"""
Tests for L{netproxy.worker_metrics}: the pages workers share, merged into
the whole service's.
"""

import os

from twisted.internet.task import Clock
from twisted.internet.testing import EventLoggingObserver
from twisted.logger import LogLevel, globalLogPublisher
from twisted.python.filepath import FilePath
from twisted.trial.unittest import SynchronousTestCase

from netproxy.instruments import Counter, Gauge, Histogram, Registry
from netproxy.worker_metrics import (
    DEAD,
    MAIN,
    SNAPSHOT_INTERVAL,
    WorkerPages,
    merge,
    parse,
    render,
    retire,
    snapshot_path,
    write_restarts,
)
from tests.metrics_helpers import samples


def worker_registry(requests=0, connections=0, stored=0, stall=0.0, latencies=()):
    """
    :returns: a registry shaped like a worker's, with these values.
    """
    registry = Registry()
    counter = registry.add(Counter("netproxy_http_requests_total", "Requests.", ("method", "status")))
    if requests:
        counter.inc("GET", 200, amount=requests)
    registry.add(Gauge("netproxy_http_client_connections", "Open client connections.", read=lambda: connections))
    registry.add(Gauge("netproxy_cache_stored_bytes", "Bytes stored.", read=lambda: stored))
    registry.add(Gauge("netproxy_reactor_longest_stall_seconds", "Longest stall.", read=lambda: stall))
    histogram = registry.add(Histogram("netproxy_http_upstream_connect_seconds", "Connect time.", (0.1, 1.0)))
    for latency in latencies:
        histogram.observe(latency)
    return registry


class MergeTests(SynchronousTestCase):
    """Pages are merged sample by sample."""

    def test_round_trip(self):
        """A page parsed and rendered again says the same."""
        page = worker_registry(3, 2, 100, 0.5, (0.05, 2.0)).render()
        self.assertEqual(samples(render(parse(page.decode()))), samples(page))

    def test_counters_and_histograms_summed(self):
        """Counters and histogram buckets, sums and counts add up across workers."""
        one = parse(worker_registry(3, latencies=(0.05,)).render().decode())
        two = parse(worker_registry(4, latencies=(0.5, 2.0)).render().decode())
        merged = samples(render(merge(one, [two])))
        self.assertEqual(merged[("netproxy_http_requests_total", (("method", "GET"), ("status", "200")))], 7)
        self.assertEqual(merged[("netproxy_http_upstream_connect_seconds_bucket", (("le", "0.1"),))], 1)
        self.assertEqual(merged[("netproxy_http_upstream_connect_seconds_bucket", (("le", "1"),))], 2)
        self.assertEqual(merged[("netproxy_http_upstream_connect_seconds_count", ())], 3)

    def test_gauges(self):
        """Connections add up; the shared cache's size is the answering worker's; the longest stall is the longest."""
        one = parse(worker_registry(connections=2, stored=100, stall=0.2).render().decode())
        two = parse(worker_registry(connections=5, stored=90, stall=0.7).render().decode())
        merged = samples(render(merge(one, [two])))
        self.assertEqual(merged[("netproxy_http_client_connections", ())], 7)
        self.assertEqual(merged[("netproxy_cache_stored_bytes", ())], 100)
        self.assertEqual(merged[("netproxy_reactor_longest_stall_seconds", ())], 0.7)

    def test_label_sets_only_elsewhere(self):
        """A label set only another worker has is added."""
        registry = worker_registry()
        registry.render()
        other = Registry()
        other.add(Counter("netproxy_http_requests_total", "Requests.", ("method", "status"))).inc("POST", 201)
        merged = samples(render(merge(parse(registry.render().decode()), [parse(other.render().decode())])))
        self.assertEqual(merged[("netproxy_http_requests_total", (("method", "POST"), ("status", "201")))], 1)

    def test_garbage_skipped(self):
        """Lines that are not samples (a file cut short, noise) are skipped, not fatal."""
        page = parse("# HELP x a\n# TYPE x counter\nx 1\nx{a=\"1\"} nope\n}{ 3\n# TYPE\nx_total")
        self.assertEqual(page["x"].samples, {("x", ""): 1.0})


class WorkerPagesTests(SynchronousTestCase):
    """A worker writes its page for the others and renders the service's."""

    def setUp(self):
        self.directory = FilePath(self.mktemp())
        self.directory.makedirs()
        self.clock = Clock()
        self.registries = [worker_registry(3, 1), worker_registry(4, 2)]
        self.pages = [WorkerPages(self.directory.path, index, 2, registry.render, self.clock)
                      for index, registry in enumerate(self.registries)]
        for pages in self.pages:
            pages.startService()
            self.addCleanup(pages.stopService)

    def test_snapshot_written(self):
        """Each worker's page is in its file from the start, with its resident memory."""
        for index in (0, 1):
            page = samples(FilePath(snapshot_path(self.directory.path, index)).getContent())
            self.assertGreater(page[("netproxy_worker_resident_memory_bytes", ())], 0)

    def test_totals(self):
        """Either worker's page shows the totals over both, and per-worker series."""
        for pages in self.pages:
            page = samples(pages.render())
            self.assertEqual(page[("netproxy_http_requests_total", (("method", "GET"), ("status", "200")))], 7)
            self.assertEqual(page[("netproxy_worker_requests_total", (("worker", "0"),))], 3)
            self.assertEqual(page[("netproxy_worker_requests_total", (("worker", "1"),))], 4)
            self.assertEqual(page[("netproxy_worker_client_connections", (("worker", "1"),))], 2)
            self.assertIn(("netproxy_worker_resident_memory_bytes", (("worker", "0"),)), page)

    def test_own_counts_live(self):
        """The answering worker's own counts are live; the other's as of its last snapshot, then its next."""
        self.registries[0]._metrics[0].inc("GET", 200, amount=10)
        self.registries[1]._metrics[0].inc("GET", 200, amount=100)
        key = ("netproxy_http_requests_total", (("method", "GET"), ("status", "200")))
        self.assertEqual(samples(self.pages[0].render())[key], 13 + 4)
        self.clock.advance(SNAPSHOT_INTERVAL)
        self.assertEqual(samples(self.pages[0].render())[key], 13 + 104)

    def test_dead_worker_kept(self):
        """Once a dead worker's page is retired, its counts stay in the totals and its successor starts afresh."""
        retire(self.directory.path, 1)
        write_restarts(self.directory.path, {0: 0, 1: 1})
        self.assertFalse(os.path.exists(snapshot_path(self.directory.path, 1)))
        successor = WorkerPages(self.directory.path, 1, 2, worker_registry(1).render, self.clock)
        successor.startService()
        self.addCleanup(successor.stopService)
        page = samples(self.pages[0].render())
        self.assertEqual(page[("netproxy_http_requests_total", (("method", "GET"), ("status", "200")))], 3 + 4 + 1)
        self.assertEqual(page[("netproxy_worker_requests_total", (("worker", "1"),))], 1)
        self.assertEqual(page[("netproxy_worker_restarts_total", (("worker", "1"),))], 1)
        self.assertTrue(self.directory.child(DEAD).exists() and self.directory.child(MAIN).exists())

    def test_retire_twice(self):
        """Retiring a worker that wrote no page since changes nothing."""
        retire(self.directory.path, 1)
        before = self.directory.child(DEAD).getContent()
        retire(self.directory.path, 1)
        self.assertEqual(self.directory.child(DEAD).getContent(), before)

    def test_unwritable(self):
        """A directory that cannot be written is logged once; the worker's own page still renders."""
        logged = EventLoggingObserver.createWithCleanup(self, globalLogPublisher)
        self.directory.remove()
        self.clock.advance(SNAPSHOT_INTERVAL)
        self.clock.advance(SNAPSHOT_INTERVAL)
        errors = [event for event in logged if event["log_level"] == LogLevel.error]
        self.assertEqual([event["index"] for event in errors], [0, 1])
        page = samples(self.pages[0].render())
        self.assertEqual(page[("netproxy_http_requests_total", (("method", "GET"), ("status", "200")))], 3)

    def test_stops_writing(self):
        """Once stopped, a worker writes no more pages."""
        path = FilePath(snapshot_path(self.directory.path, 0))
        self.pages[0].stopService()
        path.remove()
        self.clock.advance(10 * SNAPSHOT_INTERVAL)
        self.assertFalse(path.exists())
