# -*- test-case-name: tests.test_proxy_protocol -*-
"""
Listening behind HAProxy: a C{--listen} endpoint written with the
C{haproxy:} prefix (C{haproxy:tcp:8081:interface=127.0.0.1}) reads the
PROXY protocol header that HAProxy's C{send-proxy-v2} (or C{send-proxy},
or nginx's C{proxy_protocol}) writes first on each connection, and the role
serves the connection as one from the client the header names.

Twisted ships a C{haproxy:} endpoint too, but it connects the role's
protocol before the header has arrived: everything a role decides when a
peer connects (C{--allow}, the per-client limits, the peer named in the
logs) would be decided on HAProxy's address.  Here the role's protocol is
built only once the header has been read, from the client's address, so
the role's factory and protocol see the client exactly as without HAProxy.
A peer whose first bytes are not a PROXY header, or that sends none within
L{HEADER_TIMEOUT} seconds, is dropped before the role sees it.

The header is believed: anyone who can connect to such a listener can claim
any address.  A C{haproxy:} listener must be reachable by HAProxy alone
(bound to loopback or a private interface, behind a firewall).
"""

from typing import Any

from twisted.internet.defer import Deferred
from twisted.internet.endpoints import serverFromString
from twisted.internet.interfaces import (
    IAddress,
    IDelayedCall,
    IHalfCloseableProtocol,
    IListeningPort,
    IProtocol,
    IProtocolFactory,
    IReactorTime,
    IStreamServerEndpoint,
    ITransport,
)
from twisted.internet.protocol import Factory, connectionDone
from twisted.python.failure import Failure
from zope.interface import directlyProvides, implementer, providedBy

from netproxy.escaping import Logger
from netproxy.proxy_header import ProxyHeader, ProxyHeaderError, read_header

#: The endpoint prefix that puts a listener behind HAProxy.
PREFIX = "haproxy:"

#: Seconds a peer has to send its header.  HAProxy writes it as soon as it
#: connects; a peer that has not after this long is not HAProxy.
HEADER_TIMEOUT = 10.0

#: Connections whose header has not come yet, at most, per listener: each
#: holds a buffer until it does.
MAX_PENDING = 1024


@implementer(IProtocol, IHalfCloseableProtocol)
class ProxiedConnection:
    """
    One connection of a C{haproxy:} listener: reads the PROXY header, then
    builds the role's protocol for the client it names and hands it the
    connection, standing as its transport, with C{getPeer} giving the
    client's address and C{getHost} the one the client connected to.

    Everything else the role asks of its transport (C{connected},
    C{disconnecting}, C{abortConnection}, producers ...) is the real
    connection's, so the role sees the connection's state as it would
    without HAProxy.
    """

    log = Logger()

    def __init__(self, factory: "ProxiedFactory") -> None:
        self.factory = factory
        self.wrapped: IProtocol | None = None
        self.transport: Any = None
        self._received: bytes | None = b""
        self._header: ProxyHeader | None = None
        self._timer: IDelayedCall | None = None
        self._serve_local = False

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__") or self.__dict__.get("transport") is None:
            raise AttributeError(name)
        return getattr(self.transport, name)

    def logPrefix(self) -> str:
        return self.factory.logPrefix()

    def makeConnection(self, transport: ITransport) -> None:
        directlyProvides(self, providedBy(transport))
        self.transport = transport
        self.connectionMade()

    def connectionMade(self) -> None:
        self._timer = self.factory.clock.callLater(self.factory.header_timeout, self._timed_out)

    def dataReceived(self, data: bytes) -> None:
        if self.wrapped is not None:
            self.wrapped.dataReceived(data)
            return
        if self._received is None:
            return  # dropped already; what the peer still sends is ignored
        if self._serve_local:
            self._received = None
            self._serve(data)
            return
        received = self._received + data
        try:
            found = read_header(received)
        except ProxyHeaderError as error:
            self._drop(str(error))
            return
        if found is None:
            self._received = received
            return
        self._header, rest = found
        if self._header.source is None and not rest:
            # HAProxy's own connection (LOCAL): a health check that only
            # connects closes now, and is no business of the role's.
            self._received = b""
            self._serve_local = True
            return
        self._received = None
        self._serve(rest)

    def _serve(self, rest: bytes) -> None:
        self._cancel_timer()
        self.factory.pending.discard(self)
        protocol = self.factory.wrappedFactory.buildProtocol(self.getPeer())
        if protocol is None:
            self.transport.loseConnection()
            return
        self.wrapped = protocol
        protocol.makeConnection(self)  # type: ignore[arg-type]
        if rest and self.transport.connected and not self.transport.disconnecting:
            protocol.dataReceived(rest)

    def _timed_out(self) -> None:
        self._timer = None
        if self._serve_local:
            self._drop(f"HAProxy's own connection sent nothing within {self.factory.header_timeout:g} s")
        else:
            self._drop(f"no PROXY protocol header within {self.factory.header_timeout:g} s")

    def _drop(self, reason: str) -> None:
        self._received = None
        self._cancel_timer()
        self.log.warn("dropping connection from {peer} to a haproxy: listener: {reason}",
                      peer=_address_text(self.transport.getPeer()), reason=reason)
        self.transport.loseConnection()

    def _cancel_timer(self) -> None:
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None

    def getPeer(self) -> IAddress:
        if self._header is not None and self._header.source is not None:
            return self._header.source
        peer: IAddress = self.transport.getPeer()
        return peer

    def getHost(self) -> IAddress:
        if self._header is not None and self._header.destination is not None:
            return self._header.destination
        host: IAddress = self.transport.getHost()
        return host

    def readConnectionLost(self) -> None:
        # Half-closed by the peer: the role's business if it can take it
        # (the relay answers a request whose sender closed its side), else
        # the end of the connection, as without the wrapper.
        if self.wrapped is not None and IHalfCloseableProtocol.providedBy(self.wrapped):
            self.wrapped.readConnectionLost()
        else:
            self.transport.loseConnection()

    def writeConnectionLost(self) -> None:
        if self.wrapped is not None and IHalfCloseableProtocol.providedBy(self.wrapped):
            self.wrapped.writeConnectionLost()

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        self._cancel_timer()
        self.factory.pending.discard(self)
        protocol, self.wrapped = self.wrapped, None
        if protocol is not None:
            protocol.connectionLost(reason)


