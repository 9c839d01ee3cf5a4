"""
What the fuzz tests share to run one input through a role: a memory reactor
that resolves names (or fails to), a log watcher that fails on tracebacks,
a peer that delivers its pieces only while its transport is not paused, and
the check that no connection stays open without a timer.
"""

from twisted.internet.defer import fail, succeed
from twisted.internet.error import DNSLookupError
from twisted.internet.testing import EventLoggingObserver, MemoryReactorClock
from twisted.logger import LogLevel, formatEvent, globalLogPublisher

from netproxy.testing import connect


class FuzzReactor(MemoryReactorClock):
    """
    A L{MemoryReactorClock} that resolves the names of C{names} and fails
    the lookup of any other, as a real resolver does.
    """

    def __init__(self, names=None):
        super().__init__()
        self.names = names or {}

    def resolve(self, name, timeout=(1, 3, 11, 45)):
        if name in self.names:
            return succeed(self.names[name])
        return fail(DNSLookupError(name))

    def timers(self):
        """
        :returns: the delayed calls still to run.
        """
        return [call for call in self.getDelayedCalls() if call.active()]


class LogWatch:
    """
    Collects the events logged while it is entered; C{check} fails a test
    on any traceback (C{log.failure}) or critical event.
    """

    def __enter__(self):
        self.events = EventLoggingObserver()
        globalLogPublisher.addObserver(self.events)
        return self

    def __exit__(self, *exc_info):
        globalLogPublisher.removeObserver(self.events)

    def check(self, testcase, what):
        """
        Fail C{testcase} if a traceback or a critical event was logged, or
        an event twistd's log file could not write (it encodes as UTF-8:
        the observer fails, and a traceback takes the event's place).
        """
        for event in self.events:
            text = formatEvent(event)
            if "log_failure" in event or event.get("log_level") is LogLevel.critical:
                failure = event.get("log_failure")
                detail = failure.getTraceback() if failure is not None else ""
                testcase.fail(f"{what}: logged {text!r}\n{detail}")
            try:
                text.encode("utf-8")
            except UnicodeEncodeError as error:
                testcase.fail(f"{what}: logged {text!r}, which a UTF-8 log file cannot hold: {error}")


class Peer:
    """
    One peer connected to a server factory over a
    L{StringTransportWithDisconnection}, sending its input in pieces; like a
    real transport, it delivers nothing while the server paused reading.
    """

    def __init__(self, factory, address, chunks):
        self.protocol, self.transport = connect(factory, address)
        self.chunks = list(chunks)
        self.received_at_close = None

    @property
    def open(self):
        return self.transport is not None and self.transport.connected

    def deliver(self):
        """
        Send what can be sent now.

        :returns: whether anything was sent.
        """
        sent = False
        while self.chunks and self.open and self.transport.producerState == "producing":
            self.protocol.dataReceived(self.chunks.pop(0))
            sent = True
        return sent

    def output(self):
        return self.transport.value() if self.transport is not None else b""


def assert_closed_or_timed(testcase, reactor, transport, what):
    """
    Fail unless C{transport} is closed, or a timer is pending that will
    close it (a connection open with no timer would stay open for ever).
    """
    if transport.connected and not reactor.timers():
        testcase.fail(f"{what}: connection left open without a timer")
