"""
Tests for L{netproxy.message.send_client}: reading packet files, completing the
messages, checking the answers, and the report the send client writes while
it talks to a reverse proxy held in memory.
"""

import io
import json

from twisted.internet.address import IPv4Address
from twisted.internet.defer import Deferred
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.testing import (
    MemoryReactorClock,
    StringTransportWithDisconnection,
)
from twisted.test.iosim import ConnectionCompleter
from twisted.trial.unittest import SynchronousTestCase

from netproxy.message.backend import BackendFactory
from netproxy.errors import ClientError
from netproxy.message.codec import encode_message
from netproxy.message.fields import sha1_hex
from netproxy.message.send_client import (
    MessageClient,
    check_answer,
    load_packets,
    prepare,
    send_packets,
)

PACKET = {"privPoliId": "PP_1", "payload": "hello"}
MESSAGE = {"type": 0, "privPoliId": "PP_1", "payload": "hello", "srcid": 50, "payloadsize": 5}
ACK = {"type": 2, "srcid": 100, "destid": 50, "payloadsize": 40, "payload": sha1_hex("hello")}


class LoadPacketsTests(SynchronousTestCase):
    """
    L{load_packets} reads the three packet file layouts.
    """

    def test_one_object(self):
        """A file holding one JSON object is one packet."""
        self.assertEqual(load_packets(json.dumps(PACKET)), [PACKET])

    def test_list(self):
        """A file holding a JSON list of objects is those packets, in order."""
        packets = [PACKET, {"privPolyId": "PP_2", "payload": "x"}]
        self.assertEqual(load_packets(json.dumps(packets, indent=2)), packets)

    def test_one_per_line(self):
        """A file with one object per line (blank lines and CRLF allowed) is those packets."""
        text = json.dumps(PACKET) + "\r\n\n" + json.dumps({"privPoliId": "PP_1", "payload": "b"}) + "\n"
        self.assertEqual(load_packets(text), [PACKET, {"privPoliId": "PP_1", "payload": "b"}])

    def assertBad(self, text, message):
        """
        Assert that C{text} is refused with a L{ClientError} starting with C{message}.
        """
        error = self.assertRaises(ClientError, load_packets, text)
        self.assertTrue(str(error).startswith(message), str(error))

    def test_empty(self):
        """An empty file is refused."""
        self.assertBad("  \n", "packet file must hold a JSON object, a list of them, or one per line")

    def test_not_json(self):
        """A file that is not JSON is refused, with the parser's reason."""
        self.assertBad("payload: hello", "packet file is not JSON: Expecting value")

    def test_bad_line(self):
        """One bad line among good ones is refused."""
        self.assertBad(json.dumps(PACKET) + "\n{oops\n", "packet file is not JSON")

    def test_not_objects(self):
        """Lists of non-objects, empty lists and scalars are refused."""
        for text in ("[1, 2]", "[]", "5", '"text"', json.dumps([PACKET, [PACKET]])):
            self.assertBad(text, "packet file must hold a JSON object, a list of them, or one per line")


class PrepareTests(SynchronousTestCase):
    """
    L{prepare} completes a packet into a data message.
    """

    def test_fills_in(self):
        """srcid comes from the id, type 0 and payloadsize are filled in."""
        self.assertEqual(prepare(PACKET, 50), MESSAGE)

    def test_payloadsize_utf8_bytes(self):
        """payloadsize counts the payload's UTF-8 bytes, not its characters."""
        self.assertEqual(prepare({"privPoliId": "PP_1", "payload": "h\u00e9\u2603"}, 50)["payloadsize"], 6)

    def test_keeps_given(self):
        """A given payloadsize, type and extra fields are kept as they are."""
        packet = dict(PACKET, payloadsize=99, type="0", extra=[1])
        self.assertEqual(prepare(packet, 50), dict(packet, srcid=50))

    def test_id_overrides(self):
        """The client's id replaces any srcid in the file."""
        self.assertEqual(prepare(dict(PACKET, srcid=7), "50")["srcid"], "50")

    def test_packet_unchanged(self):
        """The packet itself is not modified."""
        packet = dict(PACKET)
        prepare(packet, 50)
        self.assertEqual(packet, PACKET)

    def test_no_payload(self):
        """A packet without payload text is refused."""
        for packet in ({"privPoliId": "PP_1"}, {"privPoliId": "PP_1", "payload": 5}):
            self.assertRaises(ClientError, prepare, packet, 50)


