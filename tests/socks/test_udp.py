"""
Tests for L{netproxy.socks.udp}: UDP ASSOCIATE relays the client's
datagrams to the destinations they name, once checked, and their replies
back; everything else is dropped.
"""

from twisted.internet.address import IPv4Address
from twisted.internet.defer import Deferred
from twisted.internet.testing import EventLoggingObserver, MemoryReactorClock
from twisted.logger import globalLogPublisher
from twisted.trial.unittest import SynchronousTestCase

from netproxy.acl import RuleSet, parse_rule
from netproxy.socks import negotiation, udp
from netproxy.socks.protocol import SocksFactory
from netproxy.socks.udp import datagram_header, header_for, read_datagram
from netproxy.socks.negotiation import NegotiationError
from netproxy.testing import FakeNameResolver, UDPMemoryReactor, connect
from netproxy.this_host import LocalDestinations
from tests.socks.test_protocol import CLIENT, GREETING, NO_AUTH, _Port, connect_request

CLIENT_UDP = ("127.0.0.1", 5000)
# What StringTransport says the control connection reached.
PROXY_HOST = "10.0.0.1"


class DatagramTests(SynchronousTestCase):
    """
    The header of a relayed datagram.
    """

    def test_read(self):
        """A datagram gives its destination and payload."""
        self.assertEqual(read_datagram(header_for("192.0.2.1", 53) + b"query"), ("192.0.2.1", 53, 1, b"query"))
        self.assertEqual(read_datagram(header_for("Example.test", 53) + b"q"), ("example.test", 53, 3, b"q"))
        self.assertEqual(read_datagram(header_for("2001:db8::1", 53))[:2], ("2001:db8::1", 53))

    def test_refused(self):
        """Short, fragmented and malformed datagrams are refused."""
        for data in (b"", b"\x00\x00", b"\x00\x00\x00\x01\x7f", b"\x00\x00\x01" + header_for("192.0.2.1", 53)[3:],
                     b"\x00\x00\x00\x02" + bytes(6), b"\x00\x00\x00\x03\x03a b\x00\x35"):
            self.assertRaises(NegotiationError, read_datagram, data)

    def test_header(self):
        """A datagram back to the client names its source."""
        self.assertEqual(datagram_header("192.0.2.1", 53), b"\x00\x00\x00\x01\xc0\x00\x02\x01\x00\x35")


class AssociationTestCase(SynchronousTestCase):
    """
    A SOCKS factory on a memory reactor with UDP, and a client that has
    made an association.
    """

    announced = "0.0.0.0"
    announced_port = 0

    def setUp(self):
        self.reactor = UDPMemoryReactor({"elsewhere.test": "192.0.2.80", "blocked.example": "192.0.2.66",
                                         "loopback.test": "127.0.0.1"})
        self.factory = SocksFactory(self.reactor, RuleSet([parse_rule("127.0.0.0/8")]),
                                    RuleSet([parse_rule("192.0.2.66"), parse_rule("*.blocked.test")]),
                                    tunnel_idle_timeout=900)
        self.factory.local = LocalDestinations(lambda: [])
        self.access = []
        self.factory.access_log.add_observer(self.access.append)
        self.protocol, self.transport = connect(self.factory, CLIENT)
        self.protocol.dataReceived(GREETING + connect_request(self.announced, self.announced_port,
                                                               negotiation.UDP_ASSOCIATE))
        [self.port] = self.reactor.udpPorts

    def from_client(self, host, port, payload=b"payload", source=CLIENT_UDP):
        self.port.protocol.datagramReceived(header_for(host, port) + payload, source)

    def sent(self):
        written, self.port.written = self.port.written, []
        return written


