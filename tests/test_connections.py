"""
Tests for L{netproxy.connections}: the connection limit of the listening
factories, the set of open protocols, draining them, the listening service,
and how peer addresses are written.
"""

from twisted.internet.address import IPv4Address, IPv6Address, UNIXAddress
from twisted.internet.testing import (
    EventLoggingObserver,
    MemoryReactorClock,
    StringTransportWithDisconnection,
)
from twisted.logger import LogLevel, formatEvent, globalLogPublisher
from twisted.internet.endpoints import TCP4ServerEndpoint
from twisted.trial.unittest import SynchronousTestCase

from netproxy.connections import (
    DEFAULT_MAX_CONNECTIONS,
    DrainOnStop,
    TrackedProtocol,
    UNIX_CLIENT,
    TrackingFactory,
    client_group,
    client_host,
    default_per_client,
    format_address,
    listening,
)
from netproxy.proxy_protocol import ProxiedFactory

PEER = IPv4Address("TCP", "127.0.0.1", 53211)


class _Factory(TrackingFactory):
    """
    A tracking factory of plain L{TrackedProtocol}s.
    """

    protocol = TrackedProtocol


def connect(factory, address=PEER):
    """
    Build a protocol from C{factory} and connect it to a transport.

    :returns: the protocol and its transport, or C{(None, None)} when the
        factory refused.
    """
    protocol = factory.buildProtocol(address)
    if protocol is None:
        return None, None
    transport = StringTransportWithDisconnection(peerAddress=address)
    transport.protocol = protocol
    protocol.makeConnection(transport)
    return protocol, transport


def assert_per_client_limit(testcase, factory, limit=40):
    """
    Assert that C{factory} serves C{limit} connections from 127.0.0.1,
    refuses the next one from there, and still lets 127.0.0.2 in.
    """
    opened = [connect(factory, IPv4Address("TCP", "127.0.0.1", 40000 + n))[0] for n in range(limit)]
    testcase.assertNotIn(None, opened)
    testcase.assertIsNone(factory.buildProtocol(IPv4Address("TCP", "127.0.0.1", 50000)))
    testcase.assertIsNotNone(connect(factory, IPv4Address("TCP", "127.0.0.2", 50000))[0])


class TrackingFactoryTests(SynchronousTestCase):
    """
    L{TrackingFactory} knows its open connections and refuses past its limit.
    """

    def test_default_limit(self):
        """A factory allows DEFAULT_MAX_CONNECTIONS connections unless told otherwise."""
        self.assertEqual(_Factory().max_connections, DEFAULT_MAX_CONNECTIONS)

    def test_connections_start_empty(self):
        """A new factory has no open connections."""
        self.assertEqual(_Factory().connections, set())

    def test_protocol_enters_connections(self):
        """A connected protocol is in its factory's connections."""
        factory = _Factory()
        protocol, _ = connect(factory)
        self.assertEqual(factory.connections, {protocol})

    def test_protocol_leaves_connections(self):
        """A protocol whose connection is lost leaves its factory's connections."""
        factory = _Factory()
        _, transport = connect(factory)
        other, _ = connect(factory)
        transport.loseConnection()
        self.assertEqual(factory.connections, {other})

    def test_protocol_not_tracked_before_connection(self):
        """A built protocol is not counted until its connection is made."""
        factory = _Factory()
        factory.buildProtocol(IPv4Address("TCP", "127.0.0.1", 1))
        self.assertEqual(factory.connections, set())

    def test_refuses_past_limit(self):
        """buildProtocol returns None once max_connections are open."""
        factory = _Factory()
        factory.max_connections = 2
        factory.max_connections_per_client = 2
        connect(factory)
        connect(factory)
        self.assertIsNone(factory.buildProtocol(IPv4Address("TCP", "127.0.0.1", 1)))
        self.assertEqual(len(factory.connections), 2)

    def test_accepts_again_after_close(self):
        """A closed connection frees its place under the limit."""
        factory = _Factory()
        factory.max_connections = 1
        _, transport = connect(factory)
        transport.loseConnection()
        protocol, _ = connect(factory)
        self.assertIsNotNone(protocol)

    def test_refusal_logged_with_peer(self):
        """A refused connection is logged as a warning naming the peer and the limit."""
        events = EventLoggingObserver.createWithCleanup(self, globalLogPublisher)
        factory = _Factory()
        factory.max_connections = 1
        connect(factory)
        factory.buildProtocol(IPv4Address("TCP", "127.0.0.1", 40000))
        self.assertEqual(len(events), 1)
        self.assertEqual(events[0]["log_level"], LogLevel.warn)
        self.assertEqual(
            formatEvent(events[0]),
            "refusing connection from 127.0.0.1:40000: 1 connections already open",
        )
        self.assertEqual(events[0]["peer"], "127.0.0.1:40000")


