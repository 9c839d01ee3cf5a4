"""
Tests for L{netproxy.metrics_page}: C{GET /metrics} on an endpoint of its
own.
"""

from twisted.trial.unittest import SynchronousTestCase
from twisted.web.test.requesthelper import DummyRequest

from netproxy.instruments import CONTENT_TYPE, Counter, Registry
from netproxy.metrics_page import MetricsPage


class MetricsPageTests(SynchronousTestCase):
    """
    The page answers /metrics with the registry, or what renders it instead.
    """

    def setUp(self):
        self.registry = Registry()
        self.registry.add(Counter("netproxy_test_total", "A test counter.", read=lambda: 3))

    def get(self, page, path=b"/metrics"):
        request = DummyRequest([path.lstrip(b"/")])
        request.path = path
        return request, page.render_GET(request)

    def test_metrics(self):
        """/metrics answers the registry's exposition, never to be cached."""
        request, body = self.get(MetricsPage(self.registry))
        self.assertIn(b"netproxy_test_total 3", body)
        self.assertEqual(request.responseHeaders.getRawHeaders(b"content-type"), [CONTENT_TYPE])
        self.assertEqual(request.responseHeaders.getRawHeaders(b"cache-control"), [b"no-store"])

    def test_render(self):
        """A render function given replaces the registry's (a worker's page of the whole service)."""
        request, body = self.get(MetricsPage(self.registry, lambda: b"whole service\n"))
        self.assertEqual(body, b"whole service\n")

    def test_other_path(self):
        """Any other path is 404, pointing at /metrics."""
        request, body = self.get(MetricsPage(self.registry), b"/status")
        self.assertEqual(request.responseCode, 404)
        self.assertIn(b"/metrics", body)
