"""
Tests for L{netproxy.redis_client}: the C{redis://} URL, the pipelined
protocol over a L{StringTransport} (replies matched in order, error replies,
malformed, truncated and oversized replies, replies that never come), and
the client's connection, set-up, scripts and reconnection, with a fake
endpoint and a L{Clock}.
"""

from twisted.internet.defer import fail, succeed
from twisted.internet.error import ConnectionDone, ConnectionRefusedError
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.python import usage
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase

from netproxy.redis_client import RedisAddress, RedisClient, RedisProtocol, RedisUnavailable, Script, parse_redis_url
from netproxy.resp import RedisError, RespDecoder, encode_command


class UrlTests(SynchronousTestCase):
    def test_defaults(self):
        """A host alone means port 6379 and database 0."""
        self.assertEqual(parse_redis_url("registry", "redis://redis.example"), RedisAddress("redis.example"))

    def test_every_part(self):
        """Port, database, user and password (percent-decoded) are read; IPv6 hosts in brackets."""
        self.assertEqual(parse_redis_url("registry", "redis://me:p%40ss@[::1]:6380/3"),
                         RedisAddress("::1", 6380, 3, "me", "p@ss"))
        self.assertEqual(parse_redis_url("registry", "redis://:secret@127.0.0.1/"),
                         RedisAddress("127.0.0.1", 6379, 0, None, "secret"))

    def test_text_has_no_password(self):
        """The address as logged never shows the password."""
        address = parse_redis_url("registry", "redis://:secret@[::1]:6380/2")
        self.assertEqual(str(address), "redis://[::1]:6380/2")

    def test_bad_values(self):
        """Another scheme, no host, a query, a bad port or database, spaces: a UsageError naming --registry."""
        for value in ("http://127.0.0.1", "redis://", "redis://h/0?x=1", "redis://h/0#f", "redis://h:0",
                      "redis://h:99999", "redis://h:port", "redis://h/db", "redis://h/99999999", "redis://h/-1",
                      "redis:// h", "127.0.0.1:6379", "memory "):
            with self.assertRaises(usage.UsageError) as caught:
                parse_redis_url("registry", value)
            self.assertIn("--registry: expected redis://HOST[:PORT][/DB]", str(caught.exception))
            self.assertIn(repr(value), str(caught.exception))


def connected(timeout=2.0, **decoder):
    clock = Clock()
    protocol = RedisProtocol(clock, timeout, RespDecoder(**decoder) if decoder else None)
    transport = StringTransport()
    protocol.makeConnection(transport)
    lost = []
    protocol.on_lost = lost.append
    return protocol, transport, clock, lost


