"""
Tests for L{netproxy.http.discard}.
"""

from twisted.internet.interfaces import IConsumer
from twisted.trial.unittest import SynchronousTestCase
from zope.interface.verify import verifyObject

from netproxy.http.discard import Discard


class _Producer:
    paused = 0

    def pauseProducing(self):
        self.paused += 1


class DiscardTests(SynchronousTestCase):
    def test_consumer(self):
        """A Discard is a consumer that takes writes and holds the producer registered until it is unregistered."""
        discard = Discard()
        self.assertTrue(verifyObject(IConsumer, discard))
        producer = _Producer()
        discard.registerProducer(producer, True)
        discard.write(b"x" * 1024)
        discard.writeSequence([b"a", b"b"])
        self.assertIs(discard.producer, producer)
        self.assertEqual(producer.paused, 0)
        discard.unregisterProducer()
        self.assertIsNone(discard.producer)
