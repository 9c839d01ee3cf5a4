"""
Tests for L{netproxy.http.cache.remote_fetches}: waiting for a miss another
process fetches.
"""

import sqlite3

from twisted.internet.task import Clock
from twisted.internet.testing import EventLoggingObserver
from twisted.logger import LogLevel, globalLogPublisher
from twisted.trial.unittest import SynchronousTestCase

from netproxy.http.cache.remote_fetches import POLL_SECONDS, RemoteFetches
from netproxy.http.cache.spill_writer import entry_name

KEY = b"http://example.com/"


class Leases:
    """Leases held by another process for the names in C{elsewhere}."""

    def __init__(self):
        self.elsewhere = set()
        self.mine = set()
        self.error = None
        self.forgotten = 0

    def forget_dead(self):
        self.forgotten += 1
        return 0

    def claim(self, name, now):
        if self.error is not None:
            raise self.error
        if name in self.elsewhere:
            return False
        self.mine.add(name)
        return True

    def held_elsewhere(self, name, now):
        if self.error is not None:
            raise self.error
        return name in self.elsewhere

    def release(self, name):
        if self.error is not None:
            raise self.error
        self.mine.discard(name)


class Waiter:
    def __init__(self):
        self.reconsulted = 0

    def reconsult(self):
        self.reconsulted += 1


class RemoteFetchesTests(SynchronousTestCase):
    """Misses fetched elsewhere are waited for, then looked up again."""

    def setUp(self):
        self.clock = Clock()
        self.leases = Leases()
        self.waiting = {}
        self.remote = RemoteFetches(self.leases, self.clock, lambda key: self.waiting.pop(key, []))

    def test_dead_forgotten(self):
        """Starting to share a store deletes the leases of processes no longer running, once."""
        self.assertEqual(self.leases.forgotten, 1)

    def test_lead(self):
        """A miss no other process fetches is led here, holding its lease, and nothing is polled."""
        self.assertTrue(self.remote.lead(KEY))
        self.assertEqual(self.leases.mine, {entry_name(KEY)})
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_release(self):
        """release gives the lease back."""
        self.remote.lead(KEY)
        self.remote.release(KEY)
        self.assertEqual(self.leases.mine, set())

    def test_wait_then_reconsult(self):
        """Waiters for a miss fetched elsewhere reconsult once its lease is given back, not before."""
        self.leases.elsewhere.add(entry_name(KEY))
        self.assertFalse(self.remote.lead(KEY))
        waiters = self.waiting[KEY] = [Waiter(), Waiter()]
        self.clock.advance(POLL_SECONDS)
        self.assertEqual([waiter.reconsulted for waiter in waiters], [0, 0])
        self.leases.elsewhere.clear()
        self.clock.advance(POLL_SECONDS)
        self.assertEqual([waiter.reconsulted for waiter in waiters], [1, 1])
        self.assertNotIn(KEY, self.waiting)
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_one_poll_for_many(self):
        """Several misses waited for share one poll."""
        for key in (KEY, b"http://example.com/2"):
            self.leases.elsewhere.add(entry_name(key))
            self.remote.lead(key)
        self.assertEqual(len(self.clock.getDelayedCalls()), 1)

    def test_claim_error(self):
        """When the lease cannot be taken, the miss is fetched here (better twice than never), with an error logged."""
        logged = EventLoggingObserver.createWithCleanup(self, globalLogPublisher)
        self.leases.error = sqlite3.OperationalError("disk I/O error")
        self.assertTrue(self.remote.lead(KEY))
        self.assertEqual([event["log_level"] for event in logged], [LogLevel.error])

    def test_look_error(self):
        """A lease that cannot be read counts as given back: the waiters look again rather than wait."""
        self.leases.elsewhere.add(entry_name(KEY))
        self.remote.lead(KEY)
        waiter = Waiter()
        self.waiting[KEY] = [waiter]
        self.leases.error = sqlite3.OperationalError("disk I/O error")
        self.clock.advance(POLL_SECONDS)
        self.assertEqual(waiter.reconsulted, 1)

    def test_release_error(self):
        """A lease that cannot be given back is logged; it expires on its own."""
        logged = EventLoggingObserver.createWithCleanup(self, globalLogPublisher)
        self.remote.lead(KEY)
        self.leases.error = sqlite3.OperationalError("disk I/O error")
        self.remote.release(KEY)
        self.assertEqual([event["log_level"] for event in logged], [LogLevel.error])
