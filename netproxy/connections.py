# -*- test-case-name: tests.test_connections -*-
"""
Server factories that know their open connections and refuse past a limit,
in all and per client, and the protocol base every listening role's
connections share: it knows its peer's address and closes the connection
when the peer is idle too long.

Every listening role bounds how many peers it serves at once, and how many
of them one client may be (C{--max-connections-per-client}, a quarter of
C{--max-connections} by default), so that one address cannot lock everyone
else out; the set of open protocols is what a graceful shutdown walks to
close idle peers.

A client is its IP address; every peer on a Unix socket is the one client
C{unix} (L{client_host}): such a socket is local, guarded by its file's
mode, and its peers have no address to tell them apart.
"""

import os
from ipaddress import IPv6Address, ip_address
from collections.abc import Callable, Iterable
from typing import Any, TypeVar

from twisted.application.internet import StreamServerEndpointService
from twisted.application.service import MultiService, Service
from twisted.internet.address import UNIXAddress
from twisted.internet.defer import Deferred, succeed
from twisted.internet.interfaces import IAddress, IDelayedCall, IListeningPort, IProtocolFactory, IReactorTime
from twisted.internet.interfaces import IStreamServerEndpoint
from twisted.internet.protocol import Protocol, ServerFactory, connectionDone
from twisted.protocols.policies import TimeoutMixin
from twisted.python.failure import Failure
from zope.interface import implementer

from netproxy.escaping import Logger
from netproxy.proxy_protocol import server_endpoint

DEFAULT_MAX_CONNECTIONS = 1024

#: Without C{--max-connections-per-client}, one client may hold this
#: fraction of C{--max-connections}: a quarter (256 of the default 1024).
DEFAULT_PER_CLIENT_SHARE = 4

#: How L{client_host} names every peer of a Unix socket, in access rules
#: (C{--allow unix}), per-client limits and the access log.
UNIX_CLIENT = "unix"


_T = TypeVar("_T")


class TrackedProtocol(Protocol, TimeoutMixin):
    """
    A protocol that enters its factory's C{connections} while connected,
    knows its peer as C{self.peer} (C{127.0.0.1:53211}), and is closed after
    the factory's C{idle_timeout} seconds without traffic (subclasses call
    C{resetTimeout} when traffic moves).  Subclasses that override the
    connection methods call these too.

    :ivar peer: the peer's address, as L{format_address} writes it.
    :ivar client_host: the client as access rules and per-client limits see
        it (L{client_host}): its IP address, C{unix}, or L{None}.
    """

    log = Logger()
    factory: "TrackingFactory"
    # Stream transports: TCP, TLS and unix sockets (what the roles listen on).
    transport: Any
    peer: str
    client_host: str | None

    def connectionMade(self) -> None:
        address = self.transport.getPeer()
        self.peer = format_address(address)
        self.client_host = client_host(address)
        self.factory.connection_made(self)
        self.setTimeout(self.factory.idle_timeout)

    def callLater(self, period: float, func: Callable[[], object]) -> IDelayedCall:
        """
        Schedule the idle timeout on the factory's clock, when it has one.
        """
        clock = self.factory.reactor
        if clock is None:
            return super().callLater(period, func)
        return clock.callLater(period, func)

    def postpone_timeout(self) -> None:
        """
        Called from C{timeoutConnection} when the peer is busy rather than
        idle: start a new idle period.
        """
        # TimeoutMixin.resetTimeout only moves a pending timer, and inside
        # timeoutConnection the timer has just fired: it would leave the
        # connection without an idle timeout for ever (a kept-alive client
        # after one slow response).  resetTimeout itself stays Twisted's, the
        # cheap move of a pending timer that traffic makes on every read.
        self.setTimeout(self.timeOut)

    def timeoutConnection(self) -> None:
        self.log.info("closing idle connection from {peer}", peer=self.peer)
        self.close()

    def close_when_idle(self) -> None:
        """
        Close the connection once no work is in flight, for a graceful
        shutdown.  Roles with work in flight (an exchange, a forward)
        override this and close when it is done.
        """
        self.close()

    def close(self) -> None:
        """
        Close the connection after what was written has been sent.
        """
        # A transport that paused itself (its own producer) would otherwise
        # never close: once its buffer drains it resumes instead.
        if getattr(self.transport, "producer", None) is not None:
            self.transport.unregisterProducer()
        self.transport.loseConnection()

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        self.setTimeout(None)
        self.factory.connection_closed(self)


