"""
Tests for L{netproxy.http.cache.store_service}: a store's start-up work and
shutdown as a service.
"""

from twisted.internet.defer import Deferred, fail, succeed
from twisted.trial.unittest import SynchronousTestCase

from netproxy.http.cache.store_service import LoadOnStart


class Loading:
    """A store whose load returns C{result}, counting the calls to load and flush."""

    def __init__(self, result):
        self.result = result
        self.loads = 0
        self.flushes = 0

    def load(self):
        self.loads += 1
        return self.result

    def flush(self):
        self.flushes += 1


class LoadOnStartTests(SynchronousTestCase):
    """
    L{LoadOnStart} loads a store's index when the service starts.
    """

    def test_loads_on_start(self):
        """
        Nothing is loaded until the service starts, then the store is
        loaded once, and the service runs without waiting for it.
        """
        store = Loading(Deferred())
        service = LoadOnStart(store)
        self.assertEqual(store.loads, 0)
        service.startService()
        self.assertEqual(store.loads, 1)
        self.assertTrue(service.running)

    def test_failure_logged(self):
        """
        A load that fails is logged, not left unhandled.
        """
        service = LoadOnStart(Loading(fail(OSError("unreadable"))))
        service.startService()
        self.assertEqual(len(self.flushLoggedErrors(OSError)), 1)

    def test_success_silent(self):
        """
        A load that succeeds logs no error.
        """
        LoadOnStart(Loading(succeed(None))).startService()
        self.assertEqual(self.flushLoggedErrors(), [])

    def test_flushed_on_stop(self):
        """
        Stopping the service saves what the store has pending, once, and the store stays usable.
        """
        store = Loading(succeed(None))
        service = LoadOnStart(store)
        service.startService()
        self.assertEqual(store.flushes, 0)
        service.stopService()
        self.assertEqual(store.flushes, 1)
