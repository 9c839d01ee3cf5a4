"""
Tests for L{netproxy.http.service}: the HTTP proxy's service.
"""

from twisted.trial.unittest import SynchronousTestCase

from netproxy.http.service import http_service
from tests.test_connections import assert_per_client_limit
from tests.test_tap import parse, start


class HttpServiceTests(SynchronousTestCase):
    """
    L{http_service} builds the proxy from its options: listeners,
    limits, and the stall monitor of its metrics.
    """

    def test_per_client_limit(self):
        """With --max-connections-per-client 40 the proxy refuses a 41st connection from one address, not another's."""
        options = parse("http", "--no-cache", "--max-connections", "100", "--max-connections-per-client", "40")
        reactor, service = start(http_service, options)
        assert_per_client_limit(self, reactor.tcpServers[0][1])

    def test_listening_addresses(self):
        """The proxy learns the addresses it listens on as its ports start: nothing is forwarded to them."""
        reactor, service = start(http_service, parse("http", "--no-cache", "--listen", "tcp:3128"))
        factory = reactor.tcpServers[0][1]
        self.assertIsNotNone(factory.listening.match("127.0.0.1", 3128))
        self.assertIsNone(factory.listening.match("127.0.0.1", 3129))

    def test_stall_monitor(self):
        """The proxy's service starts and stops the monitor of the reactor's stalls its /metrics shows."""
        reactor, service = start(http_service, parse("http", "--no-cache"))
        stalls = reactor.tcpServers[0][1].metrics.stalls
        self.assertTrue(stalls.running)
        reactor.advance(1.5)
        self.assertGreater(stalls.longest, 1)
        service.stopService()
        self.assertFalse(stalls.running)
        self.assertEqual(reactor.getDelayedCalls(), [])


class HttpParentServiceTests(SynchronousTestCase):
    """
    L{http_service} gives the proxy its parents and Via name.
    """

    def test_parents(self):
        """With --parent the proxy forwards through the parents, --direct destinations bypassing them."""
        options = parse("http", "--no-cache", "--parent", "http://a:1", "--direct", "*.internal", "--via-name", "x")
        reactor, service = start(http_service, options)
        factory = reactor.tcpServers[0][1]
        self.assertEqual([parent.name for parent in factory.parents.parents], ["a:1"])
        self.assertTrue(factory.parents.goes_direct("www.internal", 80))
        self.assertEqual(factory.pseudonym, b"x")

    def test_no_parents(self):
        """Without --parent the proxy goes direct, and calls itself netproxy."""
        reactor, service = start(http_service, parse("http", "--no-cache"))
        factory = reactor.tcpServers[0][1]
        self.assertEqual((factory.parents, factory.pseudonym), (None, b"netproxy"))