class TrackingFactory(ServerFactory[TrackedProtocol]):
    """
    A L{ServerFactory} that keeps the set of its open protocols and builds no
    protocol (so the connection is closed at once) when C{max_connections}
    are open already, or C{max_connections_per_client} from the same client
    (see L{client_host}).

    :param reactor: the clock for the protocols' idle timeouts.
    :param idle_timeout: seconds a peer may stay quiet, or L{None} for ever.
    :ivar connections: the open L{TrackedProtocol} instances.
    :ivar max_connections_per_client: the most connections one client may
        hold, or L{None} for L{default_per_client} of C{max_connections}.
    """

    log = Logger()
    noisy = False
    max_connections = DEFAULT_MAX_CONNECTIONS
    max_connections_per_client: int | None = None

    def __init__(self, reactor: IReactorTime | None = None, idle_timeout: float | None = None) -> None:
        self.reactor = reactor
        self.idle_timeout = idle_timeout
        self.connections: set[TrackedProtocol] = set()
        # Open connections by client (see client_group); clients with none
        # are removed, so it holds no more entries than there are connections.
        self._per_client: dict[str, int] = {}
        # Refusals already logged: each limit is logged once until a
        # connection closes under it, so a peer looping connections past its
        # limit cannot fill the log.  Holds clients with connections only.
        self._refusing: set[str | None] = set()
        self._drained: list[Deferred[None]] = []

    @property
    def per_client_limit(self) -> int:
        """
        The most connections one client may hold now.
        """
        limit = self.max_connections_per_client
        return default_per_client(self.max_connections) if limit is None else limit

    def buildProtocol(self, addr: IAddress | None) -> TrackedProtocol | None:
        if len(self.connections) >= self.max_connections:
            if None not in self._refusing:
                self._refusing.add(None)
                self.log.warn(
                    "refusing connection from {peer}: {limit} connections already open",
                    peer=format_address(addr),
                    limit=self.max_connections,
                )
            return None
        # The address given here is the transport's peer, which the protocol
        # is counted under once connected (TrackedProtocol.connectionMade).
        client = client_group(client_host(addr))
        limit = self.per_client_limit
        if self._per_client.get(client, 0) >= limit:
            if client not in self._refusing:
                self._refusing.add(client)
                self.log.warn(
                    "refusing connection from {peer}: {limit} connections already open from {client}",
                    peer=format_address(addr),
                    limit=limit,
                    client=client,
                )
            return None
        return super().buildProtocol(addr)

    def connection_made(self, protocol: TrackedProtocol) -> None:
        """
        Count a protocol whose connection is made (L{TrackedProtocol} calls
        this with its C{client_host} set).
        """
        if protocol not in self.connections:
            self.connections.add(protocol)
            client = client_group(protocol.client_host)
            self._per_client[client] = self._per_client.get(client, 0) + 1

    def client_connections(self, host: str | None) -> int:
        """
        :param host: a client, as L{client_host} names it.
        :returns: how many connections it holds.
        """
        return self._per_client.get(client_group(host), 0)

    def drain(self, clock: IReactorTime, timeout: float) -> Deferred[None]:
        """
        Close every connection as soon as it has no work in flight, and abort
        those still open after C{timeout} seconds.

        :param clock: provides C{callLater}.
        :returns: a L{Deferred} that fires once no connection is open.
        """
        if not self.connections:
            return succeed(None)
        drained: Deferred[None] = Deferred()
        self._drained.append(drained)
        deadline = clock.callLater(timeout, self._abort_open)
        for protocol in list(self.connections):
            protocol.close_when_idle()

        def cancel_deadline(result: _T) -> _T:
            if deadline.active():
                deadline.cancel()
            return result

        return drained.addBoth(cancel_deadline)

    def _abort_open(self) -> None:
        for protocol in list(self.connections):
            self.log.warn("shutting down: aborting connection from {peer}, still busy", peer=protocol.peer)
            protocol.transport.abortConnection()

    def connection_closed(self, protocol: TrackedProtocol) -> None:
        """
        Forget a protocol whose connection has closed.
        """
        if protocol in self.connections:
            self.connections.remove(protocol)
            client = client_group(protocol.client_host)
            left = self._per_client.get(client, 0) - 1
            if left > 0:
                self._per_client[client] = left
            else:
                self._per_client.pop(client, None)
            self._refusing.discard(client)
            self._refusing.discard(None)
        if not self.connections:
            drained, self._drained = self._drained, []
            for waiting in drained:
                waiting.callback(None)


