"""
Tests for L{netproxy.message.reverse_metrics}: the reverse proxy's servers,
forwarded messages and failovers as Prometheus metrics, and the page on its
C{--metrics} endpoint.
"""

from twisted.internet import error
from twisted.web.test.requesthelper import DummyRequest

from netproxy.instruments import CONTENT_TYPE
from netproxy.message.reverse_metrics import ReverseMetrics
from netproxy.metrics_page import MetricsPage
from netproxy.testing import complete_connection, fail_connection
from tests.message.test_forwarder import ANSWER, MESSAGE, ForwarderTestCase


class _MetricsTestCase(ForwarderTestCase):
    """
    A forwarder's and its registry's metrics.
    """

    def setUp(self):
        super().setUp()
        self.metrics = ReverseMetrics(self.registry, self.forwarder).registry

    def samples(self):
        """
        :returns: the rendered sample lines, without comments.
        """
        return [line for line in self.metrics.render().decode("utf-8").splitlines() if not line.startswith("#")]


class ReverseMetricsTests(_MetricsTestCase):
    """
    The metrics follow the registry and the forwarder.
    """

    def test_servers_by_state(self):
        """Servers are counted by policy and state; a failed one counts as down."""
        self.registry.register(200, "PP_2", "127.0.0.1", 126)
        self.assertIn('netproxy_reverse_servers{policy="PP_1",state="up"} 2', self.samples())
        self.registry.mark_down(self.first)
        samples = self.samples()
        self.assertIn('netproxy_reverse_servers{policy="PP_1",state="up"} 1', samples)
        self.assertIn('netproxy_reverse_servers{policy="PP_1",state="down"} 1', samples)
        self.assertIn('netproxy_reverse_servers{policy="PP_2",state="up"} 1', samples)

    def test_forwarded_and_failover(self):
        """A message answered after one failure counts for the server that answered, and as a failover."""
        self.assertIn("netproxy_reverse_failovers_total 0", self.samples())
        d = self.forward()
        fail_connection(self.reactor, error.ConnectionRefusedError())
        complete_connection(self.reactor)[0].dataReceived(ANSWER)
        self.successResultOf(d)
        samples = self.samples()
        self.assertIn('netproxy_reverse_forwarded_total{server_id="101",policy="PP_1"} 1', samples)
        self.assertIn('netproxy_reverse_forwarded_total{server_id="100",policy="PP_1"} 0', samples)
        self.assertIn("netproxy_reverse_failovers_total 1", samples)
        self.assertIn("netproxy_reverse_unanswered_total 0", samples)

    def test_unanswered(self):
        """Messages for a policy nobody serves, or whose servers are all down, are unanswered."""
        self.successResultOf(self.forward({**MESSAGE, "privPoliId": "PP_9"}))
        d = self.forward()
        fail_connection(self.reactor, error.ConnectionRefusedError())
        fail_connection(self.reactor, error.ConnectionRefusedError())
        self.successResultOf(d)
        self.assertIn("netproxy_reverse_unanswered_total 2", self.samples())

    def test_stalls(self):
        """The reactor's stalls are shown, measured on the forwarder's reactor once the monitor is started."""
        metrics = ReverseMetrics(self.registry, self.forwarder)
        self.assertIn("netproxy_reactor_longest_stall_seconds 0", self.samples())
        metrics.stalls.startService()
        self.addCleanup(metrics.stalls.stopService)
        self.reactor.advance(0.26)
        samples = [line for line in metrics.registry.render().decode("utf-8").splitlines()]
        self.assertIn("netproxy_reactor_longest_stall_seconds 0.25", samples)
        self.assertIn('netproxy_reactor_stalls_total{over="0.2"} 1', samples)


class MetricsPageTests(_MetricsTestCase):
    """
    The C{--metrics} endpoint's page.
    """

    def render(self, path):
        request = DummyRequest([path.lstrip(b"/")])
        request.path = path
        body = MetricsPage(self.metrics).render_GET(request)
        return request, body

    def test_metrics(self):
        """GET /metrics is the exposition, with its content type."""
        request, body = self.render(b"/metrics")
        self.assertEqual(request.responseHeaders.getRawHeaders(b"content-type"), [CONTENT_TYPE])
        self.assertEqual(body, self.metrics.render())

    def test_elsewhere(self):
        """Any other path is 404."""
        request, body = self.render(b"/other")
        self.assertEqual(request.responseCode, 404)
        self.assertIn(b"/metrics", body)
