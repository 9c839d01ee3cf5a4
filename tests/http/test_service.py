"""
Tests for L{netproxy.http.service}: the HTTP proxy's service.
"""

from twisted.python.filepath import FilePath
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


class HttpPacAndRateServiceTests(SynchronousTestCase):
    """
    L{http_service} gives the proxy its PAC file and rate limits.
    """

    def test_rate_limits(self):
        """--rate-limit and --max-requests-rate give the proxy a rate limiter; without them it has none."""
        reactor, service = start(http_service, parse("http", "--no-cache", "--rate-limit", "1M",
                                                     "--max-requests-rate", "20"))
        self.addCleanup(service.stopService)
        limiter = reactor.tcpServers[0][1].rate_limiter
        self.assertEqual((limiter.byte_rate, limiter.request_rate, limiter.clock), (1024 * 1024, 20, reactor))
        reactor, service = start(http_service, parse("http", "--no-cache"))
        self.addCleanup(service.stopService)
        self.assertIsNone(reactor.tcpServers[0][1].rate_limiter)

    def test_pac_file_reloaded(self):
        """--pac-file is given to the proxy and re-read on SIGHUP."""
        from netproxy.reload import ReloadOnHangup

        path = FilePath(self.mktemp())
        path.setContent(b"function FindProxyForURL(url, host) { return 'DIRECT'; }")
        reactor, service = start(http_service, parse("http", "--no-cache", "--allow-local", "--pac-file", path.path))
        self.addCleanup(service.stopService)
        factory = reactor.tcpServers[0][1]
        path.setContent(b"function FindProxyForURL(url, host) { return 'PROXY 192.0.2.1:80'; }")
        [reloader] = [child for child in service if isinstance(child, ReloadOnHangup)]
        reloader.reload()
        self.assertEqual(factory.pac_file.content, path.getContent())

    def test_direct_rules(self):
        """The generated PAC file sends the --direct destinations DIRECT."""
        from netproxy.acl import parse_rule

        options = parse("http", "--no-cache", "--direct", "example.com", "--direct", "10.0.0.0/8")
        reactor, service = start(http_service, options)
        self.addCleanup(service.stopService)
        self.assertEqual(reactor.tcpServers[0][1].pac_direct, (parse_rule("example.com"), parse_rule("10.0.0.0/8")))
