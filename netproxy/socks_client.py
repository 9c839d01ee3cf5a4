# -*- test-case-name: tests.test_socks_client -*-
"""
The client side of SOCKS5 (RFC 1928), with username/password login (RFC
1929): a protocol that asks a SOCKS server to CONNECT to a destination and
then hands the connection, as a tunnel, to another protocol.

The destination's name goes to the server as a name (address type 3), so
the server resolves it; an address literal goes as an address.  Every
answer is read to its exact length: what the server sends after its reply
belongs to the tunnel.  A server that breaks the protocol (a wrong version,
a method it was not offered, an unknown address type, an empty bound
name) or closes before its reply fails the handshake with a
L{SocksFailure} that says the server is at fault; a server that answers
the CONNECT with a failure code fails it with that code, the server being
up.
"""

from collections.abc import Callable
from functools import partial
from ipaddress import IPv4Address, ip_address
from typing import Any

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IDelayedCall, IProtocol, IProtocolFactory, IReactorTime
from twisted.internet.protocol import Factory, Protocol, connectionDone
from twisted.python.failure import Failure

from netproxy.socks_codes import (
    CONNECT,
    DOMAIN_NAME,
    IPV4,
    IPV6,
    LOGIN_VERSION,
    NO_ACCEPTABLE_METHODS,
    NO_AUTHENTICATION,
    REPLIES,
    TTL_EXPIRED,
    USERNAME_PASSWORD,
    VERSION,
)


class SocksFailure(Exception):
    """
    The SOCKS server did not open the tunnel; the message says why, in
    words for an operator.

    :ivar reply: the server's failure code (RFC 1928 section 6), or
        L{None} when it gave none.
    :ivar server_fault: whether the server itself failed (broke the
        protocol, closed early, did not greet in time), rather than
        answered that the destination could not be reached.
    """

    def __init__(self, message: str, reply: int | None = None, server_fault: bool = False) -> None:
        super().__init__(message)
        self.reply = reply
        self.server_fault = server_fault


def connect_request(host: str, port: int) -> bytes:
    """
    :param host: a name, or an IPv4 or IPv6 address (without brackets).
    :returns: the CONNECT request for C{host:port}: a name as a name, for
        the server to resolve.
    :raises ValueError: for a name longer than 255 bytes, or not ASCII.
    """
    try:
        address = ip_address(host)
    except ValueError:
        name = host.encode("ascii")
        if not 0 < len(name) < 256:
            raise ValueError(f"a SOCKS5 destination name has 1 to 255 characters, not {len(name)}") from None
        destination = bytes([DOMAIN_NAME, len(name)]) + name
    else:
        destination = bytes([IPV4 if isinstance(address, IPv4Address) else IPV6]) + address.packed
    return bytes([VERSION, CONNECT, 0]) + destination + port.to_bytes(2, "big")


def _reply_length(data: bytes) -> int | None:
    """
    :returns: the length of the CONNECT reply starting C{data} (its first
        five bytes are enough), or L{None} while they have not arrived.
    :raises SocksFailure: for an address type that is none of RFC 1928's, or
        an empty bound name.
    """
    if len(data) < 5:
        return None
    kind = data[3]
    if kind == IPV4:
        return 4 + 4 + 2
    if kind == IPV6:
        return 4 + 16 + 2
    if kind == DOMAIN_NAME and data[4]:
        return 4 + 1 + data[4] + 2
    raise SocksFailure(f"the SOCKS server answered CONNECT with a bad bound address (type {kind}, "
                       f"length {data[4]})", server_fault=True)


