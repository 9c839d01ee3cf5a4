# -*- test-case-name: tests.test_testing,tests.http.cache.test_interfaces -*-
"""
In-memory fakes for testing netproxy's protocols (and code built on them):
connecting a protocol to a string transport, completing or failing the
connection attempts a L{MemoryReactorClock} recorded, a name resolver
answering from a table, a memory reactor that also does UDP, and
L{MemoryStore}, a cache store held in memory.
"""

import errno
import io
from collections import OrderedDict
from collections.abc import Callable
from typing import IO, Any

from twisted.internet.address import IPv4Address, IPv6Address
from twisted.internet.defer import Deferred, succeed
from twisted.internet.interfaces import (IAddress, IConsumer, IHostnameResolver, IHostResolution, IProtocol,
                                         IProtocolFactory, IResolutionReceiver, IUDPTransport)
from twisted.internet.protocol import DatagramProtocol
from twisted.internet.testing import MemoryReactorClock, StringTransportWithDisconnection
from twisted.python.failure import Failure
from zope.interface import implementer

from netproxy.escaping import Logger
from netproxy.http.cache.entry import (
    CHUNK_SIZE,
    DamagedEntry,
    Entry,
    Held,
    decode_record,
    encode_record,
    same_body,
)
from netproxy.http.cache.interfaces import IStore, IWriter
from netproxy.http.cache.producers import Scheduler, next_turn, stream_body
from netproxy.http.cache.writer import BodyWriter


def connect(
    factory: IProtocolFactory, peer: IAddress, transport: StringTransportWithDisconnection | None = None
) -> tuple[IProtocol, StringTransportWithDisconnection] | tuple[None, None]:
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

    producer_at_close: object = "never closed"

    def loseConnection(self) -> None:
        self.producer_at_close = self.producer
        super().loseConnection()


def complete_connection(
    reactor: MemoryReactorClock, index: int = -1
) -> tuple[IProtocol, StringTransportWithDisconnection] | tuple[None, None]:
    """
    Let connection attempt C{index} recorded by C{reactor} succeed.

    :returns: C{(protocol, transport)}: the protocol the attempt's factory
        built (inside an endpoint's wrapper, for endpoint connections) and its
        L{StringTransportWithDisconnection}.
    """
    host, port, factory = reactor.tcpClients[index][:3]
    address = (IPv6Address if ":" in host else IPv4Address)("TCP", host, port)
    return connect(factory, address)


def fail_connection(reactor: MemoryReactorClock, reason: BaseException, index: int = -1) -> None:
    """
    Let connection attempt C{index} recorded by C{reactor} fail with the
    exception C{reason}.
    """
    reactor.tcpClients[index][2].clientConnectionFailed(reactor.connectors[index], Failure(reason))


@implementer(IUDPTransport)
class FakeUDPPort:
    """
    A listening UDP port of L{UDPMemoryReactor}: records what its protocol
    does with it.

    :ivar written: C{(datagram, address)} for each write.
    :ivar connected_to: the C{(host, port)} given to C{connect}, or L{None}.
    :ivar listening: whether C{stopListening} has not been called yet.
    :ivar broadcast: whether broadcast was allowed.
    """

    broadcast = False

    def __init__(self, port: int, protocol: DatagramProtocol, interface: str) -> None:
        self.port = port
        self.protocol = protocol
        self.interface = interface
        self.written: list[tuple[bytes, tuple[str, int] | None]] = []
        self.connected_to: tuple[str, int] | None = None
        self.listening = True

    def connect(self, host: str, port: int) -> None:
        self.connected_to = (host, port)

    def write(self, datagram: bytes, address: tuple[str, int] | None = None) -> None:
        self.written.append((datagram, address))

    def setBroadcastAllowed(self, enabled: bool) -> None:
        self.broadcast = enabled

    def getBroadcastAllowed(self) -> bool:
        return self.broadcast

    def getHost(self) -> IPv4Address:
        return IPv4Address("UDP", self.interface or "0.0.0.0", self.port or 40000)

    def startListening(self) -> None:
        self.protocol.makeConnection(self)

    def stopListening(self) -> None:
        self.listening = False
        self.protocol.doStop()


