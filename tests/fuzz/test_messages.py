"""
Fuzz tests of the JSON message roles: streams of valid messages (relay
requests; setups and data messages; data messages for a backend server),
then mutated (braces, quotes, escapes, NUL, bytes that are not UTF-8, huge
numbers, deep nesting, messages past the size limit inserted), go into the
real relay, reverse proxy and backend server protocols in random pieces,
with destinations and servers that answer, answer badly, refuse or stay
silent.  The ack and upper servers get arbitrary bytes.

Each input must end in answers and at most one documented error (the
relay's C{Error, ...} text, a type 3 error) before the connection closes,
never a traceback in the log, and, once the clock has passed the role's
timeouts, every connection closed but a server's registration lifeline
(which the reverse proxy keeps open on purpose).
"""

import json
import re

from hypothesis import event, given
from hypothesis import strategies as st
from twisted.internet.address import IPv4Address
from twisted.internet.error import ConnectionRefusedError
from twisted.internet.interfaces import IHalfCloseableProtocol
from twisted.trial.unittest import SynchronousTestCase

from netproxy.acl import RuleSet, parse_rule
from netproxy.errors import FramingError
from netproxy.message.ack import AckFactory
from netproxy.message.backend import BackendFactory
from netproxy.message.codec import MessageDecoder
from netproxy.message.fields import sha1_hex
from netproxy.message.forwarder import Forwarder
from netproxy.message.registry import ServerRegistry
from netproxy.message.relay import RelayFactory
from netproxy.message.reverse import ReverseFactory
from netproxy.message.upper import UpperDatagramProtocol, UpperFactory
from netproxy.rules_file import RulesFile
from netproxy.testing import FakeUDPPort, complete_connection, fail_connection
from tests.fuzz import fuzz
from tests.fuzz.harness import FuzzReactor, LogWatch, Peer, assert_closed_or_timed
from tests.fuzz.mutation import JSON_TOKENS, mutated, pieces

CLIENT = IPv4Address("TCP", "127.0.0.1", 5555)
IDLE_TIMEOUT = 30
CONNECT_TIMEOUT = 3
ANSWER_TIMEOUT = 10
CLOCK_STEPS = 8
MAX_ROUNDS = 200
NAMES = {"peer.test": "127.0.0.1"}

# The relay's replies, as the README's table writes them: a destination's
# bytes (DONE here), and at most one error, last.
RELAY_OUTPUT = re.compile(
    rb"(?:DONE)*(?:Error, (?:not allowed address|bad request: .*|could not connect to .*))?\Z", re.S)

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-2**70, 2**70) | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3),
    max_leaves=6,
)


def usually(valid, odd):
    """
    :returns: a strategy drawing from C{valid} about four times in five,
        else from C{odd}.
    """
    return st.one_of(valid, valid, valid, valid, odd)


# Each field: (valid values, odd ones).
ids = (st.integers(0, 1000) | st.sampled_from(("50", "100")), st.sampled_from((" 7 ", "", "x")) | json_values)
policies = (st.just("PP_1"), st.sampled_from(("PP_2", "", 7, None)))
ports = (st.sampled_from((8888, 124, "124")), st.sampled_from((7777, 0, 70000, -1, "x", None)) | st.integers(1, 65535))
texts = (st.text(max_size=12), json_values)


@st.composite
def objects(draw, fields, optional=()):
    """
    A JSON object with C{fields} (name -> C{(valid, odd)} strategies),
    written with random spacing: either all valid, or (about a third of the
    time) with each field
    maybe odd or left out, and a few C{optional} names added.
    """
    message = {}
    odd = draw(st.integers(0, 3)) == 3
    for name, (valid, odd_values) in fields.items():
        if not odd:
            message[name] = draw(valid)
        elif draw(st.integers(0, 9)):
            message[name] = draw(usually(valid, odd_values))
    if odd:
        for name in draw(st.lists(st.sampled_from(optional or ("extra",)), max_size=1)):
            message[name] = draw(json_values)
    separators = draw(st.sampled_from(((",", ":"), (", ", ": "), (",\n", " :\t"))))
    return json.dumps(message, separators=separators, ensure_ascii=draw(st.booleans())).encode("utf-8")


def streams(messages):
    """
    Up to four messages, one after another with or without whitespace.
    """
    gap = st.sampled_from((b"", b"\n", b" ", b"\r\n", b"\t\n "))
    return st.lists(st.tuples(messages, gap), min_size=1, max_size=4).map(
        lambda items: b"".join(message + space for message, space in items))