class SocksClient(Protocol):
    """
    One connection to a SOCKS5 server: the greeting, the login when the
    server asks for it, the CONNECT, then the tunnel's protocol gets every
    event.

    :param host: the destination's name or address.
    :param port: its port.
    :param credentials: C{(user, password)}, each 1 to 255 bytes, or
        L{None} to offer no login.
    :param inner: builds the tunnel's protocol.
    :param clock: for the C{timeout}.
    :param timeout: how long the whole handshake may take.
    :ivar ready: fires with the tunnel's protocol, connected, or fails with
        a L{SocksFailure}; cancelling it closes the connection.
    """

    transport: Any
    inner: IProtocol | None = None
    _timer: IDelayedCall | None = None
    _done = False

    def __init__(self, host: str, port: int, credentials: tuple[bytes, bytes] | None, inner: IProtocolFactory,
                 clock: IReactorTime, timeout: float) -> None:
        self._request = connect_request(host, port)
        self._credentials = credentials
        self._inner = inner
        self._clock = clock
        self._timeout = timeout
        self._state = "method"
        self._buffer = b""
        self.ready: "Deferred[IProtocol]" = Deferred(self._cancel)

    def connectionMade(self) -> None:
        methods = bytes([NO_AUTHENTICATION]) if self._credentials is None else bytes(
            [NO_AUTHENTICATION, USERNAME_PASSWORD])
        self.transport.write(bytes([VERSION, len(methods)]) + methods)
        self._timer = self._clock.callLater(self._timeout, self._timed_out)

    def dataReceived(self, data: bytes) -> None:
        if self.inner is not None:
            self.inner.dataReceived(data)
            return
        if self._done:
            return
        self._buffer += data
        try:
            self._advance()
        except SocksFailure as failure:
            self._fail(failure)

    def _advance(self) -> None:
        # Each step takes its message off the buffer, exactly, and stops
        # while it has not arrived whole.
        while not self._done:
            buffer = self._buffer
            if self._state in ("method", "login"):
                if len(buffer) < 2:
                    return
                self._buffer = buffer[2:]
                if self._state == "method":
                    self._method(buffer[0], buffer[1])
                else:
                    self._logged_in(buffer[0], buffer[1])
            else:
                if len(buffer) < 2:
                    return
                # A failure's code is all that matters of it.
                failed = buffer[0] != VERSION or buffer[1] != 0
                length = 2 if failed else _reply_length(buffer)
                if length is None or len(buffer) < length:
                    return
                self._buffer = buffer[length:]
                self._replied(buffer[0], buffer[1])

    def _method(self, version: int, method: int) -> None:
        if version != VERSION:
            raise SocksFailure(f"the SOCKS server answered with version {version}, not 5", server_fault=True)
        if method == NO_ACCEPTABLE_METHODS:
            raise SocksFailure("the SOCKS server accepts none of the methods offered" +
                               (" (it may want a user name and password)" if self._credentials is None else
                                " (neither none nor username/password)"))
        if method == NO_AUTHENTICATION:
            self._state = "reply"
            self.transport.write(self._request)
        elif method == USERNAME_PASSWORD and self._credentials is not None:
            user, password = self._credentials
            self._state = "login"
            self.transport.write(bytes([LOGIN_VERSION, len(user)]) + user + bytes([len(password)]) + password)
        else:
            raise SocksFailure(f"the SOCKS server chose method {method}, which was not offered", server_fault=True)

    def _logged_in(self, version: int, status: int) -> None:
        if version != LOGIN_VERSION:
            raise SocksFailure(f"the SOCKS server answered the login with version {version}, not 1",
                               server_fault=True)
        if status != 0:
            raise SocksFailure("the SOCKS server refused the user name and password")
        self._state = "reply"
        self.transport.write(self._request)

    def _replied(self, version: int, reply: int) -> None:
        if version != VERSION:
            raise SocksFailure(f"the SOCKS server answered CONNECT with version {version}, not 5", server_fault=True)
        if reply != 0:
            raise SocksFailure(f"the SOCKS server answered CONNECT with {reply} "
                               f"({REPLIES.get(reply, 'an unknown failure')})", reply=reply)
        self._finish()
        inner = self._inner.buildProtocol(self.transport.getPeer())
        if inner is None:
            self.transport.loseConnection()
            self.ready.errback(SocksFailure("the tunnel was not wanted"))
            return
        self.inner = inner
        inner.makeConnection(self.transport)
        rest, self._buffer = self._buffer, b""
        self.ready.callback(inner)
        if rest:
            inner.dataReceived(rest)

    def _timed_out(self) -> None:
        self._timer = None
        # Before the CONNECT the server has only itself to answer for; after
        # it, it may be waiting on the destination.
        waiting = "CONNECT" if self._state == "reply" else "the greeting"
        self._fail(SocksFailure(f"the SOCKS server did not answer {waiting} within {self._timeout:g} seconds",
                                reply=TTL_EXPIRED if self._state == "reply" else None,
                                server_fault=self._state != "reply"))

    def _fail(self, failure: SocksFailure) -> None:
        if self._done:
            return
        self._finish()
        self.transport.abortConnection()
        self.ready.errback(failure)

    def _finish(self) -> None:
        self._done = True
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None

    def _cancel(self, ready: "Deferred[IProtocol]") -> None:
        if self.inner is None and not self._done:
            self._finish()
            self.transport.abortConnection()

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        if self.inner is not None:
            self.inner.connectionLost(reason)
            return
        step = {"method": "the greeting", "login": "the login"}.get(self._state, "CONNECT")
        self._fail(SocksFailure(f"the SOCKS server closed the connection before answering {step}",
                                server_fault=True))


def socks_factory(host: str, port: int, credentials: tuple[bytes, bytes] | None, inner: IProtocolFactory,
                  clock: IReactorTime, timeout: float,
                  protocol: Callable[..., SocksClient] = SocksClient) -> IProtocolFactory:
    """
    :param protocol: makes the protocol from L{SocksClient}'s parameters:
        the class, or a subclass with more parameters bound before them.
    :returns: a factory of its protocols for a tunnel to C{host:port}: see
        L{SocksClient}.
    """
    protocols = Factory.forProtocol(partial(protocol, host, port, credentials, inner, clock, timeout))
    protocols.noisy = False
    return protocols
