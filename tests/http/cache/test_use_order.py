"""
Tests for L{netproxy.http.cache.use_order}: the stamps of uses and which
uses are recorded.
"""

from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from netproxy.http.cache.use_order import TOUCH_INTERVAL, UseOrder


class UseOrderTests(SynchronousTestCase):
    """L{UseOrder} stamps uses in order and records only those worth a write."""

    def setUp(self):
        self.clock = Clock()
        self.clock.advance(1000)
        self.oldest = 0.0
        self.reads = 0
        self.order = UseOrder(self.clock, self.read_oldest)

    def read_oldest(self):
        self.reads += 1
        if isinstance(self.oldest, Exception):
            raise self.oldest
        return self.oldest

    def test_stamp_is_now(self):
        """A stamp is the clock's time when the clock moved since the last."""
        self.assertEqual(self.order.stamp(), 1000)
        self.clock.advance(5)
        self.assertEqual(self.order.stamp(), 1005)

    def test_stamps_increase_within_a_tick(self):
        """Stamps given within one tick of the clock still increase strictly."""
        stamps = [self.order.stamp() for _ in range(100)]
        self.assertEqual(stamps, sorted(set(stamps)))

    def test_stamp_never_goes_back(self):
        """A clock stepped back does not make a stamp older than the one before."""
        first = self.order.stamp()
        self.clock.rightNow -= 50
        self.assertGreater(self.order.stamp(), first)

    def test_recent_use_not_recorded(self):
        """A use within TOUCH_INTERVAL of the last recorded one is not written."""
        self.assertFalse(self.order.worth_recording(1000 - TOUCH_INTERVAL / 2))

    def test_older_half_recorded(self):
        """A use of an entry last used in the older half of the order is recorded."""
        self.oldest = 0.0
        self.assertTrue(self.order.worth_recording(499))
        self.assertTrue(self.order.worth_recording(500))

    def test_newer_half_not_recorded(self):
        """A use of an entry last used in the newer half is not: it is far from eviction."""
        self.oldest = 0.0
        self.assertFalse(self.order.worth_recording(501))

    def test_oldest_read_once_per_interval(self):
        """The oldest use is read at most once per TOUCH_INTERVAL, however many hits."""
        for _ in range(50):
            self.order.worth_recording(10)
        self.assertEqual(self.reads, 1)
        self.clock.advance(TOUCH_INTERVAL)
        self.order.worth_recording(10)
        self.assertEqual(self.reads, 2)

    def test_oldest_unreadable(self):
        """When the oldest use cannot be read, it counts as now: every use past the interval is recorded."""
        self.oldest = RuntimeError("index gone")
        self.assertTrue(self.order.worth_recording(1000 - TOUCH_INTERVAL))
