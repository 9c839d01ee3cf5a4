"""
Tests for L{netproxy.http.range_relay}: the client stand-in of an exchange
whose client has its range while the rest is stored.  The relay itself is
exercised through the proxy in L{tests.http.test_caching}.
"""

from twisted.trial.unittest import SynchronousTestCase
from zope.interface.verify import verifyObject

from netproxy.errors import HTTPError
from netproxy.http.interfaces import IExchangeClient
from netproxy.http.range_relay import StoringAlone


class _Client:
    peer = "127.0.0.1:40000"
    factory = object()


class _Exchange:
    cancelled = 0

    def cancel(self):
        self.cancelled += 1


class StoringAloneTests(SynchronousTestCase):
    """
    L{StoringAlone} takes the answered client's place: it sends nothing, and a failure cancels the exchange.
    """

    def setUp(self):
        self.exchange = _Exchange()
        self.alone = StoringAlone(_Client(), self.exchange)

    def test_interface(self):
        """It is an exchange client, named as the client was."""
        verifyObject(IExchangeClient, self.alone)
        self.assertEqual(self.alone.peer, "127.0.0.1:40000")

    def test_failures_cancel(self):
        """abort and fail cancel the exchange, so nothing incomplete is stored."""
        self.alone.abort()
        self.alone.fail(HTTPError(502, "gone"))
        self.assertEqual(self.exchange.cancelled, 2)

    def test_quiet(self):
        """Its transport takes writes and producers without effect; the end of the exchange is not logged again."""
        transport = self.alone.transport
        transport.write(b"x")
        transport.writeSequence([b"y"])
        transport.registerProducer(object(), True)
        transport.pauseProducing()
        transport.resumeProducing()
        transport.unregisterProducer()
        self.assertIsNone(transport.producer)
        self.assertIsNone(self.alone.log_access(None, 200, 0, 0.0))
        self.assertIsNone(self.alone.exchange_done(True, b""))
        self.assertEqual(self.exchange.cancelled, 0)

    def test_no_tunnel(self):
        """It never becomes a tunnel."""
        self.assertRaises(HTTPError, self.alone.start_tunnel, None, b"")
