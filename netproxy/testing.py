"""
In-memory fakes for testing netproxy's protocols (and code built on them):
connecting a protocol to a string transport, completing or failing the
connection attempts a L{MemoryReactorClock} recorded, and a memory reactor
that also does UDP.
"""

from twisted.internet.address import IPv4Address, IPv6Address
from twisted.internet.testing import MemoryReactorClock, StringTransportWithDisconnection
from twisted.python.failure import Failure


def connect(factory, peer, transport=None):
    """
    Build a protocol from C{factory} for a peer and connect it.

    :param peer: the peer's L{IAddress}.
    :param transport: the transport to use, a new
        L{StringTransportWithDisconnection} by default.
    :returns: C{(protocol, transport)}, or C{(None, None)} when the factory
        refused the connection.
    """
    protocol = factory.buildProtocol(peer)
    if protocol is None:
        return None, None
    transport = StringTransportWithDisconnection(peerAddress=peer) if transport is None else transport
    transport.protocol = protocol
    protocol.makeConnection(transport)
    return protocol, transport


class ClosingTransport(StringTransportWithDisconnection):
    """
    A transport that remembers which producer was registered when it was
    asked to close (a paused producer left registered would keep a real
    connection open).
    """

    producer_at_close = "never closed"

    def loseConnection(self):
        self.producer_at_close = self.producer
        super().loseConnection()


def complete_connection(reactor, index=-1):
    """
    Let connection attempt C{index} recorded by C{reactor} succeed.

    :returns: C{(protocol, transport)}: the protocol the attempt's factory
        built (inside an endpoint's wrapper, for endpoint connections) and its
        L{StringTransportWithDisconnection}.
    """
    host, port, factory = reactor.tcpClients[index][:3]
    address = (IPv6Address if ":" in host else IPv4Address)("TCP", host, port)
    return connect(factory, address)


def fail_connection(reactor, reason, index=-1):
    """
    Let connection attempt C{index} recorded by C{reactor} fail with the
    exception C{reason}.
    """
    reactor.tcpClients[index][2].clientConnectionFailed(reactor.connectors[index], Failure(reason))


class FakeUDPPort:
    """
    A listening UDP port of L{UDPMemoryReactor}: records what its protocol
    does with it.

    :ivar written: C{(datagram, address)} for each write.
    :ivar connected_to: the C{(host, port)} given to C{connect}, or L{None}.
    :ivar listening: whether C{stopListening} has not been called yet.
    """

    def __init__(self, port, protocol, interface):
        self.port = port
        self.protocol = protocol
        self.interface = interface
        self.written = []
        self.connected_to = None
        self.listening = True

    def connect(self, host, port):
        self.connected_to = (host, port)

    def write(self, datagram, address=None):
        self.written.append((datagram, address))

    def getHost(self):
        return IPv4Address("UDP", self.interface or "0.0.0.0", self.port or 40000)

    def startListening(self):
        self.protocol.makeConnection(self)

    def stopListening(self):
        self.listening = False
        self.protocol.doStop()


class UDPMemoryReactor(MemoryReactorClock):
    """
    A L{MemoryReactorClock} that also listens on UDP (in memory) and resolves
    names from a table.

    :ivar udpPorts: the L{FakeUDPPort}s, in the order they were opened.
    """

    def __init__(self, names=None):
        super().__init__()
        self.udpPorts = []
        self.names = names or {}

    def listenUDP(self, port, protocol, interface="", maxPacketSize=8192):
        listening = FakeUDPPort(port, protocol, interface)
        self.udpPorts.append(listening)
        listening.startListening()
        return listening

    def resolve(self, name, timeout=10):
        from twisted.internet.defer import succeed

        return succeed(self.names[name])
