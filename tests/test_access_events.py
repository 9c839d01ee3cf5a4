"""
Tests for L{netproxy.access_events}: the publisher of a role's access
events.
"""

from twisted.trial.unittest import SynchronousTestCase

from netproxy.access_events import AccessEvents
from netproxy.worker_options import Worker


def worker(index, count):
    return Worker(index, count, ((4, "INET"),), (0, 3), "/nonexistent")


class AccessEventsTests(SynchronousTestCase):
    """
    Events go only to the observers added, in the role's namespace.
    """

    def test_disabled_without_observer(self):
        """Without an observer the events are off, for the role to skip building them."""
        self.assertFalse(AccessEvents("netproxy.test.access").enabled)

    def test_observers(self):
        """Each observer added gets every event, in the namespace given, and the events are on."""
        events = AccessEvents("netproxy.test.access")
        first, second = [], []
        events.add_observer(first.append)
        events.add_observer(second.append)
        events._log.info("{client}", client="127.0.0.1")
        self.assertTrue(events.enabled)
        self.assertEqual([event["client"] for event in first + second], ["127.0.0.1", "127.0.0.1"])
        self.assertEqual(first[0]["log_namespace"], "netproxy.test.access")

    def test_not_escaped_here(self):
        """A client's control bytes reach the observer as they were: the role's formatter escapes them."""
        events = AccessEvents("netproxy.test.access")
        seen = []
        events.add_observer(seen.append)
        events._log.info("{user}", user="a\x1b[2Jb")
        self.assertEqual(seen[0]["user"], "a\x1b[2Jb")

    def test_worker_index(self):
        """The worker is named only with several: none alone or without --workers."""
        events = AccessEvents("netproxy.test.access")
        self.assertIsNone(events.worker_index())
        events.worker = worker(0, 1)
        self.assertIsNone(events.worker_index())
        events.worker = worker(2, 3)
        self.assertEqual(events.worker_index(), 2)
