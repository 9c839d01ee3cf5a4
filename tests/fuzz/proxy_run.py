"""
One input through a real HTTP proxy in memory, for the fuzz tests of both
its sides: a client sending its bytes in pieces, origins that parse what
the proxy forwards with the proxy's own strict parsers and answer, and the
clock run past every timeout, with the log and the connections checked.
"""

import re

from hypothesis import event

from twisted.internet.address import IPv4Address
from twisted.internet.error import ConnectionRefusedError

from netproxy.acl import RuleSet, parse_rule
from netproxy.errors import HTTPError
from netproxy.http.body import make_decoder
from netproxy.http.cache.producers import next_turn
from netproxy.http.cache.responses import Cache
from netproxy.http.framing import request_framing
from netproxy.http.head import HeadReader, parse_request_head
from netproxy.http.proxy import ProxyFactory
from netproxy.http.upstream import UpstreamConnection
from netproxy.testing import MemoryStore, complete_connection, fail_connection
from tests.fuzz.harness import FuzzReactor, LogWatch, Peer, assert_closed_or_timed

CLIENT = IPv4Address("TCP", "127.0.0.1", 40000)
TIMEOUT = 30
CONNECT_TIMEOUT = 10
# Enough turns of the clock for every timer of the proxy to run out: the
# request and answer timeouts, the idle timeout, the pool's expiry.
CLOCK_STEPS = 8
MAX_ROUNDS = 200
NAMES = {"origin.test": "192.0.2.10"}
STATUS_LINE = re.compile(rb"HTTP/1\.1 [1-5][0-9][0-9] ")


def origin_response(method, status=200):
    """
    :returns: the in-memory origin's answer to a request with C{method}:
        fresh for a minute, so the cache may store it.
    """
    head = b"HTTP/1.1 %d OK\r\nContent-Length: 2\r\nCache-Control: max-age=60\r\nETag: \"v1\"\r\n\r\n" % (status,)
    return head if method == b"HEAD" else head + b"ok"


class StrictOrigin:
    """
    The origin end of one connection the proxy made: it parses what the
    proxy sends with the proxy's own strict parsers (so a request the proxy
    forwards must be one it would accept itself) and answers each complete
    request.  The destination of a CONNECT tunnel echoes what it reads.
    """

    def __init__(self, testcase, protocol, transport, script=None):
        self.testcase = testcase
        self.script = script
        self.protocol = protocol
        self.transport = transport
        wrapped = getattr(protocol, "_wrappedProtocol", protocol)
        self.http = isinstance(wrapped, UpstreamConnection)
        self.read = 0
        self.reader = HeadReader(parse_request_head)
        self.head = None
        self.decoder = None
        self.body = []
        self.bodies = []

    def serve(self):
        """
        Read what the proxy sent since last time, and answer.

        :returns: whether anything was read.
        """
        data = self.transport.value()[self.read:]
        self.read += len(data)
        if not data or not self.transport.connected:
            return False
        if not self.http:
            self.protocol.dataReceived(data)
            return True
        try:
            self._requests(data)
        except HTTPError as error:
            self.testcase.fail(f"the proxy forwarded a request its own parser refuses ({error}): {self.transport.value()!r}")
        return True

    def _requests(self, data):
        while data and self.transport.connected:
            if self.head is None:
                self.head, data = self.reader.feed(data)
                if self.head is None:
                    return
                self.testcase.assertTrue(self.head.target.startswith(b"/") or self.head.target == b"*",
                                         self.head.target)
                self.decoder = make_decoder(request_framing(self.head.version, self.head.headers))
            self.body.extend(self.decoder.feed(data))
            if not self.decoder.done:
                return
            data = self.decoder.rest
            self.bodies.append(b"".join(self.body))
            self.body = []
            method, self.head = self.head.method, None
            self._answer(method)

    def _answer(self, method):
        if self.script is None:
            self.protocol.dataReceived(origin_response(method))
            return
        # The scripted answer, once: its pieces, then maybe a close.
        (chunks, close), self.script = self.script, None
        for chunk in chunks:
            if not self.transport.connected:
                return
            self.protocol.dataReceived(chunk)
        if close:
            self.transport.loseConnection()