class PerClientLimitTests(SynchronousTestCase):
    """
    L{TrackingFactory} refuses a client past its per-client limit while
    others still get in.
    """

    def test_default_is_a_quarter(self):
        """Without a per-client limit, one client may hold a quarter of max_connections, rounded up."""
        factory = _Factory()
        self.assertEqual(factory.per_client_limit, 256)
        factory.max_connections = 41
        self.assertEqual(factory.per_client_limit, 11)
        factory.max_connections = 1
        self.assertEqual(factory.per_client_limit, 1)

    def test_default_per_client(self):
        """default_per_client is a quarter, rounded up, and at least 1."""
        self.assertEqual([default_per_client(n) for n in (1, 4, 5, 1024)], [1, 1, 2, 256])

    def test_one_address_cannot_take_every_connection(self):
        """The 41st connection from one address is refused while another address still gets in."""
        factory = _Factory()
        factory.max_connections = 100
        factory.max_connections_per_client = 40
        assert_per_client_limit(self, factory)
        self.assertEqual((factory.client_connections("127.0.0.1"), factory.client_connections("127.0.0.2")), (40, 1))

    def test_closing_frees_a_place(self):
        """A client's closed connection frees its place under its limit; an idle client leaves no entry."""
        factory = _Factory()
        factory.max_connections_per_client = 1
        _, transport = connect(factory)
        self.assertIsNone(factory.buildProtocol(PEER))
        transport.loseConnection()
        self.assertEqual(factory.client_connections("127.0.0.1"), 0)
        self.assertEqual(factory._per_client, {})
        protocol, _ = connect(factory)
        self.assertIsNotNone(protocol)

    def test_unix_peers_are_one_client(self):
        """Every peer of a Unix socket counts as the one client "unix"."""
        factory = _Factory()
        factory.max_connections_per_client = 2
        connect(factory, UNIXAddress(None))
        connect(factory, UNIXAddress(b"/tmp/a"))
        self.assertIsNone(factory.buildProtocol(UNIXAddress(None)))
        self.assertEqual(factory.client_connections("unix"), 2)
        self.assertIsNotNone(connect(factory)[0])

    def test_ipv6_clients(self):
        """IPv6 clients are counted by /64, so rotating through one's own /64 gains nothing; another /64 gets in."""
        factory = _Factory()
        factory.max_connections_per_client = 1
        connect(factory, IPv6Address("TCP", "2001:db8:1::1", 1))
        self.assertIsNone(factory.buildProtocol(IPv6Address("TCP", "2001:db8:1::1", 2)))
        self.assertIsNone(factory.buildProtocol(IPv6Address("TCP", "2001:db8:1:0:ffff::9", 1)))
        self.assertIsNotNone(connect(factory, IPv6Address("TCP", "2001:db8:2::1", 1))[0])
        self.assertEqual(factory.client_connections("2001:db8:1::5"), 1)

    def test_ipv4_mapped_clients(self):
        """An IPv4-mapped IPv6 peer is the same client as its IPv4 address."""
        factory = _Factory()
        factory.max_connections_per_client = 1
        connect(factory, IPv4Address("TCP", "192.0.2.7", 1))
        self.assertIsNone(factory.buildProtocol(IPv6Address("TCP", "::ffff:192.0.2.7", 1)))

    def test_client_group(self):
        """client_group names IPv4 addresses, IPv6 /64s (zone ids dropped), unix and unknown peers."""
        self.assertEqual([client_group(host) for host in ("10.0.0.1", "fe80::1%eth0", "2001:db8::1", "unix", None)],
                         ["10.0.0.1", "fe80::/64", "2001:db8::/64", "unix", "-"])

    def test_refusal_logged_with_client(self):
        """A per-client refusal is a warning naming the peer, the limit and the client."""
        events = EventLoggingObserver.createWithCleanup(self, globalLogPublisher)
        factory = _Factory()
        factory.max_connections_per_client = 1
        connect(factory)
        factory.buildProtocol(IPv4Address("TCP", "127.0.0.1", 40000))
        [event] = events
        self.assertEqual(event["log_level"], LogLevel.warn)
        self.assertEqual(formatEvent(event),
                         "refusing connection from 127.0.0.1:40000: 1 connections already open from 127.0.0.1")

    def test_refusals_logged_once(self):
        """A peer looping connections past its limit is logged once, and again only after one of its connections closed."""
        events = EventLoggingObserver.createWithCleanup(self, globalLogPublisher)
        factory = _Factory()
        factory.max_connections_per_client = 1
        _, transport = connect(factory)
        for port in range(40000, 40100):
            self.assertIsNone(factory.buildProtocol(IPv4Address("TCP", "127.0.0.1", port)))
        self.assertEqual(len(events), 1)
        transport.loseConnection()
        connect(factory)
        factory.buildProtocol(IPv4Address("TCP", "127.0.0.1", 41000))
        self.assertEqual([formatEvent(event)[-30:] for event in events],
                         ["onnections already open from 127.0.0.1"[-30:]] * 2)

    def test_global_refusals_logged_once(self):
        """Past max_connections, a flood of refusals is logged once until a connection closes."""
        events = EventLoggingObserver.createWithCleanup(self, globalLogPublisher)
        factory = _Factory()
        factory.max_connections = 1
        _, transport = connect(factory)
        for port in range(100):
            factory.buildProtocol(IPv4Address("TCP", "127.0.0.2", 40000 + port))
        self.assertEqual(len(events), 1)
        transport.loseConnection()
        connect(factory)
        self.assertIsNone(factory.buildProtocol(IPv4Address("TCP", "127.0.0.2", 41001)))
        self.assertEqual(len(events), 2)

    def test_global_limit_still_first(self):
        """Past max_connections everyone is refused, whatever their own count."""
        factory = _Factory()
        factory.max_connections = 2
        factory.max_connections_per_client = 2
        connect(factory, IPv4Address("TCP", "10.0.0.1", 1))
        connect(factory, IPv4Address("TCP", "10.0.0.2", 1))
        self.assertIsNone(factory.buildProtocol(IPv4Address("TCP", "10.0.0.3", 1)))


