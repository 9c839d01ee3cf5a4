"""
Tests for L{netproxy.message.backend}: the backend server's acks, its handling of
bad input, and the service that listens first and then keeps itself
registered with the reverse proxy.
"""

import hashlib
import json

from twisted.internet import error
from twisted.internet.address import IPv4Address
from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.endpoints import TCP4ClientEndpoint, TCP4ServerEndpoint
from twisted.internet.testing import (
    EventLoggingObserver,
    MemoryReactorClock,
    StringTransportWithDisconnection,
)
from twisted.logger import LogLevel, formatEvent, globalLogPublisher
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase

from netproxy.message.backend import RETRY_POLICY, BackendFactory, BackendService, setup_message
from netproxy.message.codec import encode_message
from netproxy.message.fields import sha1_hex

CLIENT = IPv4Address("TCP", "127.0.0.1", 5555)
IDLE_TIMEOUT = 30.0
SETUP = b'{"type": 1, "id": 100, "privPolyId": "PP_1", "listenport": 124}\n'


def data(payload="hello", **fields):
    """
    :returns: client 50's data message for PP_1, as a dict.
    """
    message = {"type": 0, "srcid": 50, "privPoliId": "PP_1", "payloadsize": len(payload), "payload": payload}
    message.update(fields)
    return message


def ack(payload="hello"):
    """
    :returns: server 100's ack to client 50 for C{payload}, as a dict.
    """
    return {"type": 2, "srcid": 100, "destid": 50, "payloadsize": 40, "payload": sha1_hex(payload)}


def replies(transport):
    """
    :returns: the lines written to C{transport}, decoded.
    """
    return [json.loads(line) for line in transport.value().splitlines()]


def connect(factory, peer=CLIENT):
    """
    Connect a client to C{factory} over a L{StringTransportWithDisconnection}.

    :returns: the protocol and its transport.
    """
    protocol = factory.buildProtocol(peer)
    transport = StringTransportWithDisconnection(peerAddress=peer)
    transport.protocol = protocol
    protocol.makeConnection(transport)
    return protocol, transport


