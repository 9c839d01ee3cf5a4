# -*- test-case-name: tests.socks.test_metrics -*-
"""
The SOCKS role's metrics, in the Prometheus text format, on an endpoint of
their own (C{--metrics}, L{netproxy.metrics_page}), as the reverse proxy
shows its own: the SOCKS listener does not speak HTTP.

Requests are counted by command and reply code when they finish (where
their access line is written), bytes as they pass, logins by result, UDP
datagrams dropped;
connections and open tunnels are read from the factory when the page is
rendered, as are the reactor's stalls.  A worker's page shows the whole
service (L{SocksMetrics.share}), as the HTTP proxy's does.
"""

from collections.abc import Sized
from typing import Protocol

from twisted.internet.interfaces import IReactorTime

from netproxy.instruments import Counter, Gauge, Histogram
from netproxy.role_metrics import RoleMetrics

# Seconds to connect to a destination: from loopback to the connect timeout.
CONNECT_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


class MeteredFactory(Protocol):
    """
    What the metrics read of the SOCKS role (a
    L{netproxy.socks.protocol.SocksFactory}) when the page is rendered.
    """

    @property
    def reactor(self) -> IReactorTime:
        """The reactor it runs on, whose stalls are measured."""

    @property
    def connections(self) -> Sized:
        """The open client connections."""

    @property
    def tunnels(self) -> int:
        """The tunnels and UDP associations open now."""


class SocksMetrics(RoleMetrics):
    """
    The SOCKS role's counters, gauges and histogram, and the registry that
    renders them.

    :param factory: the role they describe.
    :ivar stalls: the monitor of the reactor, for the role's services to
        start.
    """

    def __init__(self, factory: MeteredFactory) -> None:
        super().__init__()
        add = self.registry.add
        # Plain integers and dictionaries, made samples when the page is
        # rendered: a request costs a few dictionary operations.
        self._requests: dict[tuple[str, int], int] = {}
        self._logins = {"accepted": 0, "refused": 0}
        self.received_bytes = 0
        self.sent_bytes = 0
        self.udp_dropped = 0
        add(Counter("netproxy_socks_requests_total",
                    "Requests answered, by command and reply code (0: tunnel established).",
                    ("command", "reply"), read=self._request_samples))
        add(Counter("netproxy_socks_logins_total", "Username/password logins, by result (accepted or refused).",
                    ("result",), read=lambda: {(result,): count for result, count in self._logins.items()}))
        add(Counter("netproxy_socks_received_bytes_total", "Tunnel bytes read from clients, for destinations.",
                    read=lambda: self.received_bytes))
        add(Counter("netproxy_socks_sent_bytes_total", "Tunnel bytes sent to clients, from destinations.",
                    read=lambda: self.sent_bytes))
        add(Counter("netproxy_socks_udp_dropped_total",
                    "UDP datagrams dropped: from strangers, fragments, malformed, to refused destinations.",
                    read=lambda: self.udp_dropped))
        self.connect_seconds = add(Histogram(
            "netproxy_socks_connect_seconds", "Time to resolve and connect to a destination.", CONNECT_BUCKETS))
        add(Gauge("netproxy_socks_client_connections", "Open client connections.",
                  read=lambda: len(factory.connections)))
        add(Gauge("netproxy_socks_tunnels", "Tunnels and UDP associations open now.", read=lambda: factory.tunnels))
        self.watch_stalls(factory.reactor)

    def finished(self, command: str, reply: int) -> None:
        """
        Count a request answered with C{reply}.
        """
        key = (command, reply)
        self._requests[key] = self._requests.get(key, 0) + 1

    def login(self, accepted: bool) -> None:
        """
        Count a login.
        """
        self._logins["accepted" if accepted else "refused"] += 1

    def _request_samples(self) -> dict[tuple[str, str], int]:
        return {(command, str(reply)): count for (command, reply), count in self._requests.items()}