class DrainOnStop(Service):
    """
    When stopped, waits for a L{TrackingFactory}'s connections to finish
    their work and close (see L{TrackingFactory.drain}).  Put it in a
    L{MultiService} before the listening service, which is then stopped
    first, so no new connection arrives while it drains.

    :param factory: the L{TrackingFactory}.
    :param clock: provides C{callLater}.
    :param timeout: seconds to wait before aborting busy connections.
    """

    def __init__(self, factory: TrackingFactory, clock: IReactorTime, timeout: float) -> None:
        self.factory = factory
        self.clock = clock
        self.timeout = timeout

    def stopService(self) -> Deferred[None]:
        super().stopService()
        return self.factory.drain(self.clock, self.timeout)


@implementer(IStreamServerEndpoint)
class _Announcing:
    """
    A server endpoint that tells C{announce} of each port it listens on.
    """

    def __init__(self, endpoint: IStreamServerEndpoint, announce: Callable[[IListeningPort], object]) -> None:
        self._endpoint = endpoint
        self._announce = announce

    def listen(self, factory: IProtocolFactory) -> "Deferred[IListeningPort]":
        def announce(port: IListeningPort) -> IListeningPort:
            self._announce(port)
            return port

        return self._endpoint.listen(factory).addCallback(announce)


def listening(factory: TrackingFactory, endpoints: Iterable[str | IStreamServerEndpoint], reactor: Any, timeout: float,
              on_listening: Callable[[IListeningPort], object] | None = None) -> MultiService:
    """
    The service of a factory listening on endpoints, draining its
    connections when stopped.

    The listeners are stopped before the drain (a L{MultiService} stops its
    children last first), so no new connection comes in while it drains; a
    port already in use stops start-up, as C{strports.service} does.

    :param endpoints: the endpoint descriptions to listen on, or endpoints
        (a worker's inherited sockets).
    :param reactor: the reactor, to listen with and as the drain's clock.
    :param timeout: seconds to wait before aborting busy connections.
    :param on_listening: called with each L{IListeningPort} once it
        listens (the port actually bound, for port 0 or a socket systemd
        passed), or L{None}.
    :returns: the service, to be given a parent.
    """
    service = MultiService()
    DrainOnStop(factory, reactor, timeout).setServiceParent(service)
    for endpoint in endpoints:
        if isinstance(endpoint, str):
            endpoint = server_endpoint(reactor, endpoint)  # haproxy: is netproxy's own
        listener = StreamServerEndpointService(endpoint, factory)
        listener._raiseSynchronously = True  # as strports.service does
        if on_listening is not None:
            listener.endpoint = _Announcing(listener.endpoint, on_listening)
        listener.setServiceParent(service)
    return service


def default_per_client(max_connections: int) -> int:
    """
    The per-client limit when C{--max-connections-per-client} is not given.

    :param max_connections: the limit in all.
    :returns: a quarter of it, rounded up, at least 1.
    """
    return max(1, -(-max_connections // DEFAULT_PER_CLIENT_SHARE))


def client_host(address: IAddress | None) -> str | None:
    """
    Name a peer as access rules and per-client limits see it.

    :param address: an L{IAddress} provider, or L{None}.
    :returns: its IP address (C{127.0.0.1}, C{::1}), L{UNIX_CLIENT} for any
        peer of a Unix socket, or L{None} when the address has neither.
    """
    if isinstance(address, UNIXAddress):
        return UNIX_CLIENT
    host = getattr(address, "host", None)
    return host if isinstance(host, str) else None


def client_group(host: str | None) -> str:
    """
    What one client is, for limits per client: its IPv4 address (an
    IPv4-mapped IPv6 one too), the /64 of an IPv6 address (one host or site
    holds a whole /64, and could rotate through it), L{UNIX_CLIENT}, or
    C{"-"} for peers with no known address.

    :param host: a client as L{client_host} names it.
    """
    if host is None:
        return "-"
    if ":" not in host:
        return host
    try:
        parsed = ip_address(host.partition("%")[0])
    except ValueError:
        return host
    if isinstance(parsed, IPv6Address) and parsed.ipv4_mapped is not None:
        return str(parsed.ipv4_mapped)
    return f"{IPv6Address(int(parsed) >> 64 << 64)}/64"



def format_address(address: IAddress | None) -> str:
    """
    Render a peer address for logs and replies: C{127.0.0.1:53211},
    C{[::1]:443}, or the unix path (C{unix socket} for an unnamed peer).

    :param address: an L{IAddress} provider, or L{None}.
    :returns: a L{str}.
    """
    host = getattr(address, "host", None)
    port = getattr(address, "port", None)
    if isinstance(address, UNIXAddress):
        # Twisted keeps UNIX paths as bytes; an unnamed peer has no path.
        return os.fsdecode(address.name) if address.name else "unix socket"
    if host is None:
        return str(getattr(address, "name", None) or address)
    if ":" in host:
        host = f"[{host}]"
    return f"{host}:{port}"