class AssociationTests(AssociationTestCase):
    """
    An association's relay.
    """

    def test_reply(self):
        """The reply names the relay's port, on the address the client reached."""
        self.assertEqual(self.transport.value(), NO_AUTH + negotiation.reply(0, PROXY_HOST, 40000))
        self.assertEqual(self.port.interface, PROXY_HOST)
        self.assertEqual(self.factory.tunnels, 1)

    def test_both_ways(self):
        """A client's datagram goes to its destination unwrapped; the reply comes back wrapped."""
        self.from_client("192.0.2.1", 53, b"query")
        self.assertEqual(self.sent(), [(b"query", ("192.0.2.1", 53))])
        self.port.protocol.datagramReceived(b"answer", ("192.0.2.1", 53))
        self.assertEqual(self.sent(), [(datagram_header("192.0.2.1", 53) + b"answer", CLIENT_UDP)])
        self.assertEqual((self.protocol.received, self.protocol.sent), (5, 6))

    def test_name(self):
        """A name is resolved, and the datagram sent to its address."""
        self.from_client("elsewhere.test", 53)
        self.assertEqual(self.sent(), [(b"payload", ("192.0.2.80", 53))])

    def test_close(self):
        """Closing the control connection stops the relay and writes one access line."""
        self.from_client("192.0.2.1", 53, b"query")
        self.transport.loseConnection()
        self.assertFalse(self.port.listening)
        [line] = self.access
        self.assertEqual((line["command"], line["destination"], line["address"], line["reply"], line["received"]),
                         ("UDP-ASSOCIATE", "0.0.0.0:0", f"{PROXY_HOST}:40000", 0, 5))
        self.assertEqual(self.factory.tunnels, 0)

    def test_control_data_ignored(self):
        """Bytes on the control connection are dropped, not buffered."""
        self.protocol.dataReceived(b"x" * 10000)
        self.assertEqual(self.protocol._buffer, b"")
        self.assertTrue(self.transport.connected)

    def test_idle(self):
        """Datagrams keep the association; silence closes it after the tunnel idle timeout."""
        self.reactor.advance(800)
        self.from_client("192.0.2.1", 53)
        self.reactor.advance(800)
        self.assertTrue(self.transport.connected)
        self.reactor.advance(100)
        self.assertFalse(self.transport.connected)
        self.assertFalse(self.port.listening)


