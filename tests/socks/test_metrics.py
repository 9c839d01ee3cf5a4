"""
Tests for L{netproxy.socks.metrics}: the SOCKS role's page.
"""

import os
import shutil
import tempfile

from prometheus_client.parser import text_string_to_metric_families
from twisted.internet.testing import MemoryReactorClock
from twisted.trial.unittest import SynchronousTestCase

from netproxy.socks.metrics import SocksMetrics
from netproxy.worker_metrics import snapshot_path, write_page
from netproxy.worker_options import Worker


class FakeFactory:
    """
    What the metrics read of the role.
    """

    def __init__(self):
        self.reactor = MemoryReactorClock()
        self.connections = {1, 2}
        self.tunnels = 1


class SocksMetricsTests(SynchronousTestCase):
    """
    Counts and gauges, in a page Prometheus reads.
    """

    def setUp(self):
        self.metrics = SocksMetrics(FakeFactory())

    def samples(self):
        page = self.metrics.page().decode("utf-8")
        return {(sample.name, tuple(sorted(sample.labels.items()))): sample.value
                for family in text_string_to_metric_families(page) for sample in family.samples}

    def test_counts(self):
        """Requests by command and reply, logins by result, bytes, connections and tunnels."""
        self.metrics.finished("CONNECT", 0)
        self.metrics.finished("CONNECT", 0)
        self.metrics.finished("BIND", 7)
        self.metrics.login(True)
        self.metrics.login(False)
        self.metrics.received_bytes += 10
        self.metrics.sent_bytes += 20
        samples = self.samples()
        self.assertEqual(samples["netproxy_socks_requests_total", (("command", "CONNECT"), ("reply", "0"))], 2)
        self.assertEqual(samples["netproxy_socks_requests_total", (("command", "BIND"), ("reply", "7"))], 1)
        self.assertEqual(samples["netproxy_socks_logins_total", (("result", "refused"),)], 1)
        self.assertEqual(samples["netproxy_socks_received_bytes_total", ()], 10)
        self.assertEqual(samples["netproxy_socks_sent_bytes_total", ()], 20)
        self.assertEqual(samples["netproxy_socks_client_connections", ()], 2)
        self.assertEqual(samples["netproxy_socks_tunnels", ()], 1)

    def test_shared(self):
        """A worker's page adds what the other workers counted."""
        directory = tempfile.mkdtemp()
        self.addCleanup(shutil.rmtree, directory)
        other = SocksMetrics(FakeFactory())
        other.finished("CONNECT", 0)
        write_page(snapshot_path(directory, 1), other.registry.render())
        self.metrics.share(Worker(0, 2, ((4, "INET"),), (0, 3), directory), MemoryReactorClock())
        self.metrics.finished("CONNECT", 0)
        self.assertEqual(self.samples()["netproxy_socks_requests_total", (("command", "CONNECT"), ("reply", "0"))], 2)
        self.assertTrue(os.path.isdir(directory))
