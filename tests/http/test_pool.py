"""
Tests for L{netproxy.http.pool}: idle upstream connections are reused,
bounded and expired.
"""

from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.trial.unittest import SynchronousTestCase

from netproxy.http.pool import ConnectionPool

A = ("a.example", 80)
B = ("b.example", 8080)


class FakeConnection:
    def __init__(self):
        self.transport = StringTransport()
        self.idle_since = None

    @property
    def closed(self):
        return self.transport.disconnecting


class ConnectionPoolTests(SynchronousTestCase):
    def setUp(self):
        self.clock = Clock()
        self.pool = ConnectionPool(self.clock, idle_timeout=10, max_idle_per_origin=2, max_idle=3)

    def test_empty(self):
        """An origin with no idle connection gives None."""
        self.assertIsNone(self.pool.take(A))

    def test_reuse(self):
        """A connection put back is taken again for the same origin only."""
        connection = FakeConnection()
        self.pool.put(A, connection)
        self.assertIsNone(self.pool.take(B))
        self.assertIs(self.pool.take(A), connection)
        self.assertIsNone(self.pool.take(A))
        self.assertEqual(len(self.pool), 0)

    def test_most_recent_first(self):
        """The most recently used connection is taken first (it is the least likely to be closed)."""
        first, second = FakeConnection(), FakeConnection()
        self.pool.put(A, first)
        self.pool.put(A, second)
        self.assertIs(self.pool.take(A), second)

    def test_idle_timeout(self):
        """An idle connection is closed after idle_timeout seconds and is no longer handed out."""
        connection = FakeConnection()
        self.pool.put(A, connection)
        self.clock.advance(9.9)
        self.assertFalse(connection.closed)
        self.clock.advance(0.1)
        self.assertTrue(connection.closed)
        self.assertIsNone(self.pool.take(A))

    def test_taken_connection_not_expired(self):
        """Taking a connection cancels its idle timer."""
        connection = FakeConnection()
        self.pool.put(A, connection)
        self.pool.take(A)
        self.clock.advance(60)
        self.assertFalse(connection.closed)
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_per_origin_limit(self):
        """Past max_idle_per_origin, the oldest idle connection to that origin is closed."""
        connections = [FakeConnection() for _ in range(3)]
        for connection in connections:
            self.pool.put(A, connection)
        self.assertTrue(connections[0].closed)
        self.assertEqual([c.closed for c in connections[1:]], [False, False])
        self.assertEqual(len(self.pool), 2)

    def test_total_limit(self):
        """Past max_idle in all, the connection idle longest, of any origin, is closed."""
        oldest = FakeConnection()
        self.pool.put(B, oldest)
        others = [FakeConnection() for _ in range(3)]
        self.pool.put(A, others[0])
        self.pool.put(A, others[1])
        self.pool.put(B, others[2])
        self.assertTrue(oldest.closed)
        self.assertEqual(len(self.pool), 3)
        self.assertIs(self.pool.take(B), others[2])

    def test_lost(self):
        """A pooled connection the origin closed is forgotten and its timer cancelled."""
        connection = FakeConnection()
        self.pool.put(A, connection)
        self.pool.lost(A, connection)
        self.assertIsNone(self.pool.take(A))
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_lost_unknown_is_harmless(self):
        """Forgetting a connection that is not pooled does nothing."""
        self.pool.lost(A, FakeConnection())
        self.assertEqual(len(self.pool), 0)

    def test_close_all(self):
        """close_all closes every idle connection and empties the pool."""
        connections = [FakeConnection(), FakeConnection()]
        self.pool.put(A, connections[0])
        self.pool.put(B, connections[1])
        self.pool.close_all()
        self.assertTrue(all(c.closed for c in connections))
        self.assertEqual(len(self.pool), 0)
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_each_expires_on_its_own_time(self):
        """Connections idle since different times each expire idle_timeout after they went idle."""
        first, second = FakeConnection(), FakeConnection()
        self.pool.put(A, first)
        self.clock.advance(5)
        self.pool.put(B, second)
        self.clock.advance(5)
        self.assertTrue(first.closed)
        self.assertFalse(second.closed)
        self.clock.advance(4.9)
        self.assertFalse(second.closed)
        self.clock.advance(0.1)
        self.assertTrue(second.closed)
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_one_timer_for_many(self):
        """However many connections are idle, the pool keeps one timer."""
        for _ in range(3):
            self.pool.put(A if _ % 2 else B, FakeConnection())
        self.assertEqual(len(self.clock.getDelayedCalls()), 1)
