"""
Tests for L{netproxy.socks_client}: the client side of SOCKS5, byte by
byte against a transport in memory: the greeting, the login, the CONNECT
request, the reply read to its exact length, and servers that break the
protocol.
"""

from twisted.internet.defer import CancelledError
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransportWithDisconnection
from twisted.trial.unittest import SynchronousTestCase

from netproxy.socks_client import SocksClient, SocksFailure, connect_request, socks_factory

SUCCESS_V4 = b"\x05\x00\x00\x01\x7f\x00\x00\x01\x04\x38"


class Recorder(Protocol):
    """The tunnel's protocol: records what it gets."""

    def __init__(self):
        self.received = []
        self.lost = None

    def dataReceived(self, data):
        self.received.append(data)

    def connectionLost(self, reason):
        self.lost = reason


class RequestTests(SynchronousTestCase):
    """
    L{connect_request} writes the CONNECT request.
    """

    def test_name(self):
        """A name goes as a name (address type 3), for the server to resolve."""
        self.assertEqual(connect_request("example.com", 443), b"\x05\x01\x00\x03\x0bexample.com\x01\xbb")

    def test_addresses(self):
        """IPv4 and IPv6 literals go as addresses."""
        self.assertEqual(connect_request("10.0.0.1", 80), b"\x05\x01\x00\x01\x0a\x00\x00\x01\x00\x50")
        self.assertEqual(connect_request("::1", 80), b"\x05\x01\x00\x04" + b"\x00" * 15 + b"\x01\x00\x50")

    def test_long_name(self):
        """A name longer than 255 bytes cannot be sent: ValueError."""
        self.assertRaises(ValueError, connect_request, "a" * 256, 80)