class ProtocolTests(SynchronousTestCase):
    def test_pipelined_in_order(self):
        """Commands are written at once, without waiting; replies fire their Deferreds in order."""
        protocol, transport, _, _ = connected()
        first, second = protocol.execute("GET", "a"), protocol.execute("GET", "b")
        self.assertEqual(transport.value(), encode_command(["GET", "a"]) + encode_command(["GET", "b"]))
        protocol.dataReceived(b"$1\r\n1\r\n$1")
        self.assertEqual(self.successResultOf(first), b"1")
        self.assertNoResult(second)
        protocol.dataReceived(b"\r\n2\r\n")
        self.assertEqual(self.successResultOf(second), b"2")

    def test_error_reply(self):
        """An error reply fails its command alone with RedisError; the connection carries on."""
        protocol, transport, _, _ = connected()
        bad, good = protocol.execute("NOPE"), protocol.execute("PING")
        protocol.dataReceived(b"-ERR unknown command\r\n+PONG\r\n")
        self.assertEqual(self.failureResultOf(bad, RedisError).value.kind, "ERR")
        self.assertEqual(self.successResultOf(good), "PONG")
        self.assertFalse(transport.disconnecting)

    def test_malformed_reply(self):
        """A reply that is not RESP2 fails every command waiting and aborts the connection."""
        protocol, transport, _, _ = connected()
        waiting = [protocol.execute("PING"), protocol.execute("PING")]
        protocol.dataReceived(b"HTTP/1.1 400 Bad Request\r\n")
        for answer in waiting:
            self.assertIn("bad reply", str(self.failureResultOf(answer, RedisUnavailable).value))
        self.assertTrue(transport.disconnected)
        self.failureResultOf(protocol.execute("PING"), RedisUnavailable)

    def test_oversized_reply(self):
        """A bulk string past the bound aborts the connection before its bytes are buffered."""
        protocol, transport, _, _ = connected(max_bulk=16)
        answer = protocol.execute("GET", "big")
        protocol.dataReceived(b"$17\r\n")
        self.failureResultOf(answer, RedisUnavailable)
        self.assertTrue(transport.disconnected)

    def test_unasked_reply(self):
        """A reply no command asked for aborts the connection."""
        protocol, transport, _, _ = connected()
        protocol.dataReceived(b"+OK\r\n")
        self.assertTrue(transport.disconnected)

    def test_truncated_then_lost(self):
        """A reply cut off by the connection's end fails its command with RedisUnavailable, and the client is told."""
        protocol, _, _, lost = connected()
        answer = protocol.execute("GET", "a")
        protocol.dataReceived(b"$10\r\nabc")
        protocol.connectionLost(Failure(ConnectionDone()))
        self.failureResultOf(answer, RedisUnavailable)
        self.assertEqual(lost, [protocol])

    def test_reply_timeout(self):
        """No reply within the timeout fails the commands waiting and aborts the connection."""
        protocol, transport, clock, _ = connected(timeout=2.0)
        answer = protocol.execute("PING")
        clock.advance(1.9)
        self.assertNoResult(answer)
        clock.advance(0.2)
        self.assertIn("no reply within 2.0 s", str(self.failureResultOf(answer, RedisUnavailable).value))
        self.assertTrue(transport.disconnected)

    def test_timeout_restarts_on_reply(self):
        """The timeout counts from the last reply, so a steady stream of replies never times out."""
        protocol, transport, clock, _ = connected(timeout=2.0)
        answers = [protocol.execute("PING") for _ in range(3)]
        for answer in answers:
            clock.advance(1.5)
            protocol.dataReceived(b"+PONG\r\n")
            self.assertEqual(self.successResultOf(answer), "PONG")
        clock.advance(10)
        self.assertFalse(transport.disconnected)
        self.assertEqual(clock.getDelayedCalls(), [])

    def test_cancelled_command(self):
        """A command its caller cancelled takes its reply quietly; the next gets its own."""
        protocol, _, _, _ = connected()
        first, second = protocol.execute("PING"), protocol.execute("GET", "a")
        first.cancel()
        self.failureResultOf(first)
        protocol.dataReceived(b"+PONG\r\n$1\r\nx\r\n")
        self.assertEqual(self.successResultOf(second), b"x")


class FakeEndpoint:
    """
    Connects each protocol to a new L{StringTransport}, or fails while C{refuse} is set.
    """

    def __init__(self):
        self.refuse = False
        self.protocols = []

    def connect(self, factory):
        if self.refuse:
            return fail(ConnectionRefusedError())
        protocol = factory.buildProtocol(None)
        protocol.makeConnection(StringTransport())
        self.protocols.append(protocol)
        return succeed(protocol)


def client_for(url="redis://127.0.0.1:6379/0", refuse=False):
    clock = Clock()
    endpoint = FakeEndpoint()
    endpoint.refuse = refuse
    client = RedisClient(clock, parse_redis_url("registry", url), endpoint=endpoint, retry_policy=lambda n: 1.0)
    connects = []
    client.on_connect.append(lambda: connects.append(client.protocol))
    client.startService()
    return client, endpoint, clock, connects


