# -*- test-case-name: tests.http.test_range_relay,tests.http.test_caching -*-
"""
A range request that missed, answered from the whole response fetched for
it (Squid's C{range_offset_limit}): its range is cut from the origin's 200
as it streams past (L{RangeRelay}), while the whole is stored.

Once the client has its range, it is answered: its access line is written
and its connection carries its next request, while the rest of the body
is read from the origin and stored on behalf of nobody (L{StoringAlone}
stands in for the client); with nothing to store, the origin's connection
is closed instead.  A client that goes away once it has its range (curl
does) thus leaves the response stored, as Squid's C{quick_abort} would.
"""

from typing import Any

from zope.interface import implementer

from netproxy.errors import HTTPError
from netproxy.http.cache import ranges
from netproxy.http.discard import Discard
from netproxy.http.interfaces import IExchange, IExchangeClient



@implementer(IExchangeClient)
class StoringAlone:
    """
    The client side of an exchange whose client has its whole answer, while
    the origin's response is still read to be stored: nothing more is sent,
    and the exchange's end is not the client's.

    :param client: the client that was answered.
    :param exchange: the exchange it leaves.
    """

    def __init__(self, client: IExchangeClient, exchange: IExchange) -> None:
        self.transport = Discard()
        self.peer = client.peer
        self.factory = client.factory
        self.exchange = exchange

    def fail(self, error: HTTPError) -> None:
        """The rest of the response cannot be had: nothing of it is stored."""
        self.exchange.cancel()

    def abort(self) -> None:
        """The rest of the response was cut short: nothing of it is stored."""
        self.exchange.cancel()

    def exchange_done(self, keep_alive: bool, leftover: bytes) -> None:
        """The response is stored; the client was answered long ago."""

    def log_access(self, head: Any, status: int | None, size: int, started: float, cache: str = "BYPASS") -> None:
        """The client's access line was written when it had its range."""

    def start_tunnel(self, target: Any, rest: bytes) -> None:
        """
        Never: the exchange is a GET being relayed.

        :raises HTTPError: always.
        """
        raise HTTPError(400, "a stored response cannot become a tunnel")


class RangeRelay:
    """
    Cuts a range request's range from the origin's 200 as it is relayed.

    :param exchange: the L{IExchange} relaying it.
    :param first: the first offset the client gets.
    :param last: the last offset it gets (inclusive).
    :param storing: tells whether the response is being stored.
    """

    def __init__(self, exchange: IExchange, first: int, last: int, storing: Any) -> None:
        self.exchange = exchange
        self.cutter = ranges.RangeCutter(first, last)
        self._storing = storing
        self._answered = False

    def relayed(self, piece: bytes) -> bytes:
        """
        :returns: what the client gets of C{piece}, the next bytes of the
            origin's body: the part within its range, or nothing once the
            client is answered (then the rest is stored alone, or not read).
        """
        cut = self.cutter.cut(piece)
        if self._answered or not self.cutter.complete:
            return cut
        self._answered = True
        exchange = self.exchange
        client = exchange.client
        transport = client.transport
        transport.write(cut)
        exchange.sent += len(cut)
        producer = transport.producer
        if producer is not None:
            # The origin's connection, paced by this client until now.
            transport.unregisterProducer()
            producer.resumeProducing()
        exchange.client = StoringAlone(client, exchange)
        client.log_access(exchange.head, exchange.status, exchange.sent, exchange.started, exchange.cache_result)
        client.exchange_done(exchange.keep and exchange.request_done, exchange.leftover)
        exchange.leftover = b""
        if not self._storing():
            # Nothing more is needed of the origin.
            exchange.cancel()
        return b""
