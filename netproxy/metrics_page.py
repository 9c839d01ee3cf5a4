# -*- test-case-name: tests.test_metrics_page,tests.message.test_reverse_metrics -*-
"""
A metrics page on an endpoint of its own (C{--metrics}), for the roles
whose listeners do not speak HTTP (reverse, socks): C{GET /metrics} answers
a registry's exposition in the Prometheus text format.
"""

from collections.abc import Callable

from twisted.web.resource import Resource
from twisted.web.server import Request

from netproxy.instruments import CONTENT_TYPE, Registry


class MetricsPage(Resource):
    """
    A web resource answering C{GET /metrics} with C{registry}'s exposition,
    and 404 for anything else.
    """

    isLeaf = True

    def __init__(self, registry: Registry, render: Callable[[], bytes] | None = None) -> None:
        """
        :param registry: the metrics shown.
        :param render: renders the page instead of C{registry} (a worker's
            page, which adds the other workers' counts), or L{None}.
        """
        super().__init__()  # type: ignore[no-untyped-call]
        self._registry = registry
        self._render = registry.render if render is None else render

    def render_GET(self, request: Request) -> bytes:
        if request.path != b"/metrics":
            request.setResponseCode(404)
            request.setHeader(b"content-type", b"text/plain; charset=utf-8")
            return b"not found: the metrics are at /metrics\n"
        request.setHeader(b"content-type", CONTENT_TYPE)
        request.setHeader(b"cache-control", b"no-store")
        return self._render()

    render_HEAD = render_GET