class ClientTests(SynchronousTestCase):
    def tearDown(self):
        self.client.stopService()

    def test_connects_and_runs(self):
        """With database 0 and no password, the connection is ready at once and commands go through it."""
        self.client, endpoint, _, connects = client_for()
        self.assertTrue(self.client.connected)
        self.assertEqual(connects, [protocol.itself() for protocol in endpoint.protocols])
        answer = self.client.execute("PING")
        endpoint.protocols[0].dataReceived(b"+PONG\r\n")
        self.assertEqual(self.successResultOf(answer), "PONG")

    def test_auth_and_select(self):
        """A password and a database are sent first (AUTH, SELECT); the connection is ready once they are answered."""
        self.client, endpoint, _, connects = client_for("redis://me:pw@127.0.0.1/5")
        protocol = endpoint.protocols[0]
        self.assertEqual(protocol.transport.value(), encode_command(["AUTH", "me", "pw"]))
        self.assertFalse(self.client.connected)
        protocol.dataReceived(b"+OK\r\n")
        self.assertEqual(protocol.transport.value(), encode_command(["AUTH", "me", "pw"]) +
                         encode_command(["SELECT", 5]))
        protocol.dataReceived(b"+OK\r\n")
        self.assertTrue(self.client.connected)
        self.assertEqual(connects, [protocol.itself()])

    def test_refused_setup(self):
        """A refused AUTH closes that connection; the client is not connected and logs why."""
        self.client, endpoint, _, connects = client_for("redis://:wrong@127.0.0.1/0")
        endpoint.protocols[0].dataReceived(b"-WRONGPASS invalid password\r\n")
        self.assertFalse(self.client.connected)
        self.assertEqual(connects, [])
        self.assertTrue(endpoint.protocols[0].transport.disconnecting)

    def test_commands_fail_at_once_when_down(self):
        """Once the first attempt has failed, a command fails at once with RedisUnavailable rather than wait."""
        self.client, endpoint, _, _ = client_for(refuse=True)
        failure = self.failureResultOf(self.client.execute("PING"), RedisUnavailable)
        self.assertIn("not connected to Redis at redis://127.0.0.1:6379/0", str(failure.value))

    def test_reconnects_after_loss(self):
        """A lost connection fails its commands; the client connects again after the back-off and tells on_connect."""
        self.client, endpoint, clock, connects = client_for()
        answer = self.client.execute("PING")
        endpoint.protocols[0].connectionLost(Failure(ConnectionDone()))
        self.failureResultOf(answer, RedisUnavailable)
        self.assertFalse(self.client.connected)
        self.failureResultOf(self.client.execute("PING"), RedisUnavailable)
        clock.advance(1.0)
        self.assertTrue(self.client.connected)
        self.assertEqual(len(connects), 2)
        self.assertIs(self.client.protocol, endpoint.protocols[1].itself())

    def test_script_by_sha_then_source(self):
        """A script runs by EVALSHA; on NOSCRIPT it is sent once with EVAL, whose reply is the script's."""
        self.client, endpoint, _, _ = client_for()
        protocol = endpoint.protocols[0]
        script = Script("return ARGV[1]")
        answer = self.client.run(script, ["k"], ["v", 1])
        self.assertEqual(protocol.transport.value(), encode_command(["EVALSHA", script.sha, 1, "k", "v", 1]))
        protocol.transport.clear()
        protocol.dataReceived(b"-NOSCRIPT No matching script. Please use EVAL.\r\n")
        self.assertEqual(protocol.transport.value(), encode_command(["EVAL", script.source, 1, "k", "v", 1]))
        protocol.dataReceived(b"$1\r\nv\r\n")
        self.assertEqual(self.successResultOf(answer), b"v")

    def test_script_error_passes(self):
        """An error other than NOSCRIPT is the script's failure, with no second attempt."""
        self.client, endpoint, _, _ = client_for()
        protocol = endpoint.protocols[0]
        answer = self.client.run(Script("return redis.call('NOPE')"), [], [])
        protocol.transport.clear()
        protocol.dataReceived(b"-ERR Error running script\r\n")
        self.failureResultOf(answer, RedisError)
        self.assertEqual(protocol.transport.value(), b"")