class CheckAnswerTests(SynchronousTestCase):
    """
    L{check_answer} accepts the right ack and explains any other answer.
    """

    def test_right_ack(self):
        """The ack for the client carrying the payload's SHA-1 is right."""
        self.assertIsNone(check_answer(MESSAGE, ACK))

    def test_string_types(self):
        """String type and destid are accepted."""
        self.assertIsNone(check_answer(dict(MESSAGE, srcid="50"), dict(ACK, type="2", destid="50")))

    def test_wrong_payload(self):
        """A wrong digest is explained with the expected one."""
        self.assertEqual(check_answer(MESSAGE, dict(ACK, payload="abc")),
                         f"payload 'abc' is not the SHA-1 of what was sent ({sha1_hex('hello')})")

    def test_wrong_destid(self):
        """An ack for another client is explained."""
        self.assertEqual(check_answer(MESSAGE, dict(ACK, destid=51)), "ack is for client 51, not 50")

    def test_error(self):
        """A type 3 error is reported with its text."""
        answer = {"type": 3, "error": "all servers of privacy policy PP_1 are down", "privPoliId": "PP_1"}
        self.assertEqual(check_answer(MESSAGE, answer),
                         "the reverse proxy answered: all servers of privacy policy PP_1 are down")

    def test_other_type(self):
        """An answer of another type is explained."""
        self.assertEqual(check_answer(MESSAGE, dict(ACK, type=0)), "expected an ack (type 2), got type 0")


class MessageClientTests(SynchronousTestCase):
    """
    L{MessageClient} sends messages and hands out the answers in order.
    """

    def setUp(self):
        self.client = MessageClient()
        self.transport = StringTransportWithDisconnection()
        self.transport.protocol = self.client
        self.client.makeConnection(self.transport)

    def test_writes_message(self):
        """A message is written as one JSON line."""
        self.client.send(MESSAGE)
        self.assertEqual(self.transport.value(), encode_message(MESSAGE))

    def test_answer(self):
        """The answer fires the send's Deferred, even when it arrives in pieces."""
        d = self.client.send(MESSAGE)
        raw = encode_message(ACK)
        self.client.dataReceived(raw[:10])
        self.assertNoResult(d)
        self.client.dataReceived(raw[10:])
        self.assertEqual(self.successResultOf(d), ACK)

    def test_in_order(self):
        """Answers arriving together, or before they are asked for, are delivered in order."""
        first = self.client.send(MESSAGE)
        self.client.dataReceived(encode_message({"n": 1}) + encode_message({"n": 2}))
        self.assertEqual(self.successResultOf(first), {"n": 1})
        self.assertEqual(self.successResultOf(self.client.send(MESSAGE)), {"n": 2})

    def test_closed(self):
        """A connection closed before the answer fails the send."""
        d = self.client.send(MESSAGE)
        self.transport.loseConnection()
        failure = self.failureResultOf(d, ClientError)
        self.assertEqual(str(failure.value), "the reverse proxy closed the connection")

    def test_closed_after_answer(self):
        """An answer received before the close is still delivered."""
        self.client.dataReceived(encode_message(ACK))
        self.transport.loseConnection()
        self.assertEqual(self.successResultOf(self.client.send(MESSAGE)), ACK)
        self.failureResultOf(self.client.send(MESSAGE), ClientError)

    def test_malformed(self):
        """A malformed answer fails the send and closes the connection."""
        d = self.client.send(MESSAGE)
        self.client.dataReceived(b"DONE")
        failure = self.failureResultOf(d, ClientError)
        self.assertEqual(str(failure.value), "malformed answer: expected a JSON object, got 'D'")
        self.assertFalse(self.transport.connected)


class _Scripted(Protocol):
    """
    A fake reverse proxy answering each line with the next of its factory's
    C{answers} (raw bytes), or closing when they run out.
    """

    def dataReceived(self, data):
        for line in data.splitlines():
            self.factory.received.append(json.loads(line))
            if self.factory.answers:
                self.transport.write(self.factory.answers.pop(0))
            else:
                self.transport.loseConnection()