class ProxiedFactory(Factory):
    """
    Wraps a role's factory for a C{haproxy:} listener (see
    L{ProxiedConnection}).

    :param wrapped: the role's factory; its C{buildProtocol} is called with
        the client's address once the header has come, and may refuse it
        (L{None}) as it would a direct connection.
    :param clock: for the header's timeout.
    :ivar pending: the connections whose header has not come yet.
    """

    noisy = False

    def __init__(self, wrapped: IProtocolFactory, clock: IReactorTime,
                 header_timeout: float = HEADER_TIMEOUT, max_pending: int = MAX_PENDING) -> None:
        self.wrappedFactory = wrapped
        self.clock = clock
        self.header_timeout = header_timeout
        self.max_pending = max_pending
        self.pending: set[ProxiedConnection] = set()

    def logPrefix(self) -> str:
        prefix = getattr(self.wrappedFactory, "logPrefix", None)
        return f"{prefix() if prefix else type(self.wrappedFactory).__name__} (PROXY)"

    def doStart(self) -> None:
        self.wrappedFactory.doStart()
        super().doStart()  # type: ignore[no-untyped-call]

    def doStop(self) -> None:
        self.wrappedFactory.doStop()
        super().doStop()  # type: ignore[no-untyped-call]

    def buildProtocol(self, addr: IAddress) -> ProxiedConnection | None:  # type: ignore[override]
        if len(self.pending) >= self.max_pending:
            return None
        connection = ProxiedConnection(self)
        self.pending.add(connection)
        return connection


@implementer(IStreamServerEndpoint)
class ProxiedEndpoint:
    """
    A server endpoint whose connections begin with a PROXY header.

    :param endpoint: the endpoint that listens.
    :param clock: for the header's timeout.
    """

    def __init__(self, endpoint: IStreamServerEndpoint, clock: IReactorTime) -> None:
        self.endpoint = endpoint
        self.clock = clock

    def listen(self, factory: IProtocolFactory) -> "Deferred[IListeningPort]":
        return self.endpoint.listen(ProxiedFactory(factory, self.clock))


def unwrapped(description: str) -> str:
    """
    :param description: an endpoint description.
    :returns: the endpoint that listens, without the C{haproxy:} prefix.
    """
    return description[len(PREFIX):] if is_proxied(description) else description


def is_proxied(description: str) -> bool:
    """
    :returns: whether C{description}'s connections begin with a PROXY header.
    """
    return description.startswith(PREFIX)


def server_endpoint(reactor: Any, description: str) -> IStreamServerEndpoint:
    """
    The endpoint to listen on for C{description}: netproxy's own for a
    C{haproxy:} one (see the module's docstring), Twisted's otherwise.
    """
    endpoint: IStreamServerEndpoint = serverFromString(reactor, unwrapped(description))
    return proxied_like(description, endpoint, reactor)


def proxied_like(description: str, endpoint: IStreamServerEndpoint, clock: IReactorTime) -> IStreamServerEndpoint:
    """
    Put C{endpoint} behind HAProxy when C{description} is: a worker's
    inherited socket serves as the C{--listen} it was opened for.
    """
    return ProxiedEndpoint(endpoint, clock) if is_proxied(description) else endpoint


def _address_text(address: IAddress) -> str:
    host, port = getattr(address, "host", None), getattr(address, "port", None)
    if host is None:
        return str(address)
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