class HandshakeTests(SynchronousTestCase):
    """
    L{SocksClient} negotiates, then hands the connection over.
    """

    def connect(self, credentials=None):
        self.clock = Clock()
        self.inner = Recorder()
        factory = socks_factory("example.com", 80, credentials, Factory.forProtocol(lambda: self.inner),
                                self.clock, 10)
        self.client = factory.buildProtocol(None)
        self.transport = StringTransportWithDisconnection()
        self.transport.protocol = self.client
        self.client.makeConnection(self.transport)
        return self.client

    def sent(self):
        value = self.transport.value()
        self.transport.clear()
        return value

    def failure(self):
        return self.failureResultOf(self.client.ready, SocksFailure).value

    def test_no_login(self):
        """Without credentials it offers no authentication, sends CONNECT, and bytes after the reply are the tunnel's."""
        client = self.connect()
        self.assertEqual(self.sent(), b"\x05\x01\x00")
        client.dataReceived(b"\x05\x00")
        self.assertEqual(self.sent(), connect_request("example.com", 80))
        client.dataReceived(SUCCESS_V4[:3])
        self.assertNoResult(client.ready)
        client.dataReceived(SUCCESS_V4[3:] + b"HTTP/1.1")
        self.assertIs(self.successResultOf(client.ready), self.inner)
        self.assertEqual(self.inner.received, [b"HTTP/1.1"])
        client.dataReceived(b" 200")
        self.assertEqual(self.inner.received, [b"HTTP/1.1", b" 200"])
        self.assertIs(self.inner.transport, self.transport)
        self.assertFalse(self.clock.getDelayedCalls())
        self.transport.loseConnection()
        self.assertIsNotNone(self.inner.lost)

    def test_login(self):
        """With credentials it offers both methods and logs in when asked (RFC 1929)."""
        client = self.connect((b"alice", b"secret"))
        self.assertEqual(self.sent(), b"\x05\x02\x00\x02")
        client.dataReceived(b"\x05\x02")
        self.assertEqual(self.sent(), b"\x01\x05alice\x06secret")
        client.dataReceived(b"\x01\x00")
        self.assertEqual(self.sent(), connect_request("example.com", 80))
        client.dataReceived(b"\x05\x00\x00\x03\x04host\x00\x50")
        self.successResultOf(client.ready)

    def test_login_refused(self):
        """Refused credentials fail, the server not at fault."""
        client = self.connect((b"alice", b"wrong"))
        client.dataReceived(b"\x05\x02\x01\x01")
        failure = self.failure()
        self.assertFalse(failure.server_fault)
        self.assertIn("refused the user name and password", str(failure))
        self.assertFalse(self.transport.connected)

    def test_no_acceptable_method(self):
        """A server that accepts none of the methods fails the handshake, saying it may want credentials."""
        self.connect().dataReceived(b"\x05\xff")
        failure = self.failure()
        self.assertIn("may want a user name and password", str(failure))
        self.assertFalse(failure.server_fault)

    def test_reply_codes(self):
        """A failure code is reported with its meaning, the server not at fault."""
        for code, words in ((5, "connection refused"), (6, "TTL expired"), (2, "not allowed"), (99, "unknown")):
            client = self.connect()
            client.dataReceived(b"\x05\x00")
            client.dataReceived(bytes([5, code]))
            failure = self.failure()
            self.assertEqual(failure.reply, code)
            self.assertFalse(failure.server_fault)
            self.assertIn(words, str(failure))
            self.assertFalse(self.transport.connected)

    def test_garbage(self):
        """A server that answers garbage, a wrong version or an unoffered method is at fault."""
        for greeting, reply in ((b"HTTP/1.1 400 Bad\r\n", b""), (b"\x04\x00", b""), (b"\x05\x02", b""),
                                (b"\x05\x00", b"\x04\x00\x00\x01\x00\x00\x00\x00\x00\x00"),
                                (b"\x05\x00", b"\x05\x00\x00\x07\x00"), (b"\x05\x00", b"\x05\x00\x00\x03\x00")):
            client = self.connect()
            client.dataReceived(greeting)
            client.dataReceived(reply)
            failure = self.failure()
            self.assertTrue(failure.server_fault, (greeting, reply))
            self.assertIsNone(failure.reply)
            self.assertFalse(self.transport.connected)
            self.assertIsNone(self.inner.transport)

    def test_wrong_login_version(self):
        """A login answer of a version other than 1 is the server's fault."""
        client = self.connect((b"u", b"p"))
        client.dataReceived(b"\x05\x02\x05\x00")
        self.assertTrue(self.failure().server_fault)

    def test_truncated(self):
        """A server that closes in the middle of its reply (a bound name cut short) is at fault."""
        client = self.connect()
        client.dataReceived(b"\x05\x00\x05\x00\x00\x03\xff" + b"a" * 100)
        self.assertNoResult(client.ready)
        self.transport.loseConnection()
        failure = self.failure()
        self.assertTrue(failure.server_fault)
        self.assertIn("closed the connection before answering CONNECT", str(failure))

    def test_long_bound_name(self):
        """The longest bound name (255 bytes) is read whole, and what follows is the tunnel's."""
        client = self.connect()
        client.dataReceived(b"\x05\x00\x05\x00\x00\x03\xff" + b"a" * 255 + b"\x00\x50" + b"after")
        self.successResultOf(client.ready)
        self.assertEqual(self.inner.received, [b"after"])

    def test_timeout(self):
        """No answer to the greeting is the server's fault; no answer to CONNECT is a TTL expired."""
        client = self.connect()
        self.clock.advance(10)
        self.assertTrue(self.failure().server_fault)
        client = self.connect()
        client.dataReceived(b"\x05\x00")
        self.clock.advance(10)
        failure = self.failure()
        self.assertEqual((failure.server_fault, failure.reply), (False, 6))
        self.assertIn("did not answer CONNECT within 10 seconds", str(failure))

    def test_cancel(self):
        """Cancelling the handshake closes the connection; no tunnel is built."""
        client = self.connect()
        client.ready.cancel()
        self.failureResultOf(client.ready, CancelledError)
        self.assertFalse(self.transport.connected)
        self.assertIsNone(self.inner.transport)
        self.assertFalse(self.clock.getDelayedCalls())

    def test_subclass(self):
        """socks_factory builds the protocol it is given, with the client's parameters after its own."""
        class Tagged(SocksClient):
            def __init__(self, tag, *args):
                super().__init__(*args)
                self.tag = tag

        factory = socks_factory("h", 1, None, Factory.forProtocol(Recorder), Clock(), 1, lambda *a: Tagged("t", *a))
        self.assertEqual(factory.buildProtocol(None).tag, "t")
