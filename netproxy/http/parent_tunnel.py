# -*- test-case-name: tests.http.test_parent_tunnel,tests.http.test_tunnel -*-
"""
CONNECT tunnels through a parent proxy: the proxy sends the parent
C{CONNECT host:port} with the parent's credentials and our C{Via} (so a
parent that is this proxy again sees a loop), waits for a 2xx, and from
then on the connection is the tunnel's, the bytes after the parent's
answer included.

A parent that does not answer 2xx is relayed to the client as a 502 whose
page names the parent and its answer: the client's own CONNECT was fine,
and passing a parent's 407 on would ask the client for credentials the
proxy never forwards.

Through a SOCKS5 parent, the tunnel is the parent's SOCKS CONNECT
(L{netproxy.http.parent_connect}).
"""

from functools import partial
from typing import Any

from twisted.internet.defer import Deferred, fail
from twisted.internet.interfaces import IDelayedCall, IProtocol, IProtocolFactory
from twisted.internet.protocol import Factory, Protocol, connectionDone
from twisted.python.failure import Failure

from netproxy.dialing import connect_checked
from netproxy.errors import HTTPError
from netproxy.http.head import HeadReader, ResponseHead, parse_response_head
from netproxy.http.message import Target, no_delay
from netproxy.http.parent_connect import connect_parent, socks_protocols, through_socks
from netproxy.http.parents import Parent, refusal, url_key


class ParentHandshake(Protocol):
    """
    The parent's end of a tunnel: asks for it, then hands every event to
    the protocol the tunnel's factory builds.

    :param opening: the L{_Opening} it reports to.
    :param parent: the L{Parent} connected to.
    :ivar inner: the tunnel's protocol, once the parent said 2xx.
    """

    transport: Any
    inner: IProtocol | None = None
    _timer: IDelayedCall | None = None
    _done = False

    def __init__(self, opening: "_Opening", parent: Parent) -> None:
        self.opening = opening
        self.parent = parent
        self._reader = HeadReader(parse_response_head)

    def connectionMade(self) -> None:
        no_delay(self.transport)
        opening = self.opening
        authority = opening.target.authority
        credentials = b"" if self.parent.authorization is None else (
            b"Proxy-Authorization: " + self.parent.authorization + b"\r\n")
        self.transport.write(b"CONNECT %s HTTP/1.1\r\nHost: %s\r\n%sVia: 1.1 %s\r\n\r\n"
                             % (authority, authority, credentials, opening.pseudonym))
        self._timer = opening.clock.callLater(opening.timeout, self._timed_out)

    def dataReceived(self, data: bytes) -> None:
        if self.inner is not None:
            self.inner.dataReceived(data)
            return
        if self._done:
            return
        try:
            head, rest = self._reader.feed(data)
            while head is not None and 100 <= head.status < 200:
                # Interim answers come before the final one.
                self._reader = HeadReader(parse_response_head)
                head, rest = self._reader.feed(rest)
        except HTTPError as error:
            self._fail(HTTPError(502, f"parent proxy {self.parent.name} sent an unreadable answer to CONNECT: "
                                      f"{error}"), down=True)
            return
        if head is not None:
            self._answered(head, rest)

    def _answered(self, head: ResponseHead, rest: bytes) -> None:
        self.opening.parents.answered(self.parent)
        if not 200 <= head.status < 300:
            self._fail(self.parent.refused(head.status, head.reason,
                                           f"CONNECT {self.opening.target.authority.decode('ascii')}"))
            return
        self._finish()
        inner = self.opening.build(self)
        if inner is None:
            self.transport.loseConnection()
            return
        self.inner = inner
        inner.makeConnection(self.transport)
        self.opening.established(inner)
        if rest:
            inner.dataReceived(rest)

    def _timed_out(self) -> None:
        self._timer = None
        timeout = self.opening.timeout
        # Not a down mark: the parent may be waiting on the destination.
        self._fail(HTTPError(504, f"parent proxy {self.parent.name} did not answer CONNECT within {timeout:g} "
                                  "seconds"))

    def _fail(self, error: HTTPError, down: bool = False) -> None:
        if self._done:
            return
        self._finish()
        if down:
            self.opening.parents.failed(self.parent, str(error))
        self.transport.abortConnection()
        self.opening.refused(error)

    def _finish(self) -> None:
        self._done = True
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None

    def abort(self) -> None:
        """
        The tunnel is no longer wanted: close, unless it was handed over.
        """
        if self.inner is None:
            self._finish()
            self.transport.abortConnection()

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        if self.inner is not None:
            self.inner.connectionLost(reason)
            return
        self._fail(HTTPError(502, f"parent proxy {self.parent.name} closed the connection before answering "
                                  "CONNECT"), down=True)


