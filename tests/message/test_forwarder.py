"""
Tests for L{netproxy.message.forwarder}: one data message sent to a server of its
privacy policy over a connection of its own, the answer read back byte for
byte, and failover to the next server when one gives no usable answer.
"""

import json

from twisted.internet import error
from twisted.internet.defer import CancelledError, Deferred
from twisted.python.failure import Failure
from twisted.internet.testing import (
    EventLoggingObserver,
    MemoryReactorClock,
    StringTransportWithDisconnection,
)
from twisted.logger import LogLevel, formatEvent, globalLogPublisher
from twisted.trial.unittest import SynchronousTestCase

from netproxy.errors import FramingError
from netproxy.message import forwarder as forwarder_module
from netproxy.message.forwarder import DEFAULT_MAX_TRIES, Forwarder, ServerFailed, _ServerConnection
from netproxy.message.codec import encode_message
from netproxy.message.fields import read_data, sha1_hex
from netproxy.message.registry import ServerRegistry
from netproxy.testing import complete_connection, connect, fail_connection

CONNECT_TIMEOUT = 3.0
ANSWER_TIMEOUT = 10.0
MESSAGE = {"type": 0, "srcid": 50, "privPoliId": "PP_1", "payloadsize": 5, "payload": "hello"}
ANSWER = (b'{"type":2,  "srcid":100,"destid":50,"payloadsize":40,"payload":"'
          + sha1_hex("hello").encode("ascii") + b'"}')


def discard(d):
    """
    Cancel C{d} if it is still waiting, and consume its cancellation.
    """
    d.cancel()
    d.addErrback(lambda failure: failure.trap(CancelledError))


class ServerConnectionTests(SynchronousTestCase):
    """
    L{_ServerConnection} writes the request and reads the first answer.
    """

    def setUp(self):
        self.protocol = _ServerConnection(b'{"a": 1}\n', 1024)
        self.transport = StringTransportWithDisconnection()
        self.transport.protocol = self.protocol
        self.protocol.makeConnection(self.transport)

    def test_writes_request(self):
        """The request bytes are written as soon as the connection is made."""
        self.assertEqual(self.transport.value(), b'{"a": 1}\n')

    def test_answer_split_across_chunks(self):
        """An answer arriving a byte at a time fires with its exact bytes and the decoded object."""
        raw = b'{ "type" : 2, "payload": "x{}" }'
        for index in range(len(raw)):
            self.assertNoResult(self.protocol.answer)
            self.protocol.dataReceived(raw[index:index + 1])
        self.assertEqual(self.successResultOf(self.protocol.answer), (raw, {"type": 2, "payload": "x{}"}))

    def test_only_first_answer(self):
        """Anything after the first answer is ignored."""
        self.protocol.dataReceived(b'{"n": 1}\n{"n": 2}\n')
        self.protocol.dataReceived(b"not json")
        self.assertEqual(self.successResultOf(self.protocol.answer), (b'{"n": 1}', {"n": 1}))

    def test_malformed(self):
        """A malformed answer fails with ServerFailed naming the problem."""
        self.protocol.dataReceived(b'{"type": 2,,}')
        failure = self.failureResultOf(self.protocol.answer, ServerFailed)
        self.assertTrue(str(failure.value).startswith("malformed answer: malformed JSON"), failure.value)

    def test_oversized(self):
        """An answer larger than the limit fails with ServerFailed."""
        self.protocol.dataReceived(b'{"payload": "' + b"x" * 2000 + b'"}')
        failure = self.failureResultOf(self.protocol.answer, ServerFailed)
        self.assertEqual(str(failure.value), "malformed answer: message larger than 1024 bytes")

    def test_closed_without_answer(self):
        """A connection closed before any answer fails with ServerFailed."""
        self.protocol.dataReceived(b'{"type": ')
        self.transport.loseConnection()
        failure = self.failureResultOf(self.protocol.answer, ServerFailed)
        self.assertEqual(str(failure.value), "closed the connection without answering")

    def test_closed_after_answer(self):
        """Closing after the answer leaves the answer as it was."""
        self.protocol.dataReceived(b'{"n": 1}')
        self.transport.loseConnection()
        self.assertEqual(self.successResultOf(self.protocol.answer)[1], {"n": 1})

    def test_framing_error_type(self):
        """ServerFailed is not a FramingError, so it is never mistaken for bad client input."""
        self.assertFalse(issubclass(ServerFailed, FramingError))


