"""
Tests for L{netproxy.rate_limit}: token buckets on a L{Clock}, and the
limits of client addresses pausing and resuming every connection of an
address together.
"""

from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.trial.unittest import SynchronousTestCase

from netproxy.rate_limit import MIN_BYTE_BURST, RateLimiter, TokenBucket, byte_burst, request_burst
from tests.test_throttling import Producer

KIB = 1024


class TokenBucketTests(SynchronousTestCase):
    """
    L{TokenBucket}: burst, refill, debt.
    """

    def setUp(self):
        self.clock = Clock()
        self.bucket = TokenBucket(100, 50, self.clock)

    def test_starts_full(self):
        """A new bucket holds its burst."""
        self.assertEqual(self.bucket.tokens, 50)
        self.assertEqual(self.bucket.full_in(), 0)

    def test_spend_into_debt(self):
        """Spending past empty leaves a debt, paid back at the rate."""
        self.assertEqual(self.bucket.spend(30), 0)
        self.assertEqual(self.bucket.spend(40), 0.2)
        self.assertEqual(self.bucket.debt(), 0.2)
        self.clock.advance(0.1)
        self.assertAlmostEqual(self.bucket.debt(), 0.1)
        self.clock.advance(0.1)
        self.assertEqual(self.bucket.debt(), 0)

    def test_refill_capped(self):
        """Refilling stops at the burst, however long the bucket waits."""
        self.bucket.spend(50)
        self.assertEqual(self.bucket.full_in(), 0.5)
        self.clock.advance(1000)
        self.assertEqual(self.bucket.tokens, 50)

    def test_take(self):
        """take() takes what the bucket holds, or nothing and says how long to wait."""
        self.assertEqual(self.bucket.take(50), 0)
        self.assertEqual(self.bucket.take(10), 0.1)
        self.assertEqual(self.bucket.tokens, 0)
        self.clock.advance(0.1)
        self.assertEqual(self.bucket.take(10), 0)

    def test_bursts(self):
        """The byte bucket is a quarter second of the rate, at least 16 KiB; the request bucket a second's, at least 1."""
        self.assertEqual(byte_burst(256 * KIB), 64 * KIB)
        self.assertEqual(byte_burst(1000), MIN_BYTE_BURST)
        self.assertEqual((request_burst(10), request_burst(0.1)), (10, 1))


class Connection:
    """A client connection as the proxy makes it: its transport, wrapped by its client's limits."""

    def __init__(self, limiter, host):
        self.inner = StringTransport()
        self.limits = limiter.join(host)
        self.transport = self.limits.wrap(self.inner)
        self.producer = Producer()
        self.transport.registerProducer(self.producer, True)

    @property
    def paused(self):
        """Whether both reading and the producer are paused."""
        reading = self.inner.producerState == "paused"
        self.assert_consistent(reading)
        return reading

    def assert_consistent(self, reading):
        assert reading == self.producer.paused, (reading, self.producer.paused)

    def leave(self):
        self.transport.unregisterProducer()
        self.limits.leave(self.transport)


class ByteLimitTests(SynchronousTestCase):
    """
    C{--rate-limit}: one byte bucket per client address, shared by its
    connections, enforced by pausing them.
    """

    def setUp(self):
        self.clock = Clock()
        # A 64 KiB burst.
        self.limiter = RateLimiter(self.clock, byte_rate=256 * KIB)

    def test_within_burst(self):
        """Bytes within the burst pause nothing."""
        connection = Connection(self.limiter, "127.0.0.1")
        connection.transport.write(b"x" * (64 * KIB))
        self.assertFalse(connection.paused)
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_pause_and_resume(self):
        """Overdrawing the bucket pauses reading and the producer until the debt is paid back, then resumes them."""
        connection = Connection(self.limiter, "127.0.0.1")
        connection.transport.write(b"x" * (64 * KIB + 32 * KIB))
        self.assertTrue(connection.paused)
        self.clock.advance(0.125 - 0.001)
        self.assertTrue(connection.paused)
        self.clock.advance(0.001)
        self.assertFalse(connection.paused)
        self.assertEqual(connection.producer.calls, ["pause", "resume"])
        self.assertEqual(self.limiter.throttled_bytes, 96 * KIB)
        self.assertAlmostEqual(self.limiter.throttled_seconds, 0.125)

    def test_reads_counted(self):
        """Bytes read count against the same bucket as bytes written."""
        connection = Connection(self.limiter, "127.0.0.1")
        connection.limits.received(40 * KIB)
        connection.transport.write(b"x" * (40 * KIB))
        self.assertTrue(connection.paused)

    def test_debt_while_paused(self):
        """Bytes that arrive while paused add to the debt: the pause lasts until all is paid back."""
        connection = Connection(self.limiter, "127.0.0.1")
        connection.transport.write(b"x" * (64 * KIB + 32 * KIB))
        connection.limits.received(32 * KIB)
        self.clock.advance(0.125)
        self.assertTrue(connection.paused)
        self.clock.advance(0.125)
        self.assertFalse(connection.paused)

    def test_shared_by_address(self):
        """Every connection of an address is paused together, and resumed together."""
        first = Connection(self.limiter, "127.0.0.1")
        second = Connection(self.limiter, "127.0.0.1")
        first.transport.write(b"x" * (40 * KIB))
        second.transport.write(b"x" * (40 * KIB))
        self.assertEqual((first.paused, second.paused), (True, True))
        self.clock.advance(1)
        self.assertEqual((first.paused, second.paused), (False, False))

    def test_other_address(self):
        """Another address has a bucket of its own."""
        greedy = Connection(self.limiter, "127.0.0.1")
        other = Connection(self.limiter, "127.0.0.2")
        greedy.transport.write(b"x" * (128 * KIB))
        self.assertTrue(greedy.paused)
        other.transport.write(b"x" * (64 * KIB))
        self.assertFalse(other.paused)

    def test_joins_while_paused(self):
        """A connection opened while its address is paused starts paused."""
        first = Connection(self.limiter, "127.0.0.1")
        first.transport.write(b"x" * (128 * KIB))
        late = Connection(self.limiter, "127.0.0.1")
        self.assertTrue(late.paused)
        self.clock.advance(0.25)
        self.assertFalse(late.paused)

    def test_dropped_when_full(self):
        """Once its last connection closes, an address's bucket is kept until it is full again, then dropped."""
        connection = Connection(self.limiter, "127.0.0.1")
        connection.transport.write(b"x" * (128 * KIB))
        connection.leave()
        self.assertIn("127.0.0.1", self.limiter.clients)
        self.clock.advance(0.5 - 0.001)
        self.assertIn("127.0.0.1", self.limiter.clients)
        self.clock.advance(0.001)
        self.assertEqual(self.limiter.clients, {})
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_dropped_at_once(self):
        """An address whose bucket is full is dropped with its last connection."""
        connection = Connection(self.limiter, "127.0.0.1")
        connection.leave()
        self.assertEqual(self.limiter.clients, {})

    def test_debt_outlives_connections(self):
        """Reconnecting forgives no debt: the new connection's first bytes pause it."""
        connection = Connection(self.limiter, "127.0.0.1")
        connection.transport.write(b"x" * (128 * KIB))
        connection.leave()
        again = Connection(self.limiter, "127.0.0.1")
        again.transport.write(b"x")
        self.assertTrue(again.paused)
        self.clock.advance(0.26)
        self.assertFalse(again.paused)

    def test_leave_while_paused(self):
        """The pause of an address whose connections all closed ends: its time is counted and no timer is left."""
        connection = Connection(self.limiter, "127.0.0.1")
        connection.transport.write(b"x" * (128 * KIB))
        self.clock.advance(0.1)
        connection.leave()
        self.assertAlmostEqual(self.limiter.throttled_seconds, 0.1)
        self.clock.advance(10)
        self.assertEqual(self.limiter.clients, {})
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_requests_not_limited(self):
        """Without --max-requests-rate every request is admitted."""
        connection = Connection(self.limiter, "127.0.0.1")
        self.assertEqual([connection.limits.admit_request() for _ in range(100)], [None] * 100)