class DropTests(AssociationTestCase):
    """
    What the relay drops, and counts.
    """

    def assertDropped(self, count=1):
        self.assertEqual(self.sent(), [])
        self.assertEqual(self.factory.metrics.udp_dropped, count)

    def test_stranger(self):
        """A datagram from another address than the client's is dropped."""
        self.from_client("192.0.2.1", 53, source=("192.0.2.9", 5000))
        self.assertDropped()

    def test_client_port_learnt(self):
        """Once the client sent from a port, datagrams from its other ports are dropped."""
        self.from_client("192.0.2.1", 53)
        self.sent()
        self.from_client("192.0.2.1", 53, source=("127.0.0.1", 5001))
        self.assertDropped()

    def test_unknown_reply(self):
        """A datagram from an address the client never sent to is dropped."""
        self.from_client("192.0.2.1", 53)
        self.sent()
        self.port.protocol.datagramReceived(b"spoof", ("192.0.2.1", 54))
        self.assertDropped()

    def test_malformed(self):
        """Fragments and malformed headers are dropped."""
        self.port.protocol.datagramReceived(b"\x00\x00\x01" + header_for("192.0.2.1", 53)[3:] + b"x", CLIENT_UDP)
        self.port.protocol.datagramReceived(b"\x00\x00", CLIENT_UDP)
        self.assertDropped(2)

    def test_refused(self):
        """Blocked addresses, blocked names, names resolving to blocked or local addresses, local addresses
        and names that do not resolve are dropped."""
        for host in ("192.0.2.66", "www.blocked.test", "blocked.example", "loopback.test", "127.0.0.1", "0.0.0.0",
                     "nowhere.test"):
            self.from_client(host, 53)
        self.assertDropped(7)

    def test_own_address(self):
        """Even with --allow-local, datagrams to the proxy's own listening address are dropped; to another local
        port, sent."""
        self.factory.local = None
        self.factory.listening.add(_Port(IPv4Address("TCP", "127.0.0.1", 1080)))
        self.from_client("127.0.0.1", 1080)
        self.from_client("loopback.test", 1080)
        self.assertDropped(2)
        self.from_client("127.0.0.1", 1081)
        self.assertEqual(self.sent(), [(b"payload", ("127.0.0.1", 1081))])

    def test_other_family(self):
        """An IPv6 destination from an IPv4 relay port is dropped."""
        self.from_client("2001:db8::1", 53)
        self.assertDropped()

    def test_logged_once(self):
        """Each reason is logged once per association, however often it recurs."""
        for _ in range(5):
            self.from_client("192.0.2.66", 53)
        self.assertEqual(list(self.port.protocol.dropped.values()), [5])

    def test_reasons_bounded(self):
        """Drops are counted and logged by kind, not by the destination the client named: a client that names
        ever new refused addresses or names grows no table and writes one log line per kind."""
        events = EventLoggingObserver.createWithCleanup(self, globalLogPublisher)
        for index in range(300):
            self.from_client(f"127.0.{index // 256}.{index % 256}", 53)
            self.from_client(f"host{index}.nowhere.test", 53)
            self.from_client(f"2001:db8::{index:x}", 53)
            self.from_client("192.0.2.1", 53, source=("192.0.2.9", 5000))
        self.assertDropped(1200)
        self.assertLessEqual(len(self.port.protocol.dropped), 4)
        self.assertEqual(sum(self.port.protocol.dropped.values()), 1200)
        self.assertEqual(len(events), 4)

    def test_peers_bounded(self):
        """Only the last MAX_PEERS destinations' replies are let back."""
        for index in range(udp.MAX_PEERS + 1):
            self.from_client(f"198.51.{index // 256}.{index % 256}", 53)
        self.sent()
        self.port.protocol.datagramReceived(b"late", ("198.51.0.0", 53))
        self.port.protocol.datagramReceived(b"kept", ("198.51.0.1", 53))
        self.assertEqual([address for _, address in self.sent()], [CLIENT_UDP])

    def test_lookups_bounded(self):
        """Past MAX_LOOKUPS lookups under way, datagrams for names are dropped."""
        pending = []

        def resolve(name):
            pending.append(Deferred())
            return pending[-1]

        self.reactor.installNameResolver(FakeNameResolver(resolve))
        for _ in range(udp.MAX_LOOKUPS + 1):
            self.from_client("elsewhere.test", 53)
        self.assertEqual(len(pending), udp.MAX_LOOKUPS)
        self.assertDropped()
        pending[0].callback("192.0.2.80")
        self.assertEqual(self.sent(), [(b"payload", ("192.0.2.80", 53))])

    def test_lookup_after_close(self):
        """A lookup that ends after the association closed sends nothing."""
        pending = Deferred()
        self.reactor.installNameResolver(FakeNameResolver(lambda name: pending))
        self.from_client("elsewhere.test", 53)
        self.transport.loseConnection()
        pending.callback("192.0.2.80")
        self.assertEqual(self.sent(), [])


class AnnouncedPortTests(AssociationTestCase):
    """
    A client that announces the port it will send from.
    """

    announced = "127.0.0.1"
    announced_port = 6000

    def test_announced(self):
        """Datagrams from another port of the client's address are dropped; from the announced one, relayed."""
        self.from_client("192.0.2.1", 53)
        self.assertEqual(self.sent(), [])
        self.from_client("192.0.2.1", 53, source=("127.0.0.1", 6000))
        self.assertEqual(self.sent(), [(b"payload", ("192.0.2.1", 53))])


class UnavailableTests(SynchronousTestCase):
    """
    An association that cannot listen.
    """

    def test_no_port(self):
        """When no UDP port can be opened, the request gets reply 1."""
        factory = SocksFactory(MemoryReactorClock(), RuleSet([parse_rule("127.0.0.0/8")]), RuleSet([]))
        protocol, transport = connect(factory, IPv4Address("TCP", "127.0.0.1", 4000))
        protocol.dataReceived(GREETING + connect_request("0.0.0.0", 0, negotiation.UDP_ASSOCIATE))
        self.assertEqual(transport.value(), NO_AUTH + negotiation.reply(negotiation.GENERAL_FAILURE))
        self.assertFalse(transport.connected)