Answer = str | list[str] | Deferred[str | list[str]]


@implementer(IHostResolution)
class _FakeResolution:
    def __init__(self, name: str, answer: Any) -> None:
        self.name = name
        self._answer = answer

    def cancel(self) -> None:
        if isinstance(self._answer, Deferred):
            self._answer.cancel()


@implementer(IHostnameResolver)
class FakeNameResolver:
    """
    A reactor's name resolver (L{IHostnameResolver}) answering from a
    table, as C{getaddrinfo} would: every address of a name, IPv4 and IPv6.

    :param names: what each name resolves to (an address, a list of them,
        or a L{Deferred} firing with either, for a lookup the test completes,
        fails or sees cancelled), as a mapping or a function of the name.
        A name missing from the mapping, and a lookup that fails, resolve to
        no address.
    :ivar asked: the names looked up, in order.
    """

    def __init__(self, names: dict[str, Answer] | Callable[[str], Answer]) -> None:
        self._names = names
        self.asked: list[str] = []

    def resolveHostName(self, resolutionReceiver: IResolutionReceiver, hostName: str, portNumber: int = 0,
                        addressTypes: Any = None, transportSemantics: str = "TCP") -> IHostResolution:
        self.asked.append(hostName)
        names = self._names
        answer = names(hostName) if callable(names) else names.get(hostName, [])
        resolution = _FakeResolution(hostName, answer)
        resolutionReceiver.resolutionBegan(resolution)

        def deliver(found: str | list[str]) -> None:
            for host in [found] if isinstance(found, str) else found:
                kind = IPv6Address if ":" in host else IPv4Address
                if addressTypes is None or kind in addressTypes:
                    resolutionReceiver.addressResolved(kind("TCP", host, portNumber))
            resolutionReceiver.resolutionComplete()

        if isinstance(answer, Deferred):
            answer.addCallbacks(deliver, lambda failure: deliver([]))
        else:
            deliver(answer)
        return resolution


class UDPMemoryReactor(MemoryReactorClock):
    """
    A L{MemoryReactorClock} that also listens on UDP (in memory) and resolves
    names from a table (with C{resolve}, and with its C{nameResolver}, a
    L{FakeNameResolver}).

    :ivar udpPorts: the L{FakeUDPPort}s, in the order they were opened.
    """

    def __init__(self, names: dict[str, str] | None = None) -> None:
        super().__init__()
        self.udpPorts: list[FakeUDPPort] = []
        self.names = names or {}
        self.nameResolver = FakeNameResolver(dict(self.names))

    def listenUDP(
        self, port: int, protocol: DatagramProtocol, interface: str = "", maxPacketSize: int = 8192
    ) -> FakeUDPPort:
        listening = FakeUDPPort(port, protocol, interface)
        self.udpPorts.append(listening)
        listening.startListening()
        return listening

    def resolve(self, name: str, timeout: float = 10) -> "Deferred[str]":
        return succeed(self.names[name])


