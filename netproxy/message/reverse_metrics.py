"""
The reverse proxy's metrics, in the Prometheus text format, on an endpoint
of their own (C{--metrics}): its listener speaks the message protocol, not
HTTP, so the page cannot share it.
"""

from twisted.web.resource import Resource

from netproxy.instruments import CONTENT_TYPE, Counter, Gauge, Registry


class ReverseMetrics:
    """
    :param registry: the L{netproxy.message.registry.ServerRegistry}.
    :param forwarder: the L{netproxy.message.forwarder.Forwarder}.
    """

    def __init__(self, registry, forwarder):
        self._servers = registry
        metrics = self.registry = Registry()
        metrics.add(Gauge("netproxy_reverse_servers", "Registered servers by privacy policy and state (up or down).",
                          ("policy", "state"), read=self._by_state))
        metrics.add(Counter(
            "netproxy_reverse_forwarded_total",
            "Messages answered by each registered server (a server registering anew starts from 0).",
            ("server_id", "policy"), read=self._forwarded))
        metrics.add(Counter("netproxy_reverse_failovers_total",
                            "Messages passed on to the next server of their policy after one failed.",
                            read=lambda: forwarder.failovers))
        metrics.add(Counter("netproxy_reverse_unanswered_total",
                            "Messages no server answered: none registered for the policy, or all down.",
                            read=lambda: forwarder.unanswered))

    def _by_state(self):
        counts = {}
        for server in self._servers.servers():
            key = (server.policy, "up" if server.retry_at is None else "down")
            counts[key] = counts.get(key, 0) + 1
        return counts

    def _forwarded(self):
        return {(str(server.server_id), server.policy): server.forwarded for server in self._servers.servers()}


class MetricsPage(Resource):
    """
    A web resource answering C{GET /metrics} with C{registry}'s exposition,
    and 404 for anything else.
    """

    isLeaf = True

    def __init__(self, registry):
        super().__init__()
        self._registry = registry

    def render_GET(self, request):
        if request.path != b"/metrics":
            request.setResponseCode(404)
            request.setHeader(b"content-type", b"text/plain; charset=utf-8")
            return b"not found: the metrics are at /metrics\n"
        request.setHeader(b"content-type", CONTENT_TYPE)
        request.setHeader(b"cache-control", b"no-store")
        return self._registry.render()

    render_HEAD = render_GET