class ForwarderTestCase(SynchronousTestCase):
    """
    A forwarder over a registry with servers 100 and 101 of PP_1, on a
    L{MemoryReactorClock}, and a log observer.
    """

    def setUp(self):
        self.reactor = MemoryReactorClock()
        self.registry = ServerRegistry(self.reactor)
        self.first = self.registry.register(100, "PP_1", "127.0.0.1", 124)
        self.second = self.registry.register(101, "PP_1", "127.0.0.2", 125)
        self.forwarder = Forwarder(self.reactor, self.registry, CONNECT_TIMEOUT, ANSWER_TIMEOUT, 64 * 1024)
        self.events = EventLoggingObserver.createWithCleanup(self, globalLogPublisher)

    def forward(self, message=MESSAGE, raw=None):
        """
        :returns: the L{Deferred} of forwarding C{message}, decoded from C{raw}.
        """
        d = Deferred.fromCoroutine(self.forwarder.forward(message, read_data(message), raw))
        # Leave nothing in flight for the garbage collector to close later.
        self.addCleanup(discard, d)
        return d

    def lines(self, level=None):
        """
        :returns: the formatted log lines of the forwarder, at C{level} if given.
        """
        return [formatEvent(event) for event in self.events
                if event.get("log_namespace", "").startswith("netproxy.message.forwarder")
                and (level is None or event["log_level"] == level)]

    def assertNoErrorsLogged(self):
        """
        Assert that nothing was logged at error level or above, and no failure.
        """
        bad = [e for e in self.events if e["log_level"] in (LogLevel.error, LogLevel.critical)]
        self.assertEqual(bad, [])
        self.assertEqual(self.flushLoggedErrors(), [])


class ForwardTests(ForwarderTestCase):
    """
    A message a server answers.
    """

    def test_connects_to_registered_address(self):
        """The forwarder connects to the server's host and listen port with the connect timeout."""
        self.forward()
        [(host, port, _, timeout, _)] = self.reactor.tcpClients
        self.assertEqual((host, port, timeout), ("127.0.0.1", 124, CONNECT_TIMEOUT))

    def test_ipv6_host(self):
        """A server registered from an IPv6 address is connected to over IPv6."""
        self.registry.remove(self.first)
        self.registry.remove(self.second)
        self.registry.register(100, "PP_1", "::1", 124)
        self.forward()
        self.assertEqual(self.reactor.tcpClients[0][:2], ("::1", 124))

    def test_sends_every_field(self):
        """The message goes out as one JSON line with every field the client sent."""
        message = dict(MESSAGE, extra={"nested": [1, 2]}, srcid="50")
        self.forward(message)
        _, transport = complete_connection(self.reactor)
        self.assertEqual(transport.value(), encode_message(message))

    def test_sends_raw_as_it_came(self):
        """The client's bytes, when given and on one line, go out as they came, with a newline."""
        raw = b'{"payload":"hello", "type":0,"srcid":50,  "privPoliId":"PP_1","payloadsize":5,"x":[1.50]}'
        self.forward(json.loads(raw), raw)
        _, transport = complete_connection(self.reactor)
        self.assertEqual(transport.value(), raw + b"\n")

    def test_sends_raw_on_several_lines_encoded(self):
        """A client's message written over several lines goes out encoded, on one line."""
        raw = json.dumps(MESSAGE, indent=1).encode()
        self.forward(MESSAGE, raw)
        _, transport = complete_connection(self.reactor)
        self.assertEqual(transport.value(), encode_message(MESSAGE))

    def test_no_timer_left(self):
        """Once the answer is in, no timer of the exchange is left."""
        self.forward()
        complete_connection(self.reactor)[0].dataReceived(ANSWER)
        self.assertEqual(self.reactor.getDelayedCalls(), [])

    def test_answer_exact(self):
        """The result is the answer's exact bytes and its decoded form."""
        d = self.forward()
        protocol, _ = complete_connection(self.reactor)
        self.assertNoResult(d)
        protocol.dataReceived(ANSWER + b"\r\n")
        self.assertEqual(self.successResultOf(d), (ANSWER, json.loads(ANSWER)))

    def test_closes_after_answer(self):
        """The connection to the server is closed once the answer is read."""
        self.forward()
        protocol, transport = complete_connection(self.reactor)
        self.assertTrue(transport.connected)
        protocol.dataReceived(ANSWER)
        self.assertFalse(transport.connected)

    def test_new_connection_per_message(self):
        """Each message gets its own connection, in round-robin order."""
        for _ in range(3):
            self.forward()
            complete_connection(self.reactor)[0].dataReceived(ANSWER)
        self.assertEqual([client[1] for client in self.reactor.tcpClients], [124, 125, 124])

    def test_log_lines(self):
        """Forwarding and the answer are logged in the fixed wording the README documents."""
        self.forward()
        complete_connection(self.reactor)[0].dataReceived(ANSWER)
        self.assertEqual(self.lines(LogLevel.info), [
            "Forwarding a data message to server id 100 payload: hello",
            "Received a data message from server id 100 payload: " + sha1_hex("hello"),
        ])

    def test_marks_up(self):
        """An answering server counts the message and has no failures."""
        self.registry.mark_down(self.first)
        self.reactor.advance(1)
        self.forward()
        complete_connection(self.reactor)[0].dataReceived(ANSWER)
        self.assertEqual((self.first.failures, self.first.retry_at, self.first.forwarded), (0, None, 1))