class ClientHostTests(SynchronousTestCase):
    """
    L{client_host} names a peer as rules and limits see it.
    """

    def test_ip(self):
        """An IP peer is its address, without the port."""
        self.assertEqual(client_host(IPv4Address("TCP", "127.0.0.1", 1)), "127.0.0.1")
        self.assertEqual(client_host(IPv6Address("TCP", "::1", 1)), "::1")

    def test_unix(self):
        """Any Unix-socket peer, named or not, is "unix"."""
        self.assertEqual(client_host(UNIXAddress(None)), UNIX_CLIENT)
        self.assertEqual(client_host(UNIXAddress(b"/run/x.sock")), "unix")

    def test_unknown(self):
        """No address, or one without a host, is None."""
        self.assertIsNone(client_host(None))
        self.assertIsNone(client_host(object()))

    def test_protocol_knows_its_client(self):
        """A connected protocol holds its client_host."""
        protocol, _ = connect(_Factory(), UNIXAddress(None))
        self.assertEqual(protocol.client_host, "unix")


class _Busy(TrackedProtocol):
    """
    A protocol that is never idle while C{busy}, as the proxy's is while
    its exchange waits on an origin.
    """

    busy = True

    def timeoutConnection(self):
        if self.busy:
            self.postpone_timeout()
            return
        super().timeoutConnection()


