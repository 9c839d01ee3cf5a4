"""
Tests for L{netproxy.role_metrics}: the start time, the stalls and the
shared page every proxy role's metrics have.
"""

import shutil
import tempfile

from prometheus_client.parser import text_string_to_metric_families
from twisted.internet.testing import MemoryReactorClock
from twisted.trial.unittest import SynchronousTestCase

from netproxy.instruments import Counter
from netproxy.role_metrics import RoleMetrics
from netproxy.worker_metrics import snapshot_path, write_page
from netproxy.worker_options import Worker


class Counting(RoleMetrics):
    """
    A role's metrics with one counter of its own, added between the start
    time and the stalls as the roles add theirs.
    """

    def __init__(self, reactor):
        super().__init__()
        self.count = 0
        self.registry.add(Counter("netproxy_test_things_total", "Things.", read=lambda: self.count))
        self.watch_stalls(reactor)


def names(page):
    return [family.name for family in text_string_to_metric_families(page.decode("utf-8"))]


class RoleMetricsTests(SynchronousTestCase):
    """
    The page of a role's metrics.
    """

    def test_order(self):
        """The start time comes first, the role's own metrics next, the stalls last."""
        metrics = Counting(MemoryReactorClock())
        shown = names(metrics.page())
        self.assertEqual(shown[:2], ["netproxy_start_time_seconds", "netproxy_test_things"])
        self.assertTrue(len(shown) > 2 and all("stall" in name for name in shown[2:]), shown)

    def test_stalls_not_running(self):
        """The stall monitor waits for a service parent to start it: nothing is scheduled before."""
        reactor = MemoryReactorClock()
        metrics = Counting(reactor)
        self.assertFalse(metrics.stalls.running)
        self.assertEqual(reactor.getDelayedCalls(), [])

    def test_shared(self):
        """Once shared, the page adds what another worker counted; the registry alone does not."""
        directory = tempfile.mkdtemp()
        self.addCleanup(shutil.rmtree, directory)
        other = Counting(MemoryReactorClock())
        other.count = 5
        write_page(snapshot_path(directory, 1), other.registry.render())
        metrics = Counting(MemoryReactorClock())
        metrics.count = 2
        service = metrics.share(Worker(0, 2, ((4, "INET"),), (0, 3), directory), MemoryReactorClock())
        self.assertFalse(service.running)
        self.assertIn(b"netproxy_test_things_total 7", metrics.page())
        self.assertIn(b"netproxy_test_things_total 2", metrics.registry.render())

    def test_unreadable_other_page(self):
        """Another worker's page that is not the text format is skipped, not a broken page."""
        directory = tempfile.mkdtemp()
        self.addCleanup(shutil.rmtree, directory)
        with open(snapshot_path(directory, 1), "wb") as page:
            page.write(b"\xff\x00 not { metrics\n")
        metrics = Counting(MemoryReactorClock())
        metrics.count = 2
        metrics.share(Worker(0, 2, ((4, "INET"),), (0, 3), directory), MemoryReactorClock())
        self.assertIn(b"netproxy_test_things_total 2", metrics.page())