class FailoverTests(ForwarderTestCase):
    """
    A server that gives no usable answer is marked down and the next one is tried.
    """

    def assertFailedOver(self, d):
        """
        Assert that the message went on to server 101, which answers, and
        that server 100 is marked down.
        """
        self.assertEqual(self.reactor.tcpClients[-1][:2], ("127.0.0.2", 125))
        complete_connection(self.reactor)[0].dataReceived(ANSWER)
        self.assertEqual(self.successResultOf(d)[0], ANSWER)
        self.assertEqual(self.first.failures, 1)
        self.assertEqual(self.first.retry_at, self.reactor.seconds() + 1.0)
        self.assertIsNone(self.second.retry_at)

    def test_refused(self):
        """A refused connection fails over."""
        d = self.forward()
        fail_connection(self.reactor, error.ConnectionRefusedError())
        self.assertFailedOver(d)
        self.assertIn("server id 100 at 127.0.0.1:124 failed: connection refused; marked down",
                      self.lines(LogLevel.warn))

    def test_connect_timeout(self):
        """A connection attempt that times out fails over."""
        d = self.forward()
        fail_connection(self.reactor, error.TimeoutError())
        self.assertFailedOver(d)
        self.assertIn("server id 100 at 127.0.0.1:124 failed: timed out; marked down", self.lines(LogLevel.warn))

    def test_answer_timeout(self):
        """A server that accepts but does not answer within the answer timeout fails over, and is disconnected."""
        d = self.forward()
        _, transport = complete_connection(self.reactor)
        self.reactor.advance(ANSWER_TIMEOUT - 0.1)
        self.assertEqual(len(self.reactor.tcpClients), 1)
        self.reactor.advance(0.1)
        self.assertFalse(transport.connected)
        self.assertFailedOver(d)

    def test_closed_without_answer(self):
        """A server that closes without answering fails over."""
        d = self.forward()
        _, transport = complete_connection(self.reactor)
        transport.loseConnection()
        self.assertFailedOver(d)

    def test_malformed_answer(self):
        """A malformed answer fails over, and the server is disconnected."""
        d = self.forward()
        protocol, transport = complete_connection(self.reactor)
        protocol.dataReceived(b"{nope}")
        self.assertFalse(transport.connected)
        self.assertFailedOver(d)

    def test_all_down(self):
        """When every server fails the result is a type 3 error for the client."""
        d = self.forward()
        fail_connection(self.reactor, error.ConnectionRefusedError())
        fail_connection(self.reactor, error.ConnectionRefusedError())
        self.assertEqual(self.successResultOf(d), (None, {
            "type": 3, "error": "all servers of privacy policy PP_1 are down", "privPoliId": "PP_1"}))
        self.assertIn("all servers of privacy policy PP_1 are down", self.lines(LogLevel.error))

    def test_no_server(self):
        """A policy nobody serves is a type 3 error at once, with no connection attempt."""
        message = {"type": "0", "srcid": 50, "privPolyId": "PP_9", "payload": "x"}
        self.assertEqual(self.successResultOf(self.forward(message)), (None, {
            "type": "3", "error": "no server registered for privacy policy PP_9", "privPolyId": "PP_9"}))
        self.assertEqual(self.reactor.tcpClients, [])


