# -*- test-case-name: tests.message.test_upper_client -*-
"""
The upper client: sends a text to an upper server over TCP or UDP and
returns the reply.

The reply to a TCP text is complete once as many bytes as were sent have
come back, since the server changes letters but never lengths.
"""

from functools import partial
from typing import Any

from twisted.internet.defer import Deferred
from twisted.internet.endpoints import HostnameEndpoint
from twisted.internet.protocol import DatagramProtocol, Factory, Protocol, connectionDone
from twisted.python.failure import Failure

from netproxy.dialing import connect, resolve, within
from netproxy.errors import ClientError


class UpperTCPClient(Protocol):
    """
    Writes C{text} and fires C{reply} with the upper-cased text once it has
    all come back.
    """

    transport: Any

    def __init__(self, text: bytes) -> None:
        self.text = text
        self.buffer = b""
        self.reply: Deferred[bytes] = Deferred()

    def connectionMade(self) -> None:
        self.transport.write(self.text)
        if not self.text:
            self._done()

    def dataReceived(self, data: bytes) -> None:
        self.buffer += data
        if len(self.buffer) >= len(self.text):
            self._done()

    def _done(self) -> None:
        if not self.reply.called:
            self.reply.callback(self.buffer)
        self.transport.loseConnection()

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        if not self.reply.called:
            self.reply.errback(ClientError(
                f"connection closed after {len(self.buffer)} of {len(self.text)} bytes"))


class UpperUDPClient(DatagramProtocol):
    """
    Sends C{text} as one datagram to C{(host, port)} and fires C{reply} with
    the first datagram that comes back from there.
    """

    transport: Any

    def __init__(self, text: bytes, host: str, port: int) -> None:
        self.text = text
        self.address = (host, port)
        self.reply: Deferred[bytes] = Deferred()

    def startProtocol(self) -> None:
        self.transport.connect(*self.address)
        self.transport.write(self.text)

    def datagramReceived(self, data: bytes, address: Any) -> None:
        if not self.reply.called:
            self.reply.callback(data)

    def connectionRefused(self) -> None:
        if not self.reply.called:
            self.reply.errback(ClientError(f"{self.address[0]}:{self.address[1]} refused the datagram"))


async def upper_tcp(reactor: Any, host: str, port: int, text: bytes, timeout: float) -> bytes:
    """
    :returns: the server's reply to C{text} (bytes).
    :raises ClientError: when the server cannot be reached or does not answer.
    """
    endpoint = HostnameEndpoint(reactor, host, port, timeout=timeout)
    client = await connect(endpoint, Factory.forProtocol(partial(UpperTCPClient, text)), f"{host}:{port}")
    try:
        return await within(client.reply, timeout, reactor, f"no reply from {host}:{port} within {timeout:g} seconds")
    finally:
        # A reply that never came must not leave the connection open.
        client.transport.loseConnection()


async def upper_udp(reactor: Any, host: str, port: int, text: bytes, timeout: float) -> bytes:
    """
    :returns: the server's reply datagram to C{text} (bytes).
    :raises ClientError: when no reply comes within C{timeout} seconds.
    """
    address = await resolve(reactor, host)
    client = UpperUDPClient(text, address, port)
    listening = reactor.listenUDP(0, client, interface="::" if ":" in address else "")
    try:
        return await within(client.reply, timeout, reactor, f"no reply from {host}:{port} within {timeout:g} seconds")
    finally:
        listening.stopListening()
