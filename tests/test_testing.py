"""
Tests for L{netproxy.testing}, the fakes the tests (and users) build on:
connecting protocols to string transports, completing or failing recorded
connection attempts, UDP in memory, and L{MemoryStore}, the cache store in
memory.  The store contract MemoryStore shares with every store is tested in
C{tests.http.cache.test_interfaces}.
"""

from twisted.internet.address import IPv4Address, IPv6Address
from twisted.internet.defer import Deferred, fail
from twisted.internet.error import ConnectionRefusedError, DNSLookupError
from twisted.internet.interfaces import IHostnameResolver, IHostResolution
from twisted.internet.protocol import ClientFactory, DatagramProtocol, Factory, Protocol
from twisted.internet.task import Clock
from twisted.internet.testing import MemoryReactorClock, StringTransport, StringTransportWithDisconnection
from twisted.python.filepath import FilePath
from twisted.trial.unittest import SynchronousTestCase, TestCase

from netproxy.http.cache.sqlite_store import SQLiteStore
from netproxy.http.cache.producers import next_turn
from netproxy.testing import (
    ClosingTransport,
    FakeNameResolver,
    FakeUDPPort,
    MemoryStore,
    UDPMemoryReactor,
    complete_connection,
    connect,
    fail_connection,
)
from tests.cache_helpers import KEY, META, MiB, body_of

PEER = IPv4Address("TCP", "192.0.2.1", 40000)


class Recording(Protocol):
    """A protocol that records what it receives and when its connection ends."""

    def connectionMade(self):
        self.received = []
        self.lost = None

    def dataReceived(self, data):
        self.received.append(data)

    def connectionLost(self, reason):
        self.lost = reason


class Refusing(Factory):
    """A factory that refuses every connection."""

    def buildProtocol(self, addr):
        return None


class Failed(ClientFactory):
    """A client factory that records why its connections failed."""

    protocol = Recording

    def __init__(self):
        self.failures = []

    def clientConnectionFailed(self, connector, reason):
        self.failures.append((connector, reason))


class ConnectTests(SynchronousTestCase):
    """L{connect} builds a protocol for a peer and connects it to a string transport."""

    def test_connected(self):
        """The protocol is connected to a new transport with the peer's address."""
        protocol, transport = connect(Factory.forProtocol(Recording), PEER)
        self.assertIsInstance(transport, StringTransportWithDisconnection)
        self.assertIs(protocol.transport, transport)
        self.assertIs(transport.protocol, protocol)
        self.assertEqual(transport.getPeer(), PEER)
        transport.loseConnection()
        self.assertIsNotNone(protocol.lost)

    def test_given_transport(self):
        """A transport given is the one connected."""
        given = ClosingTransport()
        protocol, transport = connect(Factory.forProtocol(Recording), PEER, given)
        self.assertIs(transport, given)
        self.assertIs(protocol.transport, given)

    def test_refused(self):
        """A factory that refuses gives no protocol and no transport."""
        self.assertEqual(connect(Refusing(), PEER), (None, None))


class ClosingTransportTests(SynchronousTestCase):
    """L{ClosingTransport} remembers the producer registered when it closed."""

    def test_producer_at_close(self):
        """The producer registered at loseConnection is kept; before, it says it never closed."""
        protocol, transport = connect(Factory.forProtocol(Recording), PEER, ClosingTransport())
        self.assertEqual(transport.producer_at_close, "never closed")
        producer = object()
        transport.registerProducer(producer, True)
        transport.loseConnection()
        self.assertIs(transport.producer_at_close, producer)

    def test_nothing_registered(self):
        """Closed with no producer registered, it remembers None."""
        protocol, transport = connect(Factory.forProtocol(Recording), PEER, ClosingTransport())
        transport.loseConnection()
        self.assertIsNone(transport.producer_at_close)


class ConnectionAttemptTests(SynchronousTestCase):
    """L{complete_connection} and L{fail_connection} settle what a memory reactor recorded."""

    def test_complete(self):
        """The last attempt is completed by default, with the address it dialled."""
        reactor = MemoryReactorClock()
        reactor.connectTCP("192.0.2.1", 80, Failed())
        reactor.connectTCP("2001:db8::1", 443, Failed())
        protocol, transport = complete_connection(reactor)
        self.assertIsInstance(protocol, Recording)
        self.assertEqual(transport.getPeer(), IPv6Address("TCP", "2001:db8::1", 443))
        protocol, transport = complete_connection(reactor, 0)
        self.assertEqual(transport.getPeer(), IPv4Address("TCP", "192.0.2.1", 80))

    def test_fail(self):
        """The attempt's factory is told it failed, with the reason as a Failure."""
        reactor = MemoryReactorClock()
        factory = Failed()
        reactor.connectTCP("192.0.2.1", 80, factory)
        fail_connection(reactor, ConnectionRefusedError())
        [(connector, reason)] = factory.failures
        self.assertIs(connector, reactor.connectors[-1])
        self.assertTrue(reason.check(ConnectionRefusedError))


