"""
Tests for L{netproxy.message.relay_client}: the request a relay client sends, and
when it takes the relay's unframed reply as complete.
"""

import json
import random
import re

from twisted.internet.defer import Deferred
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.task import Clock
from twisted.internet.testing import (
    MemoryReactorClock,
    StringTransportWithDisconnection,
)
from twisted.test.iosim import ConnectionCompleter
from twisted.trial.unittest import SynchronousTestCase

from netproxy.errors import ClientError
from netproxy.message.relay_client import (
    MAX_REPLY,
    RelayClient,
    random_word,
    relay_request,
    send_relay_request,
)


class RandomWordTests(SynchronousTestCase):
    """
    L{random_word} makes the default message text.
    """

    def test_four_lowercase_letters(self):
        """A random word is four lower-case ASCII letters."""
        rng = random.Random(1)
        for _ in range(200):
            self.assertRegex(random_word(rng), r"\A[a-z]{4}\Z")

    def test_uses_given_generator(self):
        """The word comes from the given generator, so equal seeds give equal words."""
        self.assertEqual(random_word(random.Random(7)), random_word(random.Random(7)))

    def test_default_generator(self):
        """Without a generator the module's random one is used."""
        self.assertTrue(re.fullmatch(r"[a-z]{4}", random_word()))


class RelayRequestTests(SynchronousTestCase):
    """
    L{relay_request} writes one JSON object on one line.
    """

    def test_one_json_line(self):
        """The request is one JSON object followed by a single newline."""
        request = relay_request("127.0.0.1", 8888, "tgmr")
        self.assertTrue(request.endswith(b"\n"))
        self.assertNotIn(b"\n", request[:-1])
        self.assertEqual(
            json.loads(request),
            {"server_ip": "127.0.0.1", "server_port": 8888, "message": "tgmr"},
        )

    def test_port_is_number(self):
        """The destination port is a JSON number, not a string."""
        self.assertIs(type(json.loads(relay_request("127.0.0.1", 8888, "tgmr"))["server_port"]), int)

    def test_utf8(self):
        """A non-ASCII message is sent as UTF-8 JSON."""
        request = relay_request("::1", 7, "héllo\nwörld")
        self.assertEqual(json.loads(request.decode("utf-8"))["message"], "héllo\nwörld")
        self.assertEqual(request.count(b"\n"), 1)


class RelayClientTests(SynchronousTestCase):
    """
    L{RelayClient} takes the reply as complete when the relay falls quiet or closes.
    """

    def setUp(self):
        self.clock = Clock()
        self.client = RelayClient(b'{"message": "tgmr"}\n', self.clock, 0.5)
        self.transport = StringTransportWithDisconnection()
        self.transport.protocol = self.client
        self.client.makeConnection(self.transport)

    def test_sends_request(self):
        """The request bytes are written as soon as the connection is made."""
        self.assertEqual(self.transport.value(), b'{"message": "tgmr"}\n')

    def test_waits_for_first_bytes(self):
        """Before any reply byte, no quiet period runs: the caller's timeout applies."""
        self.clock.advance(100)
        self.assertNoResult(self.client.reply)
        self.assertTrue(self.transport.connected)

    def test_reply_after_quiet(self):
        """The reply fires once nothing more arrived for the quiet period, and the client closes."""
        self.client.dataReceived(b"DONE")
        self.clock.advance(0.4)
        self.assertNoResult(self.client.reply)
        self.clock.advance(0.1)
        self.assertEqual(self.successResultOf(self.client.reply), b"DONE")
        self.assertFalse(self.transport.connected)

    def test_more_data_restarts_quiet(self):
        """Each chunk restarts the quiet period and all chunks make the reply."""
        self.client.dataReceived(b"DO")
        self.clock.advance(0.4)
        self.client.dataReceived(b"NE")
        self.clock.advance(0.4)
        self.assertNoResult(self.client.reply)
        self.clock.advance(0.1)
        self.assertEqual(self.successResultOf(self.client.reply), b"DONE")

    def test_reply_on_close(self):
        """A relay that closes ends the reply at once, leaving no timer."""
        self.client.dataReceived(b"Error, not allowed address")
        self.transport.loseConnection()
        self.assertEqual(self.successResultOf(self.client.reply), b"Error, not allowed address")
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_close_without_reply(self):
        """A relay that closes without answering gives an empty reply."""
        self.transport.loseConnection()
        self.assertEqual(self.successResultOf(self.client.reply), b"")

    def test_reply_cap(self):
        """A reply larger than MAX_REPLY ends at once and the connection is closed."""
        self.client.dataReceived(b"x" * MAX_REPLY)
        self.assertNoResult(self.client.reply)
        self.client.dataReceived(b"y")
        reply = self.successResultOf(self.client.reply)
        self.assertEqual(len(reply), MAX_REPLY + 1)
        self.assertFalse(self.transport.connected)
        self.assertEqual(self.clock.getDelayedCalls(), [])


class _FakeRelay(Protocol):
    """
    Records the request and answers C{DONE}, keeping the connection open as
    the relay does.
    """

    requests = None

    def dataReceived(self, data):
        self.factory.requests.append(data)
        self.transport.write(b"DONE")


class SendRelayRequestTests(SynchronousTestCase):
    """
    L{send_relay_request} sends one request and returns the reply or a L{ClientError}.
    """

    def setUp(self):
        self.reactor = MemoryReactorClock()

    def call(self, timeout=10):
        return Deferred.fromCoroutine(
            send_relay_request(self.reactor, ("127.0.0.1", 6000), ("127.0.0.1", 8888), "tgmr", timeout)
        )

    def test_reply(self):
        """The request reaches the relay and its reply is returned after the quiet period."""
        factory = Factory.forProtocol(_FakeRelay)
        factory.requests = []
        self.reactor.listenTCP(6000, factory)
        d = self.call()
        pump = ConnectionCompleter(self.reactor).succeedOnce()
        pump.flush()
        self.assertEqual(
            [json.loads(r) for r in factory.requests],
            [{"server_ip": "127.0.0.1", "server_port": 8888, "message": "tgmr"}],
        )
        self.assertNoResult(d)
        self.reactor.advance(0.5)
        self.assertEqual(self.successResultOf(d), b"DONE")
        self.assertTrue(pump.clientIO.disconnecting)

    def test_refused(self):
        """An unreachable relay is ClientError "could not connect to HOST:PORT: connection refused"."""
        d = self.call()
        ConnectionCompleter(self.reactor).failOnce()
        # HostnameEndpoint gives up once its next attempt (0.3 s later) finds
        # no more addresses: well before the timeout.
        self.reactor.advance(1)
        failure = self.failureResultOf(d, ClientError)
        self.assertEqual(str(failure.value), "could not connect to 127.0.0.1:6000: connection refused")

    def test_silent_relay(self):
        """A relay that says nothing is a ClientError after the timeout, and the connection is closed."""
        self.reactor.listenTCP(6000, Factory.forProtocol(Protocol))
        d = self.call(timeout=3)
        pump = ConnectionCompleter(self.reactor).succeedOnce()
        pump.flush()
        self.reactor.advance(2.9)
        self.assertNoResult(d)
        self.reactor.advance(0.1)
        failure = self.failureResultOf(d, ClientError)
        self.assertEqual(str(failure.value), "no reply from the relay at 127.0.0.1:6000 within 3 seconds")
        self.assertTrue(pump.clientIO.disconnecting)
