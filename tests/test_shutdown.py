"""
Tests for L{netproxy.shutdown}: SIGTERM stops the reactor without making
twistd die of the signal.
"""

import signal

from twisted.internet.interfaces import _ISupportsExitSignalCapturing
from twisted.internet.selectreactor import SelectReactor
from twisted.trial.unittest import SynchronousTestCase

from netproxy.shutdown import ExitCleanlyOnTerm


class FakeSignals:
    SIGTERM = 15
    SIGINT = 2

    def __init__(self):
        self.handlers = {}

    def signal(self, number, handler):
        self.handlers[number] = handler


class FakeReactor:
    def __init__(self):
        self.triggers = []
        self.from_thread = []
        self.stopped = False
        self._exitSignal = None

    def addSystemEventTrigger(self, phase, event, f, *args):
        self.triggers.append(((phase, event), f, args))

    def callFromThread(self, f, *args):
        self.from_thread.append((f, args))

    def stop(self):
        self.stopped = True

    def shut_down(self):
        """Fire the shutdown triggers, as the reactor does once stopped."""
        for (phase, event), f, args in self.triggers:
            if event == "shutdown":
                f(*args)


class ExitCleanlyOnTermTests(SynchronousTestCase):
    def setUp(self):
        self.reactor = FakeReactor()
        self.signals = FakeSignals()
        self.service = ExitCleanlyOnTerm(self.reactor, self.signals)

    def test_installed_before_listening(self):
        """The handler is in place from privilegedStartService, before any listener starts."""
        self.service.privilegedStartService()
        self.assertIn(FakeSignals.SIGTERM, self.signals.handlers)

    def test_sigterm_before_running(self):
        """A SIGTERM before the reactor runs stops it from the reactor thread, recording no exit signal."""
        self.service.privilegedStartService()
        self.signals.handlers[FakeSignals.SIGTERM](FakeSignals.SIGTERM, None)
        self.assertFalse(self.reactor.stopped)
        [(stop, stop_args)] = self.reactor.from_thread
        stop(*stop_args)
        self.assertTrue(self.reactor.stopped)
        self.assertIsNone(self.reactor._exitSignal)

    def test_reactor_sigterm_forgotten(self):
        """The SIGTERM the reactor's own handler recorded is forgotten after shutdown: twistd exits 0."""
        self.service.startService()
        [((phase, event), _, _)] = self.reactor.triggers
        self.assertEqual((phase, event), ("after", "shutdown"))
        self.reactor._exitSignal = FakeSignals.SIGTERM
        self.reactor.shut_down()
        self.assertIsNone(self.reactor._exitSignal)

    def test_other_signals_kept(self):
        """Any other signal (SIGINT) still ends twistd as it would."""
        self.service.startService()
        self.reactor._exitSignal = FakeSignals.SIGINT
        self.reactor.shut_down()
        self.assertEqual(self.reactor._exitSignal, FakeSignals.SIGINT)


class _ReactorWithoutWaker(SelectReactor):
    """
    A real reactor, never run, that opens no file descriptors.
    """

    def installWaker(self):
        pass


class InstalledTwistedTests(SynchronousTestCase):
    """
    The private part of Twisted that L{ExitCleanlyOnTerm} relies on is still
    there in the installed release.
    """

    def test_reactor_records_sigterm(self):
        """The reactor's own SIGTERM handler records the signal where twistd reads it, and the service forgets it."""
        reactor = _ReactorWithoutWaker()
        self.assertTrue(_ISupportsExitSignalCapturing.providedBy(reactor))
        reactor.sigTerm(signal.SIGTERM, None)
        self.assertEqual(reactor._exitSignal, signal.SIGTERM)
        ExitCleanlyOnTerm(reactor, FakeSignals()).startService()
        reactor.fireSystemEvent("shutdown")
        self.assertIsNone(reactor._exitSignal)


class ServiceOrderTests(SynchronousTestCase):
    def test_signal_service_first(self):
        """makeService puts the SIGTERM service before the role's listeners."""
        from netproxy import tap

        options = tap.Options()
        options.parseOptions(["ack", "--listen", "tcp:0:interface=127.0.0.1"])
        service = tap.makeService(options)
        self.assertIsInstance(list(service)[0], ExitCleanlyOnTerm)
