"""
Tests for L{netproxy.splice}: two connections joined with back-pressure
both ways, and closed after what was written.
"""

from twisted.internet.testing import StringTransport
from twisted.trial.unittest import SynchronousTestCase

from netproxy.splice import SpliceEnd, close_after_writes, join


class Owner:
    """
    Records what a L{SpliceEnd} hands it.
    """

    def __init__(self):
        self.data = []
        self.lost = 0

    def destination_data(self, data):
        self.data.append(data)

    def destination_lost(self):
        self.lost += 1


class SpliceTests(SynchronousTestCase):
    """
    The splice's pieces.
    """

    def test_end(self):
        """The destination's end hands its data and its loss to its owner."""
        owner = Owner()
        end = SpliceEnd(owner)
        end.makeConnection(StringTransport())
        end.dataReceived(b"abc")
        end.connectionLost()
        self.assertEqual((owner.data, owner.lost), ([b"abc"], 1))

    def test_join(self):
        """Each transport becomes the other's streaming producer, and the paused client is read again."""
        client, destination = StringTransport(), StringTransport()
        client.pauseProducing()
        join(client, destination)
        self.assertIs(client.producer, destination)
        self.assertIs(destination.producer, client)
        self.assertTrue(client.streaming and destination.streaming)
        self.assertEqual(client.producerState, "producing")

    def test_close_after_writes(self):
        """Closing a joined side unregisters its producer first, so a paused producer cannot keep it open."""
        client, destination = StringTransport(), StringTransport()
        join(client, destination)
        close_after_writes(destination)
        self.assertIsNone(destination.producer)
        self.assertTrue(destination.disconnecting)

    def test_close_unjoined(self):
        """A side with no producer is simply closed."""
        transport = StringTransport()
        close_after_writes(transport)
        self.assertTrue(transport.disconnecting)