relay_requests = objects({
    "server_ip": (st.sampled_from(("127.0.0.1", "peer.test")),
                  st.sampled_from(("0.0.0.0", "::1", "10.0.0.1", "unknown.test", "127.1", "", 5))),
    "server_port": ports,
    "message": texts,
})
data_messages = objects({
    "type": (st.sampled_from((0, "0")), st.sampled_from((1, 2, 3, 7, "x"))),
    "srcid": ids,
    "privPoliId": policies,
    "payloadsize": (st.integers(0, 100), st.just("5")),
    "payload": texts,
}, optional=("privPolyId", "listenport", "id"))
setup_messages = objects({
    "type": (st.just(1), st.just("1")),
    "id": ids,
    "privPolyId": policies,
    "listenport": ports,
})
# What a destination or a server answers: a valid ack, one mutated, bytes,
# nothing; then it closes or not.  None: the connection is refused.
ACK = b'{"type": 2, "srcid": 100, "destid": 50, "payloadsize": 40, "payload": "%s"}\n' % sha1_hex("x").encode()
answers = st.one_of(
    st.tuples(st.just(ACK), st.booleans()),
    st.none(),
    st.tuples(st.one_of(
        mutated(st.just(b'{"type": 2, "srcid": 100, "destid": 50, "payload": "x"}'), JSON_TOKENS),
        st.binary(max_size=20), st.just(b"")), st.booleans()),
)


class Destination:
    """
    The far end of a connection a role made: once the role has written,
    it answers its scripted bytes, once, then closes if told to.
    """

    def __init__(self, protocol, transport, answer):
        self.protocol = protocol
        self.transport = transport
        self.answer = answer

    def serve(self):
        """
        :returns: whether it did anything.
        """
        if self.answer is None or not self.transport.connected or not self.transport.value():
            return False
        (data, close), self.answer = self.answer, None
        if data:
            self.protocol.dataReceived(data)
        if close and self.transport.connected:
            self.transport.loseConnection()
        return True


class MessageRun:
    """
    One input through a role: a peer sending C{chunks}, then ending as
    C{end} says (C{stay}, C{half-close} or C{close}); the connections the
    role makes answered in turn as C{script} says; then the clock run past
    every timeout.
    """

    def __init__(self, testcase, reactor, factory, chunks, end="stay", script=()):
        self.testcase = testcase
        self.reactor = reactor
        self.factory = factory
        self.script = list(script) or [(b"DONE", False)]
        self.destinations = []
        self.end = end
        self.client = Peer(factory, CLIENT, chunks)

    def pump(self):
        for _ in range(MAX_ROUNDS):
            moved = self.client.deliver()
            if not self.client.chunks and self.client.open and self.end != "stay":
                end, self.end = self.end, "stay"
                # A protocol that cannot be half-closed is closed, as
                # Twisted's TCP transport does.
                if end == "close" or not IHalfCloseableProtocol.providedBy(self.client.protocol):
                    self.client.transport.loseConnection()
                else:
                    self.client.protocol.readConnectionLost()
                moved = True
            while len(self.destinations) < len(self.reactor.tcpClients):
                index = len(self.destinations)
                self.destinations.append(None)
                moved = True
                if self.reactor.connectors[index].stoppedConnecting:
                    continue
                answer = self.script[index % len(self.script)]
                if answer is None:
                    fail_connection(self.reactor, ConnectionRefusedError(), index)
                else:
                    self.destinations[index] = Destination(*complete_connection(self.reactor, index), answer)
            for destination in self.destinations:
                if destination is not None:
                    moved = destination.serve() or moved
            if not moved:
                return
        self.testcase.fail("the exchange did not settle")

    def run(self, may_stay_open=lambda protocol: False):
        """
        Run the input and then the clock.

        :param may_stay_open: whether the role may keep this connection
            open past every timeout.
        :returns: what the peer received.
        """
        with LogWatch() as log:
            self.pump()
            assert_closed_or_timed(self.testcase, self.reactor, self.client.transport, "client")
            for _ in range(CLOCK_STEPS):
                if not self.reactor.timers():
                    break
                self.reactor.advance(IDLE_TIMEOUT + 1)
                self.pump()
            log.check(self.testcase, type(self.factory).__name__)
        if self.client.open:
            self.testcase.assertTrue(may_stay_open(self.client.protocol), "connection open past every timeout")
        for destination in self.destinations:
            if destination is not None:
                self.testcase.assertFalse(destination.transport.connected, "outbound connection left open")
        return self.client.output()


def decoded(testcase, output):
    """
    :returns: the JSON objects a role wrote, each checked to end its line.
    """
    decoder = MessageDecoder(1 << 30)
    try:
        messages = list(decoder.feed(output))
    except FramingError as error:
        testcase.fail(f"the role wrote something that is not a JSON object ({error}): {output[:200]!r}")
    testcase.assertEqual(decoder.buffered, 0, output[-200:])
    if output:
        testcase.assertTrue(output.endswith(b"\n"), output[-80:])
    return messages


ends = st.sampled_from(("stay", "stay", "half-close", "close"))


