# -*- test-case-name: tests.message.test_relay_client -*-
"""
The relay client: sends one relay request and collects the reply.

The relay forwards replies unframed and keeps the connection open after
them, so the reply is taken as complete when the relay closes the
connection or when nothing more has arrived for C{quiet} seconds after the
first bytes.
"""

import random
import string
from functools import partial
from typing import Any, Protocol as TypingProtocol

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.internet.endpoints import HostnameEndpoint
from twisted.internet.protocol import Factory, Protocol, connectionDone
from twisted.python.failure import Failure

from netproxy.dialing import connect, within
from netproxy.message.codec import encode_message

MAX_REPLY = 1 << 20


class _Chooser(TypingProtocol):
    def choice(self, seq: str, /) -> str:
        ...


def random_word(rng: _Chooser = random) -> str:
    """
    :param rng: the L{random} module, or a L{random.Random}.
    :returns: four random lower-case letters, the default message text.
    """
    return "".join(rng.choice(string.ascii_lowercase) for _ in range(4))


def relay_request(host: str, port: int, text: str) -> bytes:
    """
    :returns: the bytes of a relay request for C{text} to C{host:port}, one
        JSON object on one line.
    """
    return encode_message({"server_ip": host, "server_port": port, "message": text})


class RelayClient(Protocol):
    """
    Sends a request and fires C{reply} with the bytes received once the
    relay closes or falls quiet.
    """

    transport: Any

    def __init__(self, request: bytes, clock: IReactorTime, quiet: float) -> None:
        self.request = request
        self.clock = clock
        self.quiet = quiet
        self.buffer = b""
        self.reply: Deferred[bytes] = Deferred()
        self._quiet_call: IDelayedCall | None = None

    def connectionMade(self) -> None:
        self.transport.write(self.request)

    def dataReceived(self, data: bytes) -> None:
        self.buffer += data
        if len(self.buffer) > MAX_REPLY:
            self._done()
            return
        if self._quiet_call is not None and self._quiet_call.active():
            self._quiet_call.cancel()
        self._quiet_call = self.clock.callLater(self.quiet, self._done)

    def _done(self) -> None:
        if not self.reply.called:
            self.reply.callback(self.buffer)
        self.transport.loseConnection()

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        if self._quiet_call is not None and self._quiet_call.active():
            self._quiet_call.cancel()
        if not self.reply.called:
            self.reply.callback(self.buffer)


async def send_relay_request(reactor: Any, proxy: tuple[str, int], destination: tuple[str, int], text: str,
                             timeout: float, quiet: float = 0.5) -> bytes:
    """
    Ask the relay at C{proxy} to send C{text} to C{destination}.

    :param proxy: the relay's C{(host, port)}.
    :param destination: the C{(host, port)} the relay should forward to.
    :returns: the reply bytes (the destination's, or the relay's error text).
    :raises ClientError: when the relay cannot be reached or says nothing in time.
    """
    host, port = proxy
    endpoint = HostnameEndpoint(reactor, host, port, timeout=timeout)
    factory = Factory.forProtocol(partial(RelayClient, relay_request(*destination, text), reactor, quiet))
    client = await connect(endpoint, factory, f"{host}:{port}")
    try:
        return await within(client.reply, timeout, reactor, f"no reply from the relay at {host}:{port} within {timeout:g} seconds")
    finally:
        # A reply that never came must not leave the connection open.
        client.transport.loseConnection()
