# -*- test-case-name: tests.http.test_background,tests.http.test_caching -*-
"""
Requests the HTTP proxy makes on its own: the background revalidation of a
stale response served under C{stale-while-revalidate} (RFC 5861 section 3).

A background request runs as an ordinary L{Exchange}, so it revalidates,
refreshes and stores exactly as a client's request would; L{Background}
stands in for the client connection, and drops the response.
"""

from typing import Any

from zope.interface import implementer

from netproxy.escaping import Logger
from netproxy.http.cache.validation import PRECONDITIONS
from netproxy.errors import HTTPError
from netproxy.http.exchange import Exchange
from netproxy.http.head import RequestHead
from netproxy.http.discard import Discard
from netproxy.http.interfaces import IExchangeClient
from netproxy.http.message import Target

# The triggering client's own say over caching and its preconditions stay
# with its request: the background request asks the origin plainly.
_CLIENT_ONLY = PRECONDITIONS | {b"cache-control", b"pragma"}



@implementer(IExchangeClient)
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

    def __init__(self, factory: Any, head: RequestHead, key: bytes) -> None:
        self.factory = factory
        self.transport = Discard()
        fields = [field for field in head.headers if field[0].lower() not in _CLIENT_ONLY]
        self.head = RequestHead(b"GET", head.target, (1, 1), fields)
        self.key = key
        self.exchange: Exchange | None = None

    def start(self) -> None:
        """
        Send the request.
        """
        self.factory.cache.revalidating.add(self.key)
        self.exchange = Exchange(self, self.head, background=True)
        try:
            self.exchange.begin(b"")
        except HTTPError as error:
            self.fail(error)

    def exchange_done(self, keep_alive: bool, leftover: bytes) -> None:
        """
        The response arrived, and was stored or refreshed as it came.
        """
        self._done()

    def fail(self, error: HTTPError) -> None:
        """
        The revalidation could not be made: the stale response stays.
        """
        self.log.warn("background revalidation of {url} failed: {reason}",
                      url=self.head.target.decode("latin-1"), reason=str(error))
        self.abort()

    def abort(self) -> None:
        """
        The revalidation was cut short: nothing of it is stored.
        """
        if self.exchange is not None:
            self.exchange.cancel()
        self._done()

    def log_access(self, head: RequestHead, status: int | None, size: int, started: float,
                   cache: str = "BYPASS") -> None:
        """
        Report the revalidation to the access log, as made by C{-}.
        """
        self.factory.finished("-", head, status, size, started, cache)

    def start_tunnel(self, target: Target, rest: bytes) -> None:
        """
        A background revalidation is a GET: it never becomes a tunnel.

        :raises HTTPError: always.
        """
        raise HTTPError(400, "a background revalidation cannot open a tunnel")

    def _done(self) -> None:
        self.exchange = None
        self.factory.cache.revalidating.discard(self.key)
