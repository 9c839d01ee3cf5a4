"""
Tests for L{netproxy.http.interfaces}: each implementation of a seam of the
HTTP exchange provides its interface in full, checked by L{verifyObject}.
"""

from twisted.internet.testing import MemoryReactorClock
from twisted.trial.unittest import SynchronousTestCase
from zope.interface.verify import verifyObject

from netproxy.http.background import Background
from netproxy.http.exchange import Exchange
from netproxy.http.forwarding import Forwarding
from netproxy.http.head import RequestHead
from netproxy.http.interfaces import IExchange, IExchangeClient, IResponseReceiver
from netproxy.testing import connect
from tests.http_helpers import CLIENT, URL, make_factory


class InterfaceTests(SynchronousTestCase):
    """
    The exchange, its clients and its origin side provide their interfaces.
    """

    def setUp(self):
        self.factory = make_factory(MemoryReactorClock())
        self.protocol, self.transport = connect(self.factory, CLIENT)
        self.head = RequestHead(b"GET", URL + b"/", (1, 1), [])

    def test_proxy_protocol(self):
        """A client connection of the proxy is an IExchangeClient."""
        self.assertTrue(verifyObject(IExchangeClient, self.protocol))

    def test_background(self):
        """The client of a background revalidation is an IExchangeClient."""
        self.assertTrue(verifyObject(IExchangeClient, Background(self.factory, self.head, b"key")))

    def test_exchange(self):
        """An exchange, once its head is checked, is an IExchange."""
        exchange = Exchange(self.protocol, self.head)
        exchange.begin(b"")
        self.assertTrue(verifyObject(IExchange, exchange))

    def test_forwarding(self):
        """The origin's side of an exchange is an IResponseReceiver."""
        exchange = Exchange(self.protocol, self.head)
        exchange.begin(b"")
        self.assertIsInstance(exchange.forwarding, Forwarding)
        self.assertTrue(verifyObject(IResponseReceiver, exchange.forwarding))
