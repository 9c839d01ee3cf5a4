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

from twisted.internet.defer import Deferred
from twisted.internet.endpoints import HostnameEndpoint
from twisted.internet.protocol import Factory, Protocol

from netproxy.dialing import connect, within
from netproxy.message.codec import encode_message

MAX_REPLY = 1 << 20


def random_word(rng=random):
    """
    :returns: four random lower-case letters, the default message text.
    """
    return "".join(rng.choice(string.ascii_lowercase) for _ in range(4))


def relay_request(host, port, text):
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

    def __init__(self, request, clock, quiet):
        self.request = request
        self.clock = clock
        self.quiet = quiet
        self.buffer = b""
        self.reply = Deferred()
        self._quiet_call = None

    def connectionMade(self):
        self.transport.write(self.request)

    def dataReceived(self, data):
        self.buffer += data
        if len(self.buffer) > MAX_REPLY:
            self._done()
            return
        if self._quiet_call is not None and self._quiet_call.active():
            self._quiet_call.cancel()
        self._quiet_call = self.clock.callLater(self.quiet, self._done)

    def _done(self):
        if not self.reply.called:
            self.reply.callback(self.buffer)
        self.transport.loseConnection()

    def connectionLost(self, reason):
        if self._quiet_call is not None and self._quiet_call.active():
            self._quiet_call.cancel()
        if not self.reply.called:
            self.reply.callback(self.buffer)


async def send_relay_request(reactor, proxy, destination, text, timeout, quiet=0.5):
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