class BackendProtocolTests(SynchronousTestCase):
    """
    L{netproxy.message.backend.BackendProtocol} answers data messages with acks.
    """

    def setUp(self):
        self.reactor = MemoryReactorClock()
        self.factory = BackendFactory(self.reactor, 100, IDLE_TIMEOUT)
        self.protocol, self.transport = connect(self.factory)
        self.events = EventLoggingObserver.createWithCleanup(self, globalLogPublisher)

    def send(self, message):
        """
        Have the client send C{message} as one JSON line.
        """
        self.protocol.dataReceived(json.dumps(message).encode("utf-8") + b"\n")

    def assertRefused(self, raw, error_text):
        """
        Assert that C{raw} gets exactly one type 3 error with C{error_text}
        and that the connection is closed.
        """
        self.protocol.dataReceived(raw)
        self.assertEqual(replies(self.transport), [{"type": 3, "error": error_text, "privPoliId": None}])
        self.assertFalse(self.transport.connected)

    def test_ack(self):
        """A data message is answered with one ack line: SHA-1 hex of the payload, destid the client's srcid."""
        self.send(data())
        self.assertEqual(self.transport.value(), encode_message(ack()))

    def test_sha1_of_utf8(self):
        """The digest is taken over the payload's UTF-8 bytes."""
        self.send(data("h\u00e9llo \u2603"))
        self.assertEqual(replies(self.transport)[0]["payload"],
                         hashlib.sha1("h\u00e9llo \u2603".encode("utf-8")).hexdigest())

    def test_lone_surrogate_logged_writably(self):
        """A payload holding a lone surrogate (JSON \\ud800) is answered, and logged as text a UTF-8 log file can hold."""
        self.protocol.dataReceived(b'{"type": 0, "srcid": 50, "privPoliId": "PP_1", "payload": "a\\ud800b"}')
        self.assertEqual(replies(self.transport)[0]["payload"], sha1_hex("a\ud800b"))
        for event in self.events:
            formatEvent(event).encode("utf-8")

    def test_string_types_copied(self):
        """A client that sent string type and ids gets them back as strings."""
        self.send(data(type="0", srcid="50", payloadsize="5"))
        self.assertEqual(replies(self.transport), [
            {"type": "2", "srcid": "100", "destid": "50", "payloadsize": "40", "payload": sha1_hex("hello")}])

    def test_several_per_connection(self):
        """Several messages on one connection are each answered, in order, and it stays open."""
        for payload in ("a", "b", "c"):
            self.send(data(payload))
        self.assertEqual(replies(self.transport), [ack(p) for p in "abc"])
        self.assertTrue(self.transport.connected)

    def test_split_across_chunks(self):
        """Messages split anywhere across chunks, with no newline, are answered when complete."""
        raw = json.dumps(data("a")).encode("utf-8") + json.dumps(data("b")).encode("utf-8")
        for index in range(len(raw)):
            self.protocol.dataReceived(raw[index:index + 1])
        self.assertEqual(replies(self.transport), [ack("a"), ack("b")])

    def test_log_lines(self):
        """Each message and its answer are logged in the fixed wording the README documents."""
        self.send(data())
        lines = [formatEvent(e) for e in self.events if e["log_level"] == LogLevel.info]
        self.assertEqual(lines, [
            "Received a message from client 50 payload: hello",
            "Sending a response to the client 50 payload: " + sha1_hex("hello"),
        ])

    def test_hostile_payload_escaped(self):
        """A payload and client id with ESC, a newline and non-ASCII are logged as \\xhh, one line each."""
        self.send(data("x\x1b[2J\n\xff", srcid="c\x1b"))
        lines = [formatEvent(e) for e in self.events if e["log_level"] == LogLevel.info]
        self.assertEqual(lines[0], "Received a message from client c\\x1b payload: x\\x1b[2J\\x0a\\xff")
        for line in lines:
            self.assertTrue(line.isascii() and line.isprintable(), line)

    def test_malformed(self):
        """Malformed JSON gets a type 3 error and the connection is closed."""
        self.assertRefused(b"{nope}", "bad message: malformed JSON: Expecting property name enclosed "
                                      "in double quotes at column 2")

    def test_not_an_object(self):
        """A JSON value that is not an object is refused."""
        self.assertRefused(b'"text"', "bad message: expected a JSON object, got '\"'")

    def test_oversized(self):
        """A message over the size limit is refused."""
        self.assertRefused(json.dumps(data("x" * 70000)).encode("utf-8"),
                           "bad message: message larger than 65536 bytes")

    def test_setup_refused(self):
        """A setup message is not for a server and is refused."""
        self.assertRefused(json.dumps(setup_message(1, "PP_1", 2)).encode("utf-8"),
                           "bad message: message type 1 is not sent to a server")

    def test_missing_field(self):
        """A data message without srcid is refused, naming the field."""
        message = data()
        del message["srcid"]
        self.assertRefused(json.dumps(message).encode("utf-8"), "bad message: missing field 'srcid'")

    def test_answered_before_refusal(self):
        """Messages before bad input are answered before the error."""
        self.protocol.dataReceived(encode_message(data()) + b"[]")
        self.assertEqual([r["type"] for r in replies(self.transport)], [2, 3])
        self.assertFalse(self.transport.connected)

    def test_bad_input_logged(self):
        """Bad input is logged as a warning with the peer's address."""
        self.protocol.dataReceived(b"{nope}")
        [event] = [e for e in self.events if e["log_level"] == LogLevel.warn]
        self.assertTrue(formatEvent(event).startswith("bad message from 127.0.0.1:5555: malformed JSON"))

    def test_idle_timeout(self):
        """A connection quiet for the idle timeout is closed; traffic postpones it."""
        self.reactor.advance(IDLE_TIMEOUT - 1)
        self.send(data())
        self.reactor.advance(IDLE_TIMEOUT - 1)
        self.assertTrue(self.transport.connected)
        self.reactor.advance(1)
        self.assertFalse(self.transport.connected)

    def test_connections_tracked(self):
        """The factory knows its open connections."""
        self.assertEqual(self.factory.connections, {self.protocol})
        self.transport.loseConnection()
        self.assertEqual(self.factory.connections, set())