class IdleTimeoutTests(SynchronousTestCase):
    """
    The idle timeout of a L{TrackedProtocol}.
    """

    def setUp(self):
        self.clock = MemoryReactorClock()
        self.factory = _Factory(self.clock, idle_timeout=30)
        self.factory.protocol = _Busy

    def test_closed_when_idle(self):
        """A peer quiet for the idle timeout is disconnected."""
        protocol, transport = connect(self.factory)
        protocol.busy = False
        self.clock.advance(30)
        self.assertFalse(transport.connected)

    def test_reset_when_timed_out(self):
        """Postponing the timeout from timeoutConnection starts the idle period afresh, rather than ending it."""
        protocol, transport = connect(self.factory)
        self.clock.advance(30)
        self.assertTrue(transport.connected)
        protocol.busy = False
        self.clock.advance(30)
        self.assertFalse(transport.connected)

    def test_no_timeout(self):
        """Resetting a protocol without an idle timeout arms no timer."""
        self.factory.idle_timeout = None
        protocol, transport = connect(self.factory)
        protocol.resetTimeout()
        self.assertEqual(self.clock.getDelayedCalls(), [])


class FormatAddressTests(SynchronousTestCase):
    """
    L{format_address} writes peer addresses for logs and replies.
    """

    def test_ipv4(self):
        """An IPv4 address is HOST:PORT."""
        self.assertEqual(format_address(IPv4Address("TCP", "127.0.0.1", 53211)), "127.0.0.1:53211")

    def test_ipv4_udp(self):
        """A UDP IPv4 address is written the same way as a TCP one."""
        self.assertEqual(format_address(IPv4Address("UDP", "10.0.0.1", 53)), "10.0.0.1:53")

    def test_ipv6(self):
        """An IPv6 address is put in brackets before its port."""
        self.assertEqual(format_address(IPv6Address("TCP", "::1", 443)), "[::1]:443")

    def test_ipv6_scoped(self):
        """A scoped IPv6 address keeps its zone inside the brackets."""
        self.assertEqual(format_address(IPv6Address("TCP", "fe80::1%eth0", 80)), "[fe80::1%eth0]:80")

    def test_unix(self):
        """A UNIX address is its socket path, as text."""
        self.assertEqual(format_address(UNIXAddress("/run/netproxy.sock")), "/run/netproxy.sock")

    def test_unix_bytes(self):
        """A UNIX address given as bytes is still written as a plain path."""
        self.assertEqual(format_address(UNIXAddress(b"/run/netproxy.sock")), "/run/netproxy.sock")

    def test_unnamed_unix(self):
        """An unnamed UNIX peer (a client socket without a path) is "unix socket"."""
        self.assertEqual(format_address(UNIXAddress(None)), "unix socket")
        self.assertEqual(format_address(UNIXAddress(b"")), "unix socket")

    def test_none(self):
        """No address at all gives a text, not an error."""
        self.assertIsInstance(format_address(None), str)


class DrainTests(SynchronousTestCase):
    """
    L{TrackingFactory.drain} closes connections once idle and aborts the busy ones after its timeout.
    """

    def setUp(self):
        from twisted.internet.task import Clock

        self.clock = Clock()
        self.factory = _Factory()

    def test_no_connections(self):
        """Draining a factory with no connection is done at once."""
        self.successResultOf(self.factory.drain(self.clock, 5))

    def test_idle_connections_closed(self):
        """Idle connections are closed at once and the drain fires."""
        _, first = connect(self.factory)
        _, second = connect(self.factory)
        self.successResultOf(self.factory.drain(self.clock, 5))
        self.assertFalse(first.connected or second.connected)
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_busy_connection_aborted_after_timeout(self):
        """A connection that does not close by the deadline is aborted, then the drain fires."""
        protocol, transport = connect(self.factory)
        protocol.close_when_idle = lambda: None
        aborted = []
        transport.abortConnection = lambda: (aborted.append(True), transport.loseConnection())
        drained = self.factory.drain(self.clock, 5)
        self.assertNoResult(drained)
        self.clock.advance(5)
        self.assertEqual(aborted, [True])
        self.successResultOf(drained)

    def test_drain_on_stop(self):
        """DrainOnStop's stopService waits for the factory to drain."""
        from netproxy.connections import DrainOnStop

        protocol, transport = connect(self.factory)
        protocol.close_when_idle = lambda: None
        service = DrainOnStop(self.factory, self.clock, 5)
        service.startService()
        stopped = service.stopService()
        self.assertNoResult(stopped)
        transport.loseConnection()
        self.successResultOf(stopped)


