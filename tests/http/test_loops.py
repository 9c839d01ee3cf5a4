"""
Tests for L{netproxy.http.loops}: the proxy's own listening addresses, in
every spelling, and the refusal of requests that would loop through the
proxy, before its pages and PURGE are considered.
"""

from twisted.internet.address import IPv4Address, IPv6Address, UNIXAddress
from twisted.internet.testing import _FakePort
from twisted.trial.unittest import SynchronousTestCase

from netproxy.acl import RuleSet, parse_rule
from netproxy.http.loops import MAX_LOCAL_ADDRESSES, Listening, LoopGuard
from netproxy.testing import FakeNameResolver, connect
from tests.http.test_admin import METRICS, OUTSIDER, AdminTestCase, page_request

PROXY_PORT = 3128


def listening_on(*addresses):
    """
    :returns: a L{Listening} told of ports bound to C{addresses}.
    """
    listening = Listening()
    for address in addresses:
        listening.add(_FakePort(address))
    return listening


class ListeningTests(SynchronousTestCase):
    """
    L{Listening} knows the addresses the proxy listens on, whatever their
    spelling in a URL.
    """

    def test_exact_address(self):
        """A port bound to one address matches that address and port, in every spelling, and no other."""
        listening = listening_on(IPv4Address("TCP", "127.0.0.1", PROXY_PORT))
        for host in ("127.0.0.1", "127.1", "2130706433", "0x7f.0.0.1", "::ffff:127.0.0.1", "[::ffff:127.0.0.1]"):
            self.assertIsNotNone(listening.match(host, PROXY_PORT), host)
        for host, port in (("127.0.0.1", 80), ("127.0.0.2", PROXY_PORT), ("10.0.0.1", PROXY_PORT)):
            self.assertIsNone(listening.match(host, port), (host, port))

    def test_this_host(self):
        """0.0.0.0/8 and :: reach this host (Linux connects them to it): they match every listening port."""
        listening = listening_on(IPv4Address("TCP", "127.0.0.1", PROXY_PORT))
        for host in ("0.0.0.0", "0", "0x0", "0.1.2.3", "::", "::ffff:0.0.0.0"):
            self.assertIsNotNone(listening.match(host, PROXY_PORT), host)
        self.assertIsNone(listening.match("0.0.0.0", PROXY_PORT + 1))

    def test_name_not_matched(self):
        """A name never matches: its address does, once resolved (see LoopGuardTests)."""
        listening = listening_on(IPv4Address("TCP", "127.0.0.1", PROXY_PORT))
        self.assertIsNone(listening.match("localhost", PROXY_PORT))

    def test_every_address(self):
        """A port bound to 0.0.0.0 or :: matches loopback of both families on that port, not other hosts."""
        for wildcard in (IPv4Address("TCP", "0.0.0.0", PROXY_PORT), IPv6Address("TCP", "::", PROXY_PORT)):
            listening = listening_on(wildcard)
            for host in ("127.0.0.1", "127.9.8.7", "::1", "0.0.0.0", "::"):
                self.assertIsNotNone(listening.match(host, PROXY_PORT), (wildcard, host))
            self.assertIsNone(listening.match("192.0.2.1", PROXY_PORT))
            self.assertIsNone(listening.match("127.0.0.1", PROXY_PORT + 1))

    def test_accepted_addresses(self):
        """An address of this host a client reached a port bound to every address by matches from then on."""
        listening = listening_on(IPv4Address("TCP", "0.0.0.0", PROXY_PORT))
        self.assertIsNone(listening.match("192.0.2.1", PROXY_PORT))
        listening.accepted(IPv4Address("TCP", "192.0.2.1", PROXY_PORT))
        listening.accepted(IPv6Address("TCP", "fe80::1%eth0", PROXY_PORT))
        self.assertIsNotNone(listening.match("192.0.2.1", PROXY_PORT))
        self.assertIsNotNone(listening.match("fe80::1", PROXY_PORT))

    def test_accepted_on_exact_port_ignored(self):
        """A connection to a port bound to one address teaches nothing: that address is known already."""
        listening = listening_on(IPv4Address("TCP", "127.0.0.1", PROXY_PORT))
        listening.accepted(IPv4Address("TCP", "192.0.2.1", PROXY_PORT))
        self.assertIsNone(listening.match("192.0.2.1", PROXY_PORT))

    def test_accepted_bounded(self):
        """At most MAX_LOCAL_ADDRESSES addresses of this host are remembered."""
        listening = listening_on(IPv4Address("TCP", "0.0.0.0", PROXY_PORT))
        for number in range(MAX_LOCAL_ADDRESSES + 5):
            listening.accepted(IPv4Address("TCP", f"10.0.{number // 256}.{number % 256}", PROXY_PORT))
        self.assertIsNotNone(listening.match("10.0.0.0", PROXY_PORT))
        self.assertIsNone(listening.match(f"10.0.0.{MAX_LOCAL_ADDRESSES + 4}", PROXY_PORT))

    def test_several_ports(self):
        """Each port counts, the one bound by port 0 included (the port actually bound is what the port says)."""
        listening = listening_on(IPv4Address("TCP", "127.0.0.1", PROXY_PORT), IPv4Address("TCP", "127.0.0.1", 41234),
                                 IPv6Address("TCP", "::1", 8080))
        for host, port in (("127.0.0.1", PROXY_PORT), ("127.0.0.1", 41234), ("::1", 8080), ("0:0:0:0:0:0:0:1", 8080)):
            self.assertIsNotNone(listening.match(host, port), (host, port))
        self.assertIsNone(listening.match("127.0.0.1", 8080))

    def test_unix_socket_ignored(self):
        """A unix socket has no address a URL can name."""
        listening = listening_on(UNIXAddress(b"/run/netproxy.sock"))
        self.assertIsNone(listening.match("127.0.0.1", PROXY_PORT))

    def test_says_why(self):
        """What a match returns reads, in a 403 page, as the address and why it is refused."""
        listening = listening_on(IPv4Address("TCP", "127.0.0.1", PROXY_PORT))
        self.assertEqual(str(listening.match("127.0.0.1", PROXY_PORT)),
                         "127.0.0.1:3128 (where this proxy listens: a forwarding loop)")


