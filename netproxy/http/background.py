"""
Requests the HTTP proxy makes on its own: the background revalidation of a
stale response served under C{stale-while-revalidate} (RFC 5861 section 3).

A background request runs as an ordinary L{Exchange}, so it revalidates,
refreshes and stores exactly as a client's request would; L{Background}
stands in for the client connection, and drops the response.
"""

from twisted.internet.interfaces import IConsumer
from twisted.logger import Logger
from zope.interface import implementer

from netproxy.http.cache.validation import PRECONDITIONS
from netproxy.errors import HTTPError
from netproxy.http.exchange import Exchange
from netproxy.http.head import RequestHead

# The triggering client's own say over caching and its preconditions stay
# with its request: the background request asks the origin plainly.
_CLIENT_ONLY = PRECONDITIONS | {b"cache-control", b"pragma"}


@implementer(IConsumer)
class _Discard:
    """
    A client transport that drops what it is sent, never pushing back.
    """

    producer = None

    def write(self, data):
        pass

    def writeSequence(self, data):
        pass

    def registerProducer(self, producer, streaming):
        self.producer = producer

    def unregisterProducer(self):
        self.producer = None

    def pauseProducing(self):
        pass

    def resumeProducing(self):
        pass


class Background:
    """
    The client side of one background revalidation of C{key}, while it runs
    named in the cache's C{revalidating} keys, so that one runs at a time.

    :param factory: the L{netproxy.http.proxy.ProxyFactory}.
    :param head: the L{RequestHead} of the client request that found the
        response stale; its fields select the variant, and the Vary fields
        go upstream.
    :param key: the cache key of the stored response.
    """

    log = Logger()
    peer = "background"

    def __init__(self, factory, head, key):
        self.factory = factory
        self.transport = _Discard()
        fields = [field for field in head.headers if field[0].lower() not in _CLIENT_ONLY]
        self.head = RequestHead(b"GET", head.target, (1, 1), fields)
        self.key = key
        self.exchange = None

    def start(self):
        """
        Send the request.
        """
        self.factory.cache.revalidating.add(self.key)
        self.exchange = Exchange(self, self.head, background=True)
        try:
            self.exchange.begin(b"")
        except HTTPError as error:
            self.fail(error)

    def exchange_done(self, keep_alive, leftover):
        self._done()

    def fail(self, error):
        self.log.warn("background revalidation of {url} failed: {reason}",
                      url=self.head.target.decode("latin-1"), reason=str(error))
        self.abort()

    def abort(self):
        if self.exchange is not None:
            self.exchange.cancel()
        self._done()

    def log_access(self, head, status, size, started, cache="BYPASS"):
        self.factory.finished("-", head, status, size, started, cache)

    def _done(self):
        self.exchange = None
        self.factory.cache.revalidating.discard(self.key)