class _Opening:
    """
    A tunnel being opened through the parents: connecting (with failover),
    then the handshake with the parent that accepted.

    :ivar result: fires with the tunnel's protocol, or fails with an
        L{HTTPError}.
    """

    def __init__(self, factory: Any, target: Target, connector: IProtocolFactory,
                 candidates: list[Parent]) -> None:
        self.target = target
        self.parents = factory.parents
        self.pseudonym: bytes = factory.pseudonym
        self.clock = factory.reactor
        self.timeout: float = factory.timeout
        self._connector = connector
        self._handshake: ParentHandshake | None = None
        self.result: "Deferred[Any]" = Deferred(self._cancel)
        self._connecting: "Deferred[Any] | None" = connect_parent(
            self.parents, candidates, factory.reactor, factory.connect_timeout, self._handshakes)
        self._connecting.addCallback(through_socks(self.parents, target.authority.decode("ascii")))
        self._connecting.addCallbacks(self._connected, self._not_connected)

    def _handshakes(self, parent: Parent) -> IProtocolFactory:
        if parent.socks:
            origin = (self.target.host.decode("ascii"), self.target.port)
            return socks_protocols(parent, origin, self._connector, self.clock, self.timeout)
        protocols = Factory.forProtocol(partial(ParentHandshake, self, parent))
        protocols.noisy = False
        return protocols

    def _connected(self, protocol: IProtocol) -> None:
        self._connecting = None
        if isinstance(protocol, ParentHandshake):
            self._handshake = protocol
        elif not self.result.called:
            # Through a SOCKS5 parent: the tunnel's protocol, connected.
            self.result.callback(protocol)

    def _not_connected(self, failure: Failure) -> None:
        self._connecting = None
        if not self.result.called:
            self.result.errback(failure)

    def build(self, handshake: ParentHandshake) -> IProtocol | None:
        """
        The parent opened the tunnel.

        :returns: the tunnel's protocol, to be connected, or L{None} when
            the tunnel is no longer wanted.
        """
        if self.result.called:
            return None
        return self._connector.buildProtocol(handshake.transport.getPeer())

    def established(self, inner: IProtocol) -> None:
        """The tunnel's protocol is connected: the tunnel is open."""
        self.result.callback(inner)

    def refused(self, error: HTTPError) -> None:
        """The parent did not open the tunnel, for C{error}."""
        if not self.result.called:
            self.result.errback(error)

    def _cancel(self, result: "Deferred[Any]") -> None:
        if self._connecting is not None:
            self._connecting.cancel()
        if self._handshake is not None:
            self._handshake.abort()


def connect_tunnel(factory: Any, target: Target, connector: IProtocolFactory) -> "Deferred[Any]":
    """
    Connect C{connector} to the destination of a CONNECT: directly, or
    through a parent unless a C{--direct} rule names it.

    :param factory: the L{netproxy.http.proxy.ProxyFactory}.
    :returns: a L{Deferred} firing with the connected protocol, or failing
        as L{connect_checked} does, or with an L{HTTPError}.
    """
    host = target.host.decode("ascii")
    parents = factory.parents
    if parents is None or parents.goes_direct(host, target.port):
        return connect_checked(factory.reactor, factory.rules, host, target.port, connector,
                               factory.connect_timeout, factory.local)
    error = refusal(factory.rules, factory.local, target)
    if error is not None:
        return fail(error)
    return _Opening(factory, target, connector, parents.candidates(url_key(target))).result
