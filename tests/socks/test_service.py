"""
Tests for L{netproxy.socks.service}: the SOCKS role's service.
"""

from twisted.internet.address import IPv4Address
from twisted.trial.unittest import SynchronousTestCase

from netproxy.metrics_page import MetricsPage
from netproxy.socks.service import socks_service
from netproxy.testing import connect
from netproxy.this_host import LocalDestinations
from tests.password_helpers import USERS
from tests.test_connections import assert_per_client_limit
from tests.test_tap import parse, start


class SocksServiceTests(SynchronousTestCase):
    """
    L{socks_service} builds the role from its options.
    """

    def test_listens(self):
        """Each --listen is a listener of the SOCKS factory, with the options' limits and timeouts."""
        options = parse("socks", "--listen", "tcp:1080", "--listen", "tcp:1081", "--connect-timeout", "3",
                        "--max-connections", "7")
        reactor, service = start(socks_service, options)
        self.assertEqual([port for port, *_ in reactor.tcpServers], [1080, 1081])
        factory = reactor.tcpServers[0][1]
        self.assertEqual((factory.connect_timeout, factory.max_connections), (3, 7))
        self.assertIsInstance(factory.local, LocalDestinations)
        self.assertIsNone(factory.auth)

    def test_allow_local(self):
        """--allow-local drops the refusal of local destinations."""
        reactor, service = start(socks_service, parse("socks", "--allow-local"))
        self.assertIsNone(reactor.tcpServers[0][1].local)

    def test_per_client_limit(self):
        """With --max-connections-per-client 40 a 41st connection from one address is refused, not another's."""
        options = parse("socks", "--max-connections", "100", "--max-connections-per-client", "40")
        reactor, service = start(socks_service, options)
        assert_per_client_limit(self, reactor.tcpServers[0][1])

    def test_auth(self):
        """--auth-file makes clients log in."""
        path = self.mktemp()
        with open(path, "w") as file:
            file.write(USERS)
        reactor, service = start(socks_service, parse("socks", "--auth-file", path))
        factory = reactor.tcpServers[0][1]
        protocol, transport = connect(factory, IPv4Address("TCP", "127.0.0.1", 4000))
        protocol.dataReceived(b"\x05\x01\x00")
        self.assertEqual(transport.value(), b"\x05\xff")

    def test_metrics(self):
        """--metrics serves the role's page on its own listener; the stall monitor runs with the service."""
        reactor, service = start(socks_service, parse("socks", "--metrics", "tcp:9106:interface=127.0.0.1"))
        (port, site, _, interface), (socks_port, factory, *_) = reactor.tcpServers
        self.assertEqual((port, interface, socks_port), (9106, "127.0.0.1", 1080))
        self.assertIsInstance(site.resource, MetricsPage)
        self.assertTrue(factory.metrics.stalls.running)
        service.stopService()
        self.assertFalse(factory.metrics.stalls.running)

    def test_access_log(self):
        """--access-log writes a line per request to the file."""
        path = self.mktemp()
        reactor, service = start(socks_service, parse("socks", "--access-log", path))
        factory = reactor.tcpServers[0][1]
        protocol, transport = connect(factory, IPv4Address("TCP", "127.0.0.1", 4000))
        protocol.dataReceived(b"\x05\x01\x00\x05\x02\x00\x01\x7f\x00\x00\x01\x00\x50")
        with open(path) as log:
            self.assertIn(" BIND 127.0.0.1:80 - 7 0 0 ", log.read())