class RequestLimitTests(SynchronousTestCase):
    """
    C{--max-requests-rate}: a request bucket per client address.
    """

    def setUp(self):
        self.clock = Clock()
        self.limiter = RateLimiter(self.clock, request_rate=2)

    def test_transport_not_wrapped(self):
        """Without --rate-limit the transport is left as it is."""
        transport = StringTransport()
        self.assertIs(self.limiter.join("127.0.0.1").wrap(transport), transport)

    def test_burst_then_refused(self):
        """A second's worth of requests is admitted at once; the next is refused with the wait until the next token."""
        limits = self.limiter.join("127.0.0.1")
        limits.wrap(StringTransport())
        self.assertEqual([limits.admit_request() for _ in range(2)], [None, None])
        self.assertEqual(limits.admit_request(), 0.5)
        self.clock.advance(0.25)
        self.assertEqual(limits.admit_request(), 0.25)
        self.clock.advance(0.25)
        self.assertIsNone(limits.admit_request())
        self.assertEqual(self.limiter.refused_requests, 2)

    def test_per_address(self):
        """Another address is admitted while one is refused."""
        greedy = self.limiter.join("127.0.0.1")
        greedy.wrap(StringTransport())
        other = self.limiter.join("127.0.0.2")
        other.wrap(StringTransport())
        for _ in range(3):
            greedy.admit_request()
        self.assertIsNotNone(greedy.admit_request())
        self.assertIsNone(other.admit_request())

    def test_ipv6_network(self):
        """The addresses of one IPv6 /64 share one bucket, as they share --max-connections-per-client: a client
        cannot multiply its rate by rotating through its /64; another /64 has its own."""
        first = self.limiter.join("2001:db8::1")
        first.wrap(StringTransport())
        for _ in range(2):
            self.assertIsNone(first.admit_request())
        rotated = self.limiter.join("2001:db8::ffff:2")
        rotated.wrap(StringTransport())
        self.assertIsNotNone(rotated.admit_request())
        mapped = self.limiter.join("::ffff:127.0.0.1")
        mapped.wrap(StringTransport())
        self.assertIs(mapped, self.limiter.join("127.0.0.1"))
        other = self.limiter.join("2001:db8:0:1::1")
        other.wrap(StringTransport())
        self.assertIsNone(other.admit_request())
        self.assertEqual(len(self.limiter.clients), 3)

    def test_reconnecting(self):
        """Closing the connection and opening another gets a refused client no new burst."""
        limits = self.limiter.join("127.0.0.1")
        transport = limits.wrap(StringTransport())
        for _ in range(2):
            limits.admit_request()
        limits.leave(transport)
        again = self.limiter.join("127.0.0.1")
        again.wrap(StringTransport())
        self.assertIsNotNone(again.admit_request())

    def test_warned_once(self):
        """A client over its rate is warned about once per episode, not once per request."""
        from twisted.logger import globalLogPublisher

        events = []
        globalLogPublisher.addObserver(events.append)
        self.addCleanup(globalLogPublisher.removeObserver, events.append)
        limits = self.limiter.join("127.0.0.1")
        limits.wrap(StringTransport())
        for _ in range(5):
            limits.admit_request()
        self.clock.advance(1)
        for _ in range(5):
            limits.admit_request()
        warnings = [event for event in events if event.get("host") == "127.0.0.1"]
        self.assertEqual(len(warnings), 2)