class BoundedFailoverTests(ForwarderTestCase):
    """
    However many servers a policy has, a message tries at most C{max_tries}
    of them: five black holes that accept and never answer.
    """

    def setUp(self):
        super().setUp()
        for server_id in range(102, 105):
            self.registry.register(server_id, "PP_1", "127.0.0.1", server_id + 1000)

    def test_default(self):
        """By default a message tries at most 3 servers."""
        self.assertEqual((DEFAULT_MAX_TRIES, self.forwarder.max_tries), (3, 3))

    def test_black_holes(self):
        """Against five black holes, the client gets a type 3 error after three answer timeouts and three connections."""
        d = self.forward()
        for attempt in range(3):
            self.assertEqual(len(self.reactor.tcpClients), attempt + 1)
            complete_connection(self.reactor)
            self.assertNoResult(d)
            self.reactor.advance(ANSWER_TIMEOUT)
        self.assertEqual(self.successResultOf(d), (None, {
            "type": 3, "error": "3 servers of privacy policy PP_1 tried, none answered", "privPoliId": "PP_1"}))
        self.assertEqual(self.reactor.seconds(), 3 * ANSWER_TIMEOUT)
        self.assertEqual(len(self.reactor.tcpClients), 3)
        self.assertEqual(self.lines(LogLevel.error), [
            "no answer from 3 of the 5 servers of privacy policy PP_1 tried: giving up (--max-tries 3)"])
        self.assertEqual((self.forwarder.failovers, self.forwarder.unanswered), (2, 1))

    def test_worst_case(self):
        """The longest a message can take is max_tries times the connect timeout and the answer timeout."""
        d = self.forward()
        for attempt in range(3):
            self.reactor.advance(CONNECT_TIMEOUT - 0.01)
            complete_connection(self.reactor)
            self.reactor.advance(ANSWER_TIMEOUT)
        self.assertEqual(self.successResultOf(d)[1]["type"], 3)
        self.assertAlmostEqual(self.reactor.seconds(), 3 * (CONNECT_TIMEOUT - 0.01 + ANSWER_TIMEOUT))
        self.assertEqual(self.reactor.getDelayedCalls(), [])

    def test_next_message_tries_the_others(self):
        """The servers left untried come first for the next message, the failed ones being down."""
        d = self.forward()
        for _ in range(3):
            fail_connection(self.reactor, error.ConnectionRefusedError())
        self.assertEqual(self.successResultOf(d)[1]["type"], 3)
        self.forward()
        self.assertEqual([client[1] for client in self.reactor.tcpClients[3:]], [1103])

    def test_fewer_servers_than_tries(self):
        """When every server of the policy was tried, the error says they are all down."""
        forwarder = Forwarder(self.reactor, self.registry, CONNECT_TIMEOUT, ANSWER_TIMEOUT, 64 * 1024, max_tries=9)
        d = Deferred.fromCoroutine(forwarder.forward(MESSAGE, read_data(MESSAGE)))
        for _ in range(5):
            fail_connection(self.reactor, error.ConnectionRefusedError())
        self.assertEqual(self.successResultOf(d)[1]["error"], "all servers of privacy policy PP_1 are down")

    def test_one_try(self):
        """With max_tries 1 a message never fails over."""
        forwarder = Forwarder(self.reactor, self.registry, CONNECT_TIMEOUT, ANSWER_TIMEOUT, 64 * 1024, max_tries=1)
        d = Deferred.fromCoroutine(forwarder.forward(MESSAGE, read_data(MESSAGE)))
        fail_connection(self.reactor, error.ConnectionRefusedError())
        self.assertEqual(self.successResultOf(d)[1]["error"], "1 server of privacy policy PP_1 tried, none answered")
        self.assertEqual(len(self.reactor.tcpClients), 1)


class ProgrammingErrorTests(ForwarderTestCase):
    """
    An error no server or network can cause is a bug: it is not taken for a
    server that is down.
    """

    def test_not_failed_over(self):
        """A programming error fails the forward as it is, marks nobody down and tries no other server."""
        d = self.forward()
        fail_connection(self.reactor, ZeroDivisionError("a bug"))
        self.failureResultOf(d, ZeroDivisionError)
        self.assertEqual(len(self.reactor.tcpClients), 1)
        self.assertEqual([s.retry_at for s in self.registry.servers()], [None, None])
        self.assertEqual(self.lines(LogLevel.warn), [])
        self.assertEqual(self.forwarder.failovers, 0)


class CancelTests(ForwarderTestCase):
    """
    Cancelling a forward (the client left) stops it without blaming the server.
    """

    def test_while_connecting(self):
        """Cancelling during the connection attempt stops it, tries no other server and marks nobody down."""
        d = self.forward()
        d.cancel()
        self.failureResultOf(d, CancelledError)
        self.assertTrue(self.reactor.connectors[0].stoppedConnecting)
        self.assertEqual(len(self.reactor.tcpClients), 1)
        self.assertEqual([s.retry_at for s in self.registry.servers()], [None, None])
        self.assertEqual(self.lines(LogLevel.warn), [])
        self.assertNoErrorsLogged()

    def test_while_connecting_reactor_reports_failure(self):
        """The failure a real reactor reports for the attempt it stopped is not taken for the server's."""
        d = self.forward()
        d.cancel()
        fail_connection(self.reactor, error.UserError())
        self.failureResultOf(d, CancelledError)
        self.assertEqual([s.retry_at for s in self.registry.servers()], [None, None])
        self.assertEqual(len(self.reactor.tcpClients), 1)
        self.assertNoErrorsLogged()

    def test_while_waiting_for_answer(self):
        """Cancelling while waiting for the answer closes the server connection and marks nobody down."""
        d = self.forward()
        _, transport = complete_connection(self.reactor)
        d.cancel()
        self.failureResultOf(d, CancelledError)
        self.assertFalse(transport.connected)
        self.assertEqual(len(self.reactor.tcpClients), 1)
        self.assertIsNone(self.first.retry_at)
        self.assertEqual(self.reactor.getDelayedCalls(), [])
        self.assertNoErrorsLogged()