class LoopGuardTests(SynchronousTestCase):
    """
    L{LoopGuard} puts the listening addresses before the C{--block} rules.
    """

    def test_own_address_first(self):
        """The proxy's own address is refused, whatever the rules; other destinations go by the rules."""
        guard = LoopGuard(RuleSet([parse_rule("10.0.0.0/8")]),
                          listening_on(IPv4Address("TCP", "127.0.0.1", PROXY_PORT)))
        self.assertIn("forwarding loop", str(guard.match("127.0.0.1", PROXY_PORT)))
        self.assertEqual(str(guard.match("10.1.1.1", 80)), "10.0.0.0/8")
        self.assertIsNone(guard.match("127.0.0.1", 80))


class LoopRefusalTests(AdminTestCase):
    """
    A request that would come back to the proxy is refused first, so that
    its pages and PURGE are never answered to a client outside --admin by
    way of the proxy's own connection.
    """

    def setUp(self):
        super().setUp()
        self.factory.listening.add(_FakePort(IPv4Address("TCP", "127.0.0.1", PROXY_PORT)))

    def assertLoop(self, request, cause, peer=OUTSIDER):
        """
        C{request} from C{peer} is 403 naming C{cause}, and nothing goes upstream.
        """
        transport = self.ask(request, peer=peer)
        self.assertError(403, cause, transport)
        self.assertNotIn(b"netproxy_", transport.value())
        self.assertEqual(self.reactor.tcpClients, [])

    def test_page_through_the_proxy(self):
        """GET http://PROXY/metrics from a client outside --admin is a loop: 403, not the page."""
        self.assertLoop(b"GET http://127.0.0.1:3128/metrics HTTP/1.1\r\n\r\n",
                        "forwarding loop: 127.0.0.1:3128 is this proxy itself")

    def test_spellings(self):
        """Every spelling of the proxy's address is the proxy."""
        for host in (b"127.1:3128", b"[::ffff:127.0.0.1]:3128", b"0.0.0.0:3128", b"0:3128", b"2130706433:3128"):
            self.assertLoop(b"GET http://%s/status HTTP/1.1\r\n\r\n" % (host,), "forwarding loop")

    def test_from_admin_too(self):
        """The loop is refused for an --admin client as well: nothing is ever sent to the proxy itself."""
        self.assertLoop(b"GET http://127.0.0.1:3128/metrics HTTP/1.1\r\n\r\n", "forwarding loop",
                        peer=IPv4Address("TCP", "127.0.0.1", 40000))

    def test_name_resolving_to_the_proxy(self):
        """A name that resolves to the proxy's address is refused once resolved, before any connection."""
        self.reactor.installNameResolver(FakeNameResolver({"proxy.example": "127.0.0.1"}))
        transport = self.ask(b"GET http://proxy.example:3128/metrics HTTP/1.1\r\n\r\n", peer=OUTSIDER)
        self.assertError(403, "destination proxy.example:3128 is blocked: it resolves to 127.0.0.1, blocked by rule "
                              "127.0.0.1:3128 (where this proxy listens: a forwarding loop)", transport)
        self.assertEqual(self.reactor.tcpClients, [])

    def test_connect_to_the_proxy(self):
        """CONNECT to the proxy's own address is refused: a tunnel back in would carry origin-form requests."""
        self.factory.connect_ports = frozenset({PROXY_PORT})
        self.assertLoop(b"CONNECT 127.0.0.1:3128 HTTP/1.1\r\n\r\n", "forwarding loop")

    def test_purge_of_the_proxy(self):
        """PURGE of a URL on the proxy's own address is a loop, refused before the PURGE is considered."""
        self.assertLoop(b"PURGE http://127.0.0.1:3128/x HTTP/1.1\r\n\r\n", "forwarding loop",
                        peer=IPv4Address("TCP", "127.0.0.1", 40000))

    def test_page_arriving_back(self):
        """An origin-form page request carrying netproxy's Via arrived back through a proxy: 403, from loopback too."""
        for path in (b"/metrics", b"/status"):
            transport = self.ask(page_request(path, headers=b"Via: 1.1 netproxy\r\n"))
            self.assertError(403, "forwarding loop: this request has already passed through netproxy", transport)
            self.assertNotIn(b"netproxy_", transport.value())

    def test_purge_arriving_back(self):
        """A PURGE carrying netproxy's Via is a loop, refused before the cache is touched."""
        self.fetch(answer=b"HTTP/1.1 200 OK\r\nCache-Control: max-age=60\r\nContent-Length: 2\r\n\r\nhi")
        self.assertEqual(len(self.store), 1)
        transport = self.ask(b"PURGE http://127.0.0.1:8000/ HTTP/1.1\r\nVia: 1.1 netproxy\r\n\r\n")
        self.assertError(403, "forwarding loop", transport)
        self.assertEqual(len(self.store), 1)

    def test_other_destinations(self):
        """Other ports of the same address are ordinary destinations."""
        _, transport = connect(self.factory, OUTSIDER)
        transport.protocol.dataReceived(b"GET http://127.0.0.1:8000/ HTTP/1.1\r\n\r\n")
        self.assertEqual(len(self.reactor.tcpClients), 1)

    def test_direct_page_still_answered(self):
        """A page asked for directly by an --admin client is still answered."""
        self.assertTrue(self.ask(METRICS).value().startswith(b"HTTP/1.1 200 OK\r\n"))