class ListeningTests(SynchronousTestCase):
    """
    L{listening}: a factory's listeners with its drain.
    """

    def test_listens_on_every_endpoint(self):
        """Every endpoint gets a listener for the factory once started."""
        reactor = MemoryReactorClock()
        factory = _Factory(reactor)
        service = listening(factory, ["tcp:6000:interface=127.0.0.1", "tcp:6001"], reactor, 5)
        service.privilegedStartService()
        service.startService()
        self.assertEqual([(port, f, interface) for port, f, _, interface in reactor.tcpServers],
                         [(6000, factory, "127.0.0.1"), (6001, factory, "")])

    def test_endpoint_objects(self):
        """An endpoint object (a worker's inherited socket) is listened on as a description is, and announced."""
        reactor = MemoryReactorClock()
        factory = _Factory(reactor)
        ports = []
        endpoint = TCP4ServerEndpoint(reactor, 6002)
        service = listening(factory, ["tcp:6000", endpoint], reactor, 5, ports.append)
        service.privilegedStartService()
        service.startService()
        self.assertEqual([port for port, *rest in reactor.tcpServers], [6000, 6002])
        self.assertEqual([port.getHost().port for port in ports], [6000, 6002])

    def test_behind_haproxy(self):
        """A haproxy: description listens on the endpoint under it, through netproxy's PROXY header reader."""
        reactor = MemoryReactorClock()
        factory = _Factory(reactor)
        service = listening(factory, ["haproxy:tcp:6000:interface=127.0.0.1"], reactor, 5)
        service.privilegedStartService()
        service.startService()
        [(port, wrapper, _, interface)] = reactor.tcpServers
        self.assertEqual((port, interface), (6000, "127.0.0.1"))
        self.assertIsInstance(wrapper, ProxiedFactory)
        self.assertIs(wrapper.wrappedFactory, factory)

    def test_announces_ports(self):
        """Each port is announced once it listens, with the address actually bound."""
        reactor = MemoryReactorClock()
        factory = _Factory(reactor)
        ports = []
        service = listening(factory, ["tcp:6000", "tcp:0"], reactor, 5, ports.append)
        self.assertEqual(ports, [])
        service.privilegedStartService()
        service.startService()
        self.assertEqual([port.getHost().port for port in ports], [6000, 0])

    def test_listeners_stop_before_drain(self):
        """The drain comes first among the children, so it is stopped after the listeners."""
        reactor = MemoryReactorClock()
        factory = _Factory(reactor)
        children = list(listening(factory, ["tcp:6000"], reactor, 5))
        self.assertIsInstance(children[0], DrainOnStop)
        self.assertEqual((children[0].factory, children[0].clock, children[0].timeout), (factory, reactor, 5))
        self.assertEqual(len(children), 2)

    def test_drains_when_stopped(self):
        """Stopping the service waits for the open connections to close."""
        reactor = MemoryReactorClock()
        factory = _Factory(reactor)
        service = listening(factory, ["tcp:6000"], reactor, 5)
        service.privilegedStartService()
        service.startService()
        protocol, transport = connect(factory)
        protocol.close_when_idle = lambda: None
        stopped = service.stopService()
        self.assertNoResult(stopped)
        transport.loseConnection()
        self.successResultOf(stopped)