class LaterCandidatesTests(SynchronousTestCase):
    """
    A registry whose candidates come later (one shared through Redis).
    """

    def test_waits_for_candidates(self):
        """The forward waits for the registry's candidates, then connects to the first of them."""
        reactor = MemoryReactorClock()
        table = ServerRegistry(reactor)
        table.register(100, "PP_1", "127.0.0.1", 124)
        later = Deferred()

        class Later:
            def candidates(self, policy):
                return later.addCallback(lambda _: table.candidates(policy))

            def __getattr__(self, name):
                return getattr(table, name)

        forwarder = Forwarder(reactor, Later(), CONNECT_TIMEOUT, ANSWER_TIMEOUT, 1024)
        forwarding = Deferred.fromCoroutine(forwarder.forward(MESSAGE, read_data(MESSAGE)))
        self.assertEqual(reactor.tcpClients, [])
        later.callback(None)
        self.assertEqual(reactor.tcpClients[0][1], 124)
        complete_connection(reactor)[0].dataReceived(ANSWER)
        raw, answer = self.successResultOf(forwarding)
        self.assertEqual(raw, ANSWER)


class FakeEndpoint:
    """
    An endpoint whose connection attempts the test completes or fails.

    :ivar attempts: C{(factory, Deferred)} for each attempt.
    :ivar cancelled: how many attempts were cancelled.
    """

    def __init__(self):
        self.attempts = []
        self.cancelled = 0

    def connect(self, factory):
        d = Deferred(self.cancel)
        self.attempts.append((factory, d))
        return d

    def cancel(self, d):
        # As Twisted's endpoints fail a cancelled attempt.
        self.cancelled += 1
        d.errback(error.ConnectingCancelledError(None))


class HostNameTests(ForwarderTestCase):
    """
    A server registered under a name, not an address, is dialled through
    an endpoint (which resolves it), with the same outcomes.
    """

    def setUp(self):
        super().setUp()
        self.registry.remove(self.first)
        self.registry.remove(self.second)
        self.server = self.registry.register(100, "PP_1", "backend.test", 124)
        self.endpoint = FakeEndpoint()
        self.asked = []

        def endpoint_for(reactor, host, port, timeout):
            self.asked.append((host, port, timeout))
            return self.endpoint

        self.patch(forwarder_module, "endpoint_for", endpoint_for)

    def test_answer(self):
        """The endpoint for the name and port, with the connect timeout, is used, and the answer comes back."""
        d = self.forward()
        self.assertEqual((self.asked, self.reactor.tcpClients), ([("backend.test", 124, CONNECT_TIMEOUT)], []))
        [(factory, connecting)] = self.endpoint.attempts
        protocol, transport = connect(factory, None)
        connecting.callback(protocol)
        self.assertEqual(transport.value(), encode_message(MESSAGE))
        protocol.dataReceived(ANSWER)
        self.assertEqual(self.successResultOf(d), (ANSWER, json.loads(ANSWER)))
        self.assertFalse(transport.connected)

    def test_not_found(self):
        """A name that does not resolve marks the server down, as a refusal would."""
        d = self.forward()
        self.endpoint.attempts[0][1].errback(error.DNSLookupError("backend.test"))
        self.assertEqual(self.successResultOf(d)[1]["error"], "all servers of privacy policy PP_1 are down")
        self.assertIn("server id 100 at backend.test:124 failed: host not found; marked down",
                      self.lines(LogLevel.warn))

    def test_cancelled(self):
        """Cancelling while the endpoint connects cancels the attempt, without blaming the server."""
        d = self.forward()
        d.cancel()
        self.failureResultOf(d, CancelledError)
        self.assertEqual(self.endpoint.cancelled, 1)
        self.assertIsNone(self.server.retry_at)
        self.assertNoErrorsLogged()