class Run:
    """
    One input through a fresh proxy: a client sending C{chunks}, origins
    answering, then the clock run past every timeout.

    :param cache: whether the proxy has a cache (in memory).
    :param refuse: whether each connection attempt is refused, in turn.
    :param close_at_end: whether the client closes once it has sent all.
    :param script: C{(pieces, close)}: what the first origin connection
        answers to its first request, instead of a valid response; and
        whether it closes after.
    """

    def __init__(self, testcase, chunks, cache=False, refuse=(), close_at_end=False, script=None):
        self.testcase = testcase
        self.reactor = reactor = FuzzReactor(NAMES)
        self.factory = ProxyFactory(reactor, allow=RuleSet([parse_rule("127.0.0.0/8")]),
                                    rules=RuleSet([parse_rule("192.0.2.66"), parse_rule("*:25")]),
                                    connect_ports={443}, timeout=TIMEOUT, connect_timeout=CONNECT_TIMEOUT,
                                    cache=Cache(MemoryStore(1 << 20, scheduler=next_turn(reactor))) if cache else None)
        self.refuse = list(refuse) or [False]
        self.origins = []
        self.client = Peer(self.factory, CLIENT, chunks)
        self.close_at_end = close_at_end
        self.script = script

    def pump(self):
        """
        Deliver the client's bytes, let connection attempts succeed or be
        refused, and let the origins answer, until nothing moves.
        """
        for _ in range(MAX_ROUNDS):
            moved = self.client.deliver()
            while len(self.origins) < len(self.reactor.tcpClients):
                index = len(self.origins)
                self.origins.append(None)
                if self.reactor.connectors[index].stoppedConnecting:
                    continue
                if self.refuse[index % len(self.refuse)]:
                    fail_connection(self.reactor, ConnectionRefusedError(), index)
                else:
                    protocol, transport = complete_connection(self.reactor, index)
                    script, self.script = self.script, None
                    self.origins[index] = StrictOrigin(self.testcase, protocol, transport, script)
                moved = True
            for origin in self.origins:
                if origin is not None:
                    moved = origin.serve() or moved
            # The cache streams stored bodies on the next reactor turn.
            self.reactor.advance(0)
            if not moved:
                return
        self.testcase.fail("the exchange did not settle")

    def run(self):
        """
        Run the input, then the clock, checking the log and the
        connections as it goes.

        :returns: what the client received.
        """
        with LogWatch() as log:
            self.pump()
            if self.close_at_end and self.client.open:
                self.client.transport.loseConnection()
                self.pump()
            assert_closed_or_timed(self.testcase, self.reactor, self.client.transport, "client")
            for _ in range(CLOCK_STEPS):
                if not self.reactor.timers():
                    break
                self.reactor.advance(TIMEOUT + 1)
                self.pump()
            log.check(self.testcase, "proxy")
        self.check_connections()
        return self.client.output()

    def check_connections(self):
        """
        Past every timeout only an established tunnel may stay open, with
        its timer; every origin connection is closed but a tunnel's.
        """
        protocol = self.client.protocol
        tunnel = getattr(protocol, "tunnel", None)
        if self.client.open:
            self.testcase.assertIsNotNone(tunnel, "client connection still open past every timeout")
            self.testcase.assertIsNotNone(tunnel.destination)
            assert_closed_or_timed(self.testcase, self.reactor, self.client.transport, "tunnel")
        for origin in self.origins:
            if origin is not None and origin.http:
                self.testcase.assertFalse(origin.transport.connected, "origin connection still open")

    def check_answered(self, data):
        """
        A client that stayed and sent more than empty lines got an answer:
        the proxy's, starting with a status line, never a traceback.
        """
        output = self.client.output()
        event("client's first answer: " + output[:12].decode("latin-1"))
        if not self.close_at_end and data.strip(b"\r\n"):
            self.testcase.assertTrue(output, "no answer at all")
        if output:
            self.testcase.assertTrue(STATUS_LINE.match(output), output[:80])
        self.testcase.assertNotIn(b"Traceback", output)


