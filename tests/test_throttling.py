"""
Tests for L{netproxy.throttling}: a transport paused by its client's rate
limit on top of whoever else pauses it, and the producer registered on it
likewise, with nothing buffered of its own.
"""

from twisted.internet.testing import StringTransport
from twisted.trial.unittest import SynchronousTestCase

from netproxy.throttling import ThrottledTransport


class Counter:
    """Counts what a L{ThrottledTransport} reports moving."""

    def __init__(self):
        self.sizes = []

    def transferred(self, size):
        self.sizes.append(size)


class Producer:
    """A producer that records whether it is paused, and every call."""

    def __init__(self):
        self.calls = []
        self.paused = False

    def pauseProducing(self):
        self.calls.append("pause")
        self.paused = True

    def resumeProducing(self):
        self.calls.append("resume")
        self.paused = False

    def stopProducing(self):
        self.calls.append("stop")


class ThrottledTransportTests(SynchronousTestCase):
    """
    L{ThrottledTransport} over a L{StringTransport}.
    """

    def setUp(self):
        self.inner = StringTransport()
        self.counter = Counter()
        self.transport = ThrottledTransport(self.inner, self.counter)

    def test_writes_counted(self):
        """Writes go through at once and are counted; writeSequence counts every piece."""
        self.transport.write(b"abc")
        self.transport.writeSequence(iter([b"de", b"f"]))
        self.assertEqual((self.inner.value(), self.counter.sizes), (b"abcdef", [3, 3]))

    def test_delegates(self):
        """What it does not wrap is the transport's own."""
        self.assertEqual(self.transport.getPeer(), self.inner.getPeer())
        self.transport.loseConnection()
        self.assertTrue(self.inner.disconnecting)

    def test_throttle_pauses_reading(self):
        """Throttled, the transport stops reading; released, it reads again."""
        self.transport.throttle(True)
        self.assertEqual(self.inner.producerState, "paused")
        self.transport.throttle(False)
        self.assertEqual(self.inner.producerState, "producing")

    def test_reading_paused_by_both(self):
        """Reading resumes only once both the limit and whoever else paused it let go, in either order."""
        for first, second in (("others", "limit"), ("limit", "others")):
            self.transport.pauseProducing()
            self.transport.throttle(True)
            for who in (first, second):
                self.assertEqual(self.inner.producerState, "paused", who)
                if who == "others":
                    self.transport.resumeProducing()
                else:
                    self.transport.throttle(False)
            self.assertEqual(self.inner.producerState, "producing")

    def test_producer_seen_as_registered(self):
        """The producer property is the producer registered, so identity checks hold; None once unregistered."""
        producer = Producer()
        self.transport.registerProducer(producer, True)
        self.assertIs(self.transport.producer, producer)
        self.assertIsNot(self.inner.producer, producer)
        self.transport.unregisterProducer()
        self.assertIsNone(self.transport.producer)
        self.assertIsNone(self.inner.producer)

    def test_producer_throttled(self):
        """The registered producer is paused while throttled and resumed after."""
        producer = Producer()
        self.transport.registerProducer(producer, True)
        self.transport.throttle(True)
        self.assertTrue(producer.paused)
        self.transport.throttle(False)
        self.assertEqual(producer.calls, ["pause", "resume"])

    def test_registered_while_throttled(self):
        """A producer registered while the limit holds is paused at once."""
        self.transport.throttle(True)
        producer = Producer()
        self.transport.registerProducer(producer, True)
        self.assertTrue(producer.paused)

    def test_producer_paused_by_both(self):
        """
        A producer paused by the transport (full buffer) and by the limit
        resumes only when both let go, in either order, and is told once each way.
        """
        for consumer_first in (True, False):
            producer = Producer()
            self.transport.registerProducer(producer, True)
            gate = self.inner.producer
            gate.pauseProducing()
            self.transport.throttle(True)
            if consumer_first:
                gate.resumeProducing()
                self.assertTrue(producer.paused)
                self.transport.throttle(False)
            else:
                self.transport.throttle(False)
                self.assertTrue(producer.paused)
                gate.resumeProducing()
            self.assertEqual(producer.calls, ["pause", "resume"])
            self.transport.unregisterProducer()

    def test_stop(self):
        """Stopping goes to the producer whatever holds it."""
        producer = Producer()
        self.transport.registerProducer(producer, True)
        self.transport.throttle(True)
        self.inner.producer.stopProducing()
        self.assertEqual(producer.calls, ["pause", "stop"])

    def test_pull_producer(self):
        """A pull producer asking for more while throttled is given its turn once the limit lets go."""
        producer = Producer()
        self.transport.registerProducer(producer, False)
        self.transport.throttle(True)
        self.inner.producer.resumeProducing()
        self.assertEqual(producer.calls, [])
        self.transport.throttle(False)
        self.assertEqual(producer.calls, ["resume"])
        self.inner.producer.resumeProducing()
        self.assertEqual(producer.calls, ["resume", "resume"])