class RelayTests(SynchronousTestCase):
    """
    The relay, with a blocklist and destinations that answer, refuse or
    stay silent.
    """

    @fuzz()
    @given(st.data())
    def test_mutated_requests(self, data):
        """Mutated relay requests end in relayed replies and at most one Error text, then the close."""
        raw = data.draw(mutated(streams(relay_requests), JSON_TOKENS))
        reactor = FuzzReactor(NAMES)
        rules = RulesFile(RuleSet([parse_rule("127.0.0.1:7777"), parse_rule("10.0.0.0/8")]))
        factory = RelayFactory(reactor, rules, IDLE_TIMEOUT, CONNECT_TIMEOUT, max_size=4096)
        script = data.draw(st.lists(st.sampled_from((None, (b"DONE", False), (b"DONE", True), (b"", False))),
                                    max_size=3))
        run = MessageRun(self, reactor, factory, data.draw(pieces(raw)), data.draw(ends), script)
        output = run.run()
        event("relay: " + output[:24].decode("latin-1"))
        self.assertRegex(output, RELAY_OUTPUT)
        if b"Error, " in output:
            self.assertFalse(run.client.open)


class ReverseTests(SynchronousTestCase):
    """
    The reverse proxy, with one server registered and servers that answer
    well, badly, or not at all.
    """

    @fuzz()
    @given(st.data())
    def test_mutated_messages(self, data):
        """Mutated setups and data messages end in answers and at most one type 3 error, then the close."""
        raw = data.draw(mutated(streams(st.one_of(data_messages, data_messages, setup_messages)), JSON_TOKENS))
        reactor = FuzzReactor(NAMES)
        registry = ServerRegistry(reactor)
        forwarder = Forwarder(reactor, registry, CONNECT_TIMEOUT, ANSWER_TIMEOUT, 4096)
        factory = ReverseFactory(reactor, registry, forwarder, IDLE_TIMEOUT, 1.0, max_size=4096)
        # A server registers the usual way: a setup, and its connection closed.
        server = Peer(factory, IPv4Address("TCP", "127.0.0.1", 40001),
                      [b'{"type": 1, "id": 100, "privPolyId": "PP_1", "listenport": 124}'])
        server.deliver()
        server.transport.loseConnection()
        script = data.draw(st.lists(answers, min_size=1, max_size=3))
        run = MessageRun(self, reactor, factory, data.draw(pieces(raw)), data.draw(ends), script)
        output = run.run(may_stay_open=lambda protocol: bool(protocol.registrations))
        replies = decoded(self, output)
        event("reverse: " + ",".join(str(reply.get("type")) for reply in replies[:3]))
        errors = [reply for reply in replies if "error" in reply]
        if errors and errors[-1]["error"].startswith("bad message"):
            self.assertIs(replies[-1], errors[-1])
            self.assertFalse(run.client.open)


class BackendTests(SynchronousTestCase):
    """
    The backend server.
    """

    @fuzz()
    @given(st.data())
    def test_mutated_messages(self, data):
        """Mutated data messages end in acks and at most one type 3 error, then the close."""
        raw = data.draw(mutated(streams(data_messages), JSON_TOKENS))
        reactor = FuzzReactor()
        factory = BackendFactory(reactor, 100, IDLE_TIMEOUT, max_size=4096)
        run = MessageRun(self, reactor, factory, data.draw(pieces(raw)), data.draw(ends))
        replies = decoded(self, run.run())
        event("server: " + ",".join(str(reply.get("type")) for reply in replies[:3]))
        for reply in replies[:-1]:
            self.assertNotIn("error", reply)
        if replies and "error" in replies[-1]:
            self.assertFalse(run.client.open)


class SmallServerTests(SynchronousTestCase):
    """
    The ack and upper servers take any bytes.
    """

    @fuzz(0.5)
    @given(st.binary(max_size=200), st.data())
    def test_ack(self, raw, data):
        """The ack server answers each piece with its reply, and closes when idle."""
        reactor = FuzzReactor()
        chunks = data.draw(pieces(raw))
        run = MessageRun(self, reactor, AckFactory(reactor, b"DONE", IDLE_TIMEOUT), chunks, data.draw(ends))
        output = run.run()
        self.assertEqual(output, b"DONE" * len(output.split(b"DONE")[:-1]))
        self.assertLessEqual(len(output), 4 * len(chunks))

    @fuzz(0.5)
    @given(st.binary(max_size=200), st.data())
    def test_upper(self, raw, data):
        """The upper server sends back every byte with a-z upper-cased, and closes when idle."""
        reactor = FuzzReactor()
        end = data.draw(ends)
        run = MessageRun(self, reactor, UpperFactory(reactor, IDLE_TIMEOUT), data.draw(pieces(raw)), end)
        output = run.run()
        if end != "close":
            self.assertEqual(output, raw.upper())

    @fuzz(0.5)
    @given(st.lists(st.binary(max_size=100), max_size=5))
    def test_upper_udp(self, datagrams):
        """The UDP upper server answers each datagram with its upper-cased copy, to its sender."""
        with LogWatch() as log:
            port = FakeUDPPort(12000, UpperDatagramProtocol(), "127.0.0.1")
            port.startListening()
            for datagram in datagrams:
                port.protocol.datagramReceived(datagram, ("127.0.0.1", 5555))
            log.check(self, "upper")
        self.assertEqual(port.written, [(datagram.upper(), ("127.0.0.1", 5555)) for datagram in datagrams])
