"""
Tests for L{netproxy.shutdown}: SIGTERM stops the reactor without making
twistd die of the signal.
"""

from twisted.trial.unittest import SynchronousTestCase

from netproxy.shutdown import ExitCleanlyOnTerm


class FakeSignals:
    SIGTERM = 15

    def __init__(self):
        self.handlers = {}

    def signal(self, number, handler):
        self.handlers[number] = handler


class FakeReactor:
    def __init__(self):
        self.when_running = []
        self.from_thread = []
        self.stopped = False
        self._exitSignal = None

    def callWhenRunning(self, f, *args):
        self.when_running.append((f, args))

    def callFromThread(self, f, *args):
        self.from_thread.append((f, args))

    def stop(self):
        self.stopped = True


class ExitCleanlyOnTermTests(SynchronousTestCase):
    def setUp(self):
        self.reactor = FakeReactor()
        self.signals = FakeSignals()
        self.service = ExitCleanlyOnTerm(self.reactor, self.signals)

    def test_installed_once_running(self):
        """The handler goes in only once the reactor runs, after the reactor's own."""
        self.service.startService()
        self.assertEqual(self.signals.handlers, {})
        [(install, args)] = self.reactor.when_running
        install(*args)
        self.assertIn(FakeSignals.SIGTERM, self.signals.handlers)

    def test_sigterm_stops_without_exit_signal(self):
        """SIGTERM stops the reactor from the reactor thread and records no exit signal."""
        self.service.startService()
        install, args = self.reactor.when_running[0]
        install(*args)
        self.signals.handlers[FakeSignals.SIGTERM](FakeSignals.SIGTERM, None)
        self.assertFalse(self.reactor.stopped)
        [(stop, stop_args)] = self.reactor.from_thread
        stop(*stop_args)
        self.assertTrue(self.reactor.stopped)
        self.assertIsNone(self.reactor._exitSignal)

    def test_not_installed_after_stop(self):
        """A service stopped before the reactor ran leaves the handlers alone."""
        self.service.startService()
        self.service.stopService()
        install, args = self.reactor.when_running[0]
        install(*args)
        self.assertEqual(self.signals.handlers, {})

    def test_installed_before_listening(self):
        """The handler is in place from privilegedStartService, before any listener starts."""
        self.service.privilegedStartService()
        self.assertIn(FakeSignals.SIGTERM, self.signals.handlers)


class ServiceOrderTests(SynchronousTestCase):
    def test_signal_service_first(self):
        """makeService puts the SIGTERM service before the role's listeners."""
        from netproxy import tap

        options = tap.Options()
        options.parseOptions(["ack", "--listen", "tcp:0:interface=127.0.0.1"])
        service = tap.makeService(options)
        self.assertIsInstance(list(service)[0], ExitCleanlyOnTerm)