@implementer(IStore)
class MemoryStore:
    """
    A cache store held in memory, for tests of the cache layer and of the
    store contract itself: entries and bodies in a dictionary, least
    recently used first.  It behaves as
    L{netproxy.http.cache.sqlite_store.SQLiteStore} does, less the disk.

    Metadata goes through the same JSON record as on disk, so a test meets
    the same errors (metadata that is not JSON) and the same sizes.

    :param max_size: the most bytes kept (bodies plus records).
    :param scheduler: the scheduler bodies are streamed with (see
        L{netproxy.http.cache.producers.next_turn}); by default, the global
        reactor's next turn.
    """

    log = Logger()

    def __init__(self, max_size: int, scheduler: Scheduler | None = None) -> None:
        if scheduler is None:
            # Imported here, as tests that pass their own scheduler must not
            # install the global reactor by importing this module.
            from twisted.internet import reactor

            scheduler = next_turn(reactor)
        self.max_size = max_size
        self._scheduler = scheduler
        self._entries: OrderedDict[bytes, Held] = OrderedDict()
        self._size = 0
        self.evictions = 0

    @property
    def size(self) -> int:
        """
        The bytes the entries take, as accounted: bodies plus records.
        """
        return self._size

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, key: bytes) -> Entry | None:
        stored = self._entries.get(key)
        if stored is None:
            return None
        self._entries.move_to_end(key)
        return stored.entry

    def held_body(self, entry: Entry) -> bytes | None:
        stored = self._entries.get(entry.key)
        if stored is None or stored.body is None or len(stored.body) > CHUNK_SIZE:
            return None
        if not same_body(stored.entry, entry):
            return None
        self._entries.move_to_end(entry.key)
        return stored.body

    def read(self, entry: Entry, consumer: IConsumer, window: tuple[int, int] | None = None) -> "Deferred[None]":
        stored = self._entries.get(entry.key)
        if stored is not None:
            self._entries.move_to_end(entry.key)
        # The body of the version asked for, even if it was replaced since:
        # as on disk, where an open body outlives its replacement.
        body = stored.body if stored is not None and same_body(stored.entry, entry) else None

        def open_body() -> IO[bytes]:
            if body is None:
                raise OSError(errno.ENOENT, "no such entry")
            return io.BytesIO(body)

        return stream_body(entry, open_body, consumer, self._scheduler, self._discard, window=window)

    def writer(self, key: bytes, meta: dict[str, Any]) -> IWriter:
        return _MemoryWriter(self, key, meta)

    def update(self, key: bytes, meta: dict[str, Any]) -> Entry | None:
        stored = self._entries.get(key)
        if stored is None:
            return None
        entry, size = self._record(Entry(key, meta, stored.entry.length, stored.entry.checksum))
        self._put(key, Held(entry, stored.body, size))
        return entry if key in self._entries else None

    def remove(self, key: bytes) -> bool:
        stored = self._entries.pop(key, None)
        if stored is None:
            return False
        self._size -= stored.size
        return True

    def _commit(self, entry: Entry, body: bytes) -> Entry | None:
        entry, size = self._record(entry)
        if size > self.max_size:
            self.remove(entry.key)
            return None
        self._put(entry.key, Held(entry, body, size))
        return entry

    def _record(self, entry: Entry) -> tuple[Entry, int]:
        record = encode_record(entry)
        return decode_record(record), entry.length + len(record)

    def _put(self, key: bytes, stored: Held) -> None:
        self.remove(key)
        self._entries[key] = stored
        self._size += stored.size
        while self._size > self.max_size:
            self.remove(next(iter(self._entries)))
            self.evictions += 1

    def _discard(self, entry: Entry, error: DamagedEntry) -> None:
        stored = self._entries.get(entry.key)
        if stored is not None and same_body(stored.entry, entry):
            self.log.warn("discarding damaged cache entry: {error}", error=str(error))
            self.remove(entry.key)


@implementer(IWriter)
class _MemoryWriter(BodyWriter):
    """
    Keeps a body in memory as it arrives.
    """

    def __init__(self, store: MemoryStore, key: bytes, meta: dict[str, Any]) -> None:
        super().__init__(key, meta, store.max_size, store._scheduler)
        self._store = store
        self._body = bytearray()

    def _keep(self, data: bytes) -> None:
        self._body += data

    def _commit(self, entry: Entry) -> Entry | None:
        # The bytes written stay for those following the body.
        return self._store._commit(entry, bytes(self._body))

    def _discard(self) -> None:
        self._body = bytearray()

    def reader(self) -> tuple[Callable[[int, int], bytes], Callable[[], object]]:
        body = self._body
        return (lambda offset, size: bytes(body[offset : offset + size])), (lambda: None)