class SendPacketsTests(SynchronousTestCase):
    """
    L{send_packets} talks to a reverse proxy on port 123 of a memory reactor.
    """

    def setUp(self):
        self.reactor = MemoryReactorClock()
        self.out = io.StringIO()

    def call(self, packets=(PACKET,), timeout=5):
        """
        :returns: the L{Deferred} of sending C{packets} as client 50.
        """
        return Deferred.fromCoroutine(
            send_packets(self.reactor, ("127.0.0.1", 123), 50, list(packets), timeout, self.out))

    def scripted(self, *answers):
        """
        Listen on port 123 with a L{_Scripted} fake proxy.

        :returns: its factory.
        """
        factory = Factory.forProtocol(_Scripted)
        factory.answers = list(answers)
        factory.received = []
        self.reactor.listenTCP(123, factory)
        return factory

    def run_over_iosim(self, packets=(PACKET,)):
        """
        Send C{packets} over an in-memory connection to the listener.

        :returns: the result of L{send_packets} and the connection's pump.
        """
        d = self.call(packets)
        pump = ConnectionCompleter(self.reactor).succeedOnce()
        pump.flush()
        return self.successResultOf(d), pump

    def test_report_ok(self):
        """Against a server answering acks, each message is reported as sent, answered and OK."""
        self.reactor.listenTCP(123, BackendFactory(self.reactor, 100))
        packets = [PACKET, {"privPolyId": "PP_2", "payload": "b"}]
        result, pump = self.run_over_iosim(packets)
        self.assertIs(result, True)
        second = {"type": 0, "privPolyId": "PP_2", "payload": "b", "srcid": 50, "payloadsize": 1}
        second_ack = {"type": 2, "srcid": 100, "destid": 50, "payloadsize": 40, "payload": sha1_hex("b")}
        self.assertEqual(self.out.getvalue(), (
            f"Sending message {json.dumps(MESSAGE)} to privacy policy PP_1 through reverse proxy running on port 123\n"
            f"Receiving a response from the server 100 payload: {json.dumps(ACK)}\n"
            "transmission OK\n"
            f"Sending message {json.dumps(second)} to privacy policy PP_2 through reverse proxy running on port 123\n"
            f"Receiving a response from the server 100 payload: {json.dumps(second_ack)}\n"
            "transmission OK\n"
        ))
        self.assertTrue(pump.clientIO.disconnecting)

    def test_wrong_answer(self):
        """A wrong answer is reported FAILED with the reason, the rest still go, and the result is False."""
        factory = self.scripted(encode_message(dict(ACK, payload="bad")), encode_message(ACK))
        result, _ = self.run_over_iosim([PACKET, PACKET])
        self.assertIs(result, False)
        lines = self.out.getvalue().splitlines()
        self.assertEqual(lines[2], "transmission FAILED: payload 'bad' is not the SHA-1 of what was sent "
                                   f"({sha1_hex('hello')})")
        self.assertEqual(lines[5], "transmission OK")
        self.assertEqual(factory.received, [MESSAGE, MESSAGE])

    def test_error_answer(self):
        """A type 3 answer is reported FAILED with the proxy's error text."""
        error = {"type": 3, "error": "no server registered for privacy policy PP_1", "privPoliId": "PP_1"}
        self.scripted(encode_message(error))
        result, _ = self.run_over_iosim()
        self.assertIs(result, False)
        lines = self.out.getvalue().splitlines()
        self.assertEqual(lines[-2], f"Receiving an error from the reverse proxy: {json.dumps(error)}")
        self.assertEqual(lines[-1],
                         "transmission FAILED: the reverse proxy answered: no server registered for "
                         "privacy policy PP_1")

    def test_closed(self):
        """A proxy that closes without answering is reported FAILED and the result is False."""
        self.scripted()
        result, _ = self.run_over_iosim([PACKET, PACKET])
        self.assertIs(result, False)
        self.assertEqual(self.out.getvalue().splitlines()[1:],
                         ["transmission FAILED: the reverse proxy closed the connection"])

    def test_answer_already_there(self):
        """An answer that arrived before its message was sent (two in one chunk) is used, not lost."""
        self.scripted(encode_message(ACK) + encode_message(ACK))
        result, _ = self.run_over_iosim([PACKET, PACKET])
        self.assertIs(result, True)
        self.assertEqual(self.out.getvalue().splitlines().count("transmission OK"), 2)

    def test_no_answer(self):
        """A proxy that never answers is reported FAILED after the timeout, and the connection is closed."""
        self.reactor.listenTCP(123, Factory.forProtocol(Protocol))
        d = self.call(timeout=5)
        pump = ConnectionCompleter(self.reactor).succeedOnce()
        self.reactor.advance(4.9)
        self.assertNoResult(d)
        self.reactor.advance(0.1)
        self.assertIs(self.successResultOf(d), False)
        self.assertEqual(self.out.getvalue().splitlines()[-1], "transmission FAILED: no answer within 5 seconds")
        self.assertTrue(pump.clientIO.disconnecting)

    def test_refused(self):
        """An unreachable proxy is a ClientError naming it, and nothing is reported as sent."""
        d = self.call()
        ConnectionCompleter(self.reactor).failOnce()
        self.reactor.advance(1)
        failure = self.failureResultOf(d, ClientError)
        self.assertEqual(str(failure.value), "could not connect to 127.0.0.1:123: connection refused")
        self.assertEqual(self.out.getvalue(), "")

    def test_bad_packet(self):
        """A packet without payload is a ClientError before any connection is made."""
        self.failureResultOf(self.call([{"privPoliId": "PP_1"}]), ClientError)
        self.assertEqual(self.reactor.tcpClients, [])

    def test_over_string_transport(self):
        """The bytes on the wire are the completed messages, one JSON line each, sent one answer at a time."""
        d = self.call([PACKET, dict(PACKET, payload="b")])
        host, port, factory = self.reactor.tcpClients[0][:3]
        protocol = factory.buildProtocol(IPv4Address("TCP", host, port))
        transport = StringTransportWithDisconnection()
        transport.protocol = protocol
        protocol.makeConnection(transport)
        self.assertEqual(transport.value(), encode_message(MESSAGE))
        transport.clear()
        protocol.dataReceived(encode_message(ACK))
        self.assertEqual(json.loads(transport.value())["payload"], "b")
        protocol.dataReceived(encode_message(dict(ACK, payload=sha1_hex("b"))))
        self.assertIs(self.successResultOf(d), True)
        self.assertFalse(transport.connected)