class UDPTests(SynchronousTestCase):
    """L{UDPMemoryReactor} and its L{FakeUDPPort}s."""

    def test_listen(self):
        """Listening starts the protocol on a port that records its writes, in order of opening."""
        reactor = UDPMemoryReactor()
        protocol = DatagramProtocol()
        port = reactor.listenUDP(0, protocol, "127.0.0.1")
        self.assertEqual(reactor.udpPorts, [port])
        self.assertIs(protocol.transport, port)
        port.write(b"datagram", ("192.0.2.1", 53))
        port.connect("192.0.2.2", 514)
        port.write(b"connected")
        self.assertEqual(port.written, [(b"datagram", ("192.0.2.1", 53)), (b"connected", None)])
        self.assertEqual(port.connected_to, ("192.0.2.2", 514))
        self.assertEqual(port.getHost(), IPv4Address("UDP", "127.0.0.1", 40000))

    def test_stop(self):
        """Stopping a port stops its protocol."""
        reactor = UDPMemoryReactor()
        protocol = DatagramProtocol()
        port = reactor.listenUDP(5000, protocol)
        port.stopListening()
        self.assertFalse(port.listening)
        self.assertIsNone(protocol.transport)
        self.assertEqual(port.getHost(), IPv4Address("UDP", "0.0.0.0", 5000))

    def test_broadcast(self):
        """A port records whether broadcast was allowed."""
        port = FakeUDPPort(0, DatagramProtocol(), "")
        self.assertFalse(port.getBroadcastAllowed())
        port.setBroadcastAllowed(True)
        self.assertTrue(port.getBroadcastAllowed())

    def test_resolve(self):
        """Names resolve from the reactor's table."""
        reactor = UDPMemoryReactor({"collector.example": "192.0.2.9"})
        self.assertEqual(self.successResultOf(reactor.resolve("collector.example")), "192.0.2.9")

    def test_name_resolver(self):
        """The reactor's name resolver answers from the same table."""
        reactor = UDPMemoryReactor({"collector.example": "192.0.2.9"})
        receiver = _Receiver()
        reactor.nameResolver.resolveHostName(receiver, "collector.example", 514)
        self.assertEqual(receiver.addresses, [IPv4Address("TCP", "192.0.2.9", 514)])


class _Receiver:
    def __init__(self):
        self.addresses = []
        self.complete = 0
        self.resolution = None

    def resolutionBegan(self, resolution):
        self.resolution = resolution

    def addressResolved(self, address):
        self.addresses.append(address)

    def resolutionComplete(self):
        self.complete += 1


class FakeNameResolverTests(SynchronousTestCase):
    """L{FakeNameResolver} answers names as getaddrinfo would, from a table or a function."""

    def resolve(self, resolver, name="host.test", types=None):
        receiver = _Receiver()
        resolution = resolver.resolveHostName(receiver, name, 80, types)
        self.assertIs(receiver.resolution, resolution)
        return receiver

    def test_interfaces(self):
        """It is an IHostnameResolver and hands out IHostResolutions."""
        from zope.interface.verify import verifyObject

        resolver = FakeNameResolver({})
        verifyObject(IHostnameResolver, resolver)
        verifyObject(IHostResolution, self.resolve(resolver).resolution)

    def test_both_families(self):
        """A list answers every address, IPv6 as IPv6Address; the names asked are recorded."""
        resolver = FakeNameResolver({"host.test": ["::1", "127.0.0.1"]})
        receiver = self.resolve(resolver)
        self.assertEqual(receiver.addresses, [IPv6Address("TCP", "::1", 80), IPv4Address("TCP", "127.0.0.1", 80)])
        self.assertEqual((receiver.complete, resolver.asked), (1, ["host.test"]))

    def test_address_types(self):
        """Asked for one family, it answers that family only."""
        receiver = self.resolve(FakeNameResolver({"host.test": ["::1", "127.0.0.1"]}), types=[IPv6Address])
        self.assertEqual(receiver.addresses, [IPv6Address("TCP", "::1", 80)])

    def test_unknown(self):
        """An unknown name, or a failed lookup, resolves to nothing."""
        self.assertEqual(self.resolve(FakeNameResolver({})).addresses, [])
        receiver = self.resolve(FakeNameResolver(lambda name: fail(DNSLookupError(name))))
        self.assertEqual((receiver.addresses, receiver.complete), ([], 1))

    def test_held(self):
        """A Deferred answer arrives when it fires, and cancelling the resolution cancels it."""
        lookup = Deferred()
        receiver = self.resolve(FakeNameResolver({"host.test": lookup}))
        self.assertEqual(receiver.complete, 0)
        lookup.callback("192.0.2.1")
        self.assertEqual((receiver.addresses, receiver.complete), ([IPv4Address("TCP", "192.0.2.1", 80)], 1))
        held = Deferred()
        receiver = self.resolve(FakeNameResolver(lambda name: held))
        receiver.resolution.cancel()
        self.assertTrue(held.called)


class MemoryStoreTests(SynchronousTestCase):
    """What L{MemoryStore} does beyond the store contract."""

    def test_sizes_as_on_disk(self):
        """A memory store accounts its entries as the store on disk does, so tests meet the same bounds."""
        clock = Clock()
        stores = [MemoryStore(MiB, next_turn(clock)), SQLiteStore(FilePath(self.mktemp()), MiB, clock)]
        for store in stores:
            for number in range(3):
                writer = store.writer(KEY + b"%d" % (number,), META)
                writer.write(body_of(1000 * number))
                writer.finish()
        self.assertEqual(stores[0].size, stores[1].size)
        self.assertEqual(len(stores[0]), len(stores[1]))


class MemoryStoreReactorTests(TestCase):
    """A L{MemoryStore} made without a scheduler streams on the global reactor."""

    def test_global_reactor(self):
        """A body is read on a later turn of the running reactor."""
        store = MemoryStore(MiB)
        writer = store.writer(KEY, META)
        writer.write(b"body")
        entry = writer.finish()
        transport = StringTransport()
        d = store.read(entry, transport)
        self.assertEqual(transport.value(), b"")
        d.addCallback(lambda ignored: self.assertEqual(transport.value(), b"body"))
        return d
