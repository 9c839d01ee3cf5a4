"""
Tests for L{netproxy.reload}: SIGHUP runs the reloaders on the reactor.
"""

from twisted.internet.testing import EventLoggingObserver
from twisted.logger import globalLogPublisher
from twisted.trial.unittest import SynchronousTestCase

from netproxy.reload import ReloadOnHangup


class FakeSignals:
    """
    Records handlers instead of installing them.
    """

    SIGHUP = 1
    SIG_DFL = 0

    def __init__(self):
        self.handlers = {self.SIGHUP: "previous"}

    def signal(self, number, handler):
        previous, self.handlers[number] = self.handlers.get(number), handler
        return previous


class FakeReactor:
    """
    Records calls scheduled from a signal handler.
    """

    def __init__(self):
        self.calls = []

    def callFromThread(self, f, *args):
        self.calls.append((f, args))


class ReloadOnHangupTests(SynchronousTestCase):
    def setUp(self):
        self.signals = FakeSignals()
        self.reactor = FakeReactor()
        self.reloaded = []
        self.service = ReloadOnHangup([lambda: self.reloaded.append("a"), lambda: self.reloaded.append("b")],
                                      self.reactor, self.signals)

    def test_handler_only_schedules(self):
        """The signal handler reloads nothing itself; it schedules the reload on the reactor."""
        self.service.startService()
        self.signals.handlers[FakeSignals.SIGHUP](FakeSignals.SIGHUP, None)
        self.assertEqual(self.reloaded, [])
        [(f, args)] = self.reactor.calls
        f(*args)
        self.assertEqual(self.reloaded, ["a", "b"])

    def test_stop_restores_previous_handler(self):
        """Stopping the service puts back the handler that was there before."""
        self.service.startService()
        self.service.stopService()
        self.assertEqual(self.signals.handlers[FakeSignals.SIGHUP], "previous")

    def test_failing_reloader_does_not_stop_others(self):
        """A reloader that raises is logged as a failure and the next one still runs."""
        events = EventLoggingObserver.createWithCleanup(self, globalLogPublisher)

        def broken():
            raise RuntimeError("disk on fire")

        service = ReloadOnHangup([broken, lambda: self.reloaded.append("ok")], self.reactor, self.signals)
        service.reload()
        self.assertEqual(self.reloaded, ["ok"])
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)
        self.assertTrue(any("log_failure" in event for event in events))

    def test_installed_before_listening(self):
        """The handler is in place from privilegedStartService, and startService does not install it twice."""
        self.service.privilegedStartService()
        handler = self.signals.handlers[FakeSignals.SIGHUP]
        self.assertNotEqual(handler, "previous")
        self.service.startService()
        self.service.stopService()
        self.assertEqual(self.signals.handlers[FakeSignals.SIGHUP], "previous")
