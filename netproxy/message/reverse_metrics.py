# -*- test-case-name: tests.message.test_reverse_metrics -*-
"""
The reverse proxy's metrics, in the Prometheus text format, on an endpoint
of their own (C{--metrics}, L{netproxy.metrics_page}): its listener speaks
the message protocol, not HTTP, so the page cannot share it.  The reactor's stalls are there too, as
the HTTP proxy shows them.
"""

from netproxy.instruments import Counter, Gauge, Registry
from netproxy.message.forwarder import Forwarder
from netproxy.message.registry import IServerRegistry
from netproxy.stalls import StallMonitor, stall_metrics


class ReverseMetrics:
    """
    The gauges and counters of a reverse proxy, read from its registry and
    forwarder when the page is rendered.

    :param registry: the servers registered.
    :param forwarder: what sends their messages.
    :ivar registry: the metrics, for a L{netproxy.metrics_page.MetricsPage}.
    :ivar stalls: the monitor of the forwarder's reactor, for the role's
        services to start.
    """

    def __init__(self, registry: IServerRegistry, forwarder: Forwarder) -> None:
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
        self.stalls = StallMonitor(forwarder.reactor)
        for metric in stall_metrics(self.stalls):
            metrics.add(metric)

    def _by_state(self) -> dict[tuple[str, str], int]:
        counts: dict[tuple[str, str], int] = {}
        for server in self._servers.servers():
            key = (server.policy, "up" if server.retry_at is None else "down")
            counts[key] = counts.get(key, 0) + 1
        return counts

    def _forwarded(self) -> dict[tuple[str, str], int]:
        return {(str(server.server_id), server.policy): server.forwarded for server in self._servers.servers()}