class _FakePort:
    """
    A listening port on C{port}.
    """

    def __init__(self, port):
        self.port = port
        self.listening = True

    def getHost(self):
        return IPv4Address("TCP", "127.0.0.1", self.port)

    def stopListening(self):
        self.listening = False


class _FakeListenEndpoint:
    """
    A server endpoint whose C{listen} returns C{result}.
    """

    def __init__(self, result):
        self.result = result
        self.factories = []

    def listen(self, factory):
        self.factories.append(factory)
        return self.result


class BackendServiceTests(SynchronousTestCase):
    """
    L{BackendService} listens, then keeps itself registered.
    """

    def setUp(self):
        self.reactor = MemoryReactorClock()
        self.events = EventLoggingObserver.createWithCleanup(self, globalLogPublisher)

    def service(self, listen=None, retry_policy=RETRY_POLICY):
        """
        :returns: server 100 of PP_1, listening on C{listen} (port 124 of the
            memory reactor by default) and registering with port 123.
        """
        if listen is None:
            listen = TCP4ServerEndpoint(self.reactor, 124)
        service = BackendService(self.reactor, listen, TCP4ClientEndpoint(self.reactor, "127.0.0.1", 123),
                                 100, "PP_1", 123, retry_policy=retry_policy)
        return service

    def start(self, service):
        """
        Start C{service} as twistd does, and stop it at the end of the test.
        """
        service.privilegedStartService()
        service.startService()
        self.addCleanup(service.stopService)

    def complete(self, index=-1):
        """
        Let the registration connection attempt C{index} succeed.

        :returns: the registration protocol and its transport.
        """
        host, port, factory = self.reactor.tcpClients[index][:3]
        address = IPv4Address("TCP", host, port)
        protocol = factory.buildProtocol(address)
        transport = StringTransportWithDisconnection(peerAddress=address)
        transport.protocol = protocol
        protocol.makeConnection(transport)
        return protocol, transport

    def info_lines(self):
        """
        :returns: the formatted info lines logged by the backend.
        """
        return [formatEvent(e) for e in self.events
                if e["log_level"] == LogLevel.info and e.get("log_namespace", "").startswith("netproxy.message.backend")]

    def test_listens_then_registers(self):
        """The service listens on its port and connects to the reverse proxy's port."""
        self.start(self.service())
        [(port, factory, _, _)] = self.reactor.tcpServers
        self.assertEqual(port, 124)
        self.assertIsInstance(factory, BackendFactory)
        self.assertEqual(factory.server_id, 100)
        self.assertEqual(self.reactor.tcpClients[0][:2], ("127.0.0.1", 123))

    def test_log_lines(self):
        """Start-up logs its four documented lines, in order."""
        self.start(self.service())
        self.assertEqual(self.info_lines(), [
            "Server running with id 100",
            "Server serving privacy policy PP_1",
            "Listening on port 124",
            "Connecting to the reverse proxy on port 123",
        ])

    def test_setup_message(self):
        """The registration connection carries exactly the setup message, as one line, and stays open."""
        self.start(self.service())
        _, transport = self.complete()
        self.assertEqual(transport.value(), SETUP)
        self.assertEqual(encode_message(setup_message(100, "PP_1", 124)), SETUP)
        self.reactor.advance(60)
        self.assertTrue(transport.connected)

    def test_refusal_logged(self):
        """A type 3 error on the registration connection (a refused setup) is logged at error level."""
        self.start(self.service())
        protocol, _ = self.complete()
        protocol.dataReceived(b'{"type": 3, "error": "setup refused: server id 100 is registered from another host", '
                              b'"privPolyId": "PP_1"}\n')
        errors = [formatEvent(e) for e in self.events if e["log_level"] == LogLevel.error]
        self.assertEqual(errors, ["the reverse proxy refused the registration: "
                                  "setup refused: server id 100 is registered from another host"])

    def test_garbage_on_registration_connection(self):
        """Bytes that are not JSON on the registration connection are logged and the connection is closed."""
        self.start(self.service())
        protocol, transport = self.complete()
        protocol.dataReceived(b"\x00garbage}")
        self.assertFalse(transport.connected)
        self.assertEqual(len([e for e in self.events if e["log_level"] == LogLevel.warn]), 1)

    def test_listened_port_announced(self):
        """The setup names the port actually listened on (as for port 0)."""
        self.start(self.service(_FakeListenEndpoint(succeed(_FakePort(4567)))))
        _, transport = self.complete()
        self.assertEqual(json.loads(transport.value())["listenport"], 4567)
        self.assertIn("Listening on port 4567", self.info_lines())

    def test_registers_only_once_listening(self):
        """No registration is attempted before the port is listening."""
        listening = Deferred()
        self.start(self.service(_FakeListenEndpoint(listening)))
        self.assertEqual(self.reactor.tcpClients, [])
        listening.callback(_FakePort(124))
        self.assertEqual(len(self.reactor.tcpClients), 1)

    def test_reconnects_after_loss(self):
        """When the registration connection is lost it is made again after the back-off, and registers again."""
        self.start(self.service(retry_policy=lambda attempt: 2.0))
        _, transport = self.complete()
        transport.loseConnection()
        self.reactor.advance(1.9)
        self.assertEqual(len(self.reactor.tcpClients), 1)
        self.reactor.advance(0.1)
        self.assertEqual(len(self.reactor.tcpClients), 2)
        _, again = self.complete()
        self.assertEqual(again.value(), SETUP)

    def test_default_backoff_is_short(self):
        """With the default policy a lost registration is made again within three seconds."""
        self.start(self.service())
        self.complete()[1].loseConnection()
        self.reactor.advance(3)
        self.assertEqual(len(self.reactor.tcpClients), 2)

    def test_retries_refused(self):
        """A refused registration is tried again after the back-off."""
        self.start(self.service(retry_policy=lambda attempt: 2.0))
        self.reactor.tcpClients[0][2].clientConnectionFailed(None, Failure(error.ConnectionRefusedError()))
        self.reactor.advance(2.0)
        self.assertEqual(len(self.reactor.tcpClients), 2)

    def test_busy_port(self):
        """A port that cannot be listened on stops start-up: privilegedStartService raises."""
        service = self.service(_FakeListenEndpoint(fail(error.CannotListenError("127.0.0.1", 124, "in use"))))
        self.assertRaises(error.CannotListenError, service.privilegedStartService)
        self.assertEqual(self.reactor.tcpClients, [])

    def test_start_without_privileged_start(self):
        """Started on its own (added to a running parent), the service still listens and registers."""
        service = self.service()
        service.startService()
        self.addCleanup(service.stopService)
        self.assertEqual(self.reactor.tcpServers[0][0], 124)
        self.assertEqual(len(self.reactor.tcpClients), 1)

    def test_stop(self):
        """Stopping closes the registration connection, stops listening and does not register again."""
        port = _FakePort(124)
        service = self.service(_FakeListenEndpoint(succeed(port)))
        service.privilegedStartService()
        service.startService()
        _, transport = self.complete()
        self.successResultOf(service.stopService())
        self.assertFalse(transport.connected)
        self.assertFalse(port.listening)
        self.reactor.advance(60)
        self.assertEqual(len(self.reactor.tcpClients), 1)
