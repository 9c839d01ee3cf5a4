# -*- test-case-name: tests.http.test_interfaces -*-
"""
The seams of one request through the HTTP proxy, written down as Twisted's
C{web/http.py} writes down what L{HTTPChannel} and L{Request} expect of each
other:

  - L{IExchangeClient}: what an exchange uses of the client it answers (a
    client connection, or the proxy itself revalidating in the background);
  - L{IResponseReceiver}: what an upstream connection tells the exchange it
    serves, as the origin's response arrives;
  - L{IExchange}: what the exchange's two sides, the origin's and the
    cache's, use of the exchange they work for.
"""

from typing import Any, Literal

from twisted.internet.interfaces import IReactorTCP, IReactorTime
from zope.interface import Attribute, Interface

from netproxy.errors import HTTPError

#: The states of an exchange, in the order it may pass through them; each
#: is described on L{netproxy.http.exchange.Exchange}.
ExchangeState = Literal["checking", "waiting", "connecting", "sent", "relaying", "discarding", "serving",
                        "finished"]


class IExchangeClient(Interface):
    """
    The client side of an exchange: whom it answers.
    """

    transport: Any = Attribute(
        "Where the response is written: a transport (write, writeSequence, getPeer) that is also a push "
        "producer (paused while the exchange cannot take more of the request) and a consumer (the upstream "
        "connection registers as its producer, with its current one in its producer attribute).")
    peer: str = Attribute("How the client is named in log messages.")
    factory: Any = Attribute(
        "The netproxy.http.proxy.ProxyFactory: the rules, pool, cache, timeouts and metrics the exchange uses.")

    def fail(error: HTTPError) -> None:
        """
        Answer an L{netproxy.errors.HTTPError} with its status and a short
        page, and close; or, when the response has started, cut the
        connection.  The exchange is cancelled.
        """

    def abort() -> None:
        """
        Cut the connection: the response already started cannot be
        completed.  The exchange is cancelled.
        """

    def exchange_done(keep_alive: bool, leftover: bytes) -> None:
        """
        The exchange has sent its whole response.

        :param keep_alive: whether the connection carries another request.
        :param leftover: the bytes read past the request: the start of the
            next one.
        """

    def log_access(head: Any, status: int | None, size: int, started: float, cache: str = "BYPASS") -> None:
        """
        Report the request with L{netproxy.http.head.RequestHead} C{head} to
        the access log: C{status} sent (L{None} for none), C{size} bytes of
        body, C{started} by the reactor's clock, C{cache} the cache status.
        """

    def start_tunnel(target: Any, rest: bytes) -> None:
        """
        Turn the connection into a CONNECT tunnel to the
        L{netproxy.http.message.Target} C{target}; C{rest} holds the bytes
        that followed the CONNECT head.
        """


class IResponseReceiver(Interface):
    """
    What an L{netproxy.http.upstream.UpstreamConnection} tells the exchange
    it serves, in this order: any C{interim_response}s, then
    C{response_head}, C{response_body} for each piece of the body, and
    C{response_done}; or C{upstream_failed} at any point before the end.
    Once told C{response_done} or C{upstream_failed}, the receiver hears
    nothing more.
    """

    def interim_response(head: Any) -> None:
        """
        A 1xx response (L{netproxy.http.head.ResponseHead}) arrived; the
        final response follows.
        """

    def response_head(head: Any, framing: Any) -> None:
        """
        The final response's L{netproxy.http.head.ResponseHead} arrived, its
        body delimited as L{netproxy.http.framing.Framing} C{framing} says.
        """

    def response_body(piece: bytes) -> None:
        """
        The next piece of the response body, decoded from its framing.
        """

    def response_done(reusable: bool) -> None:
        """
        The response is complete; C{reusable} says whether the connection
        may carry another request.
        """

    def upstream_failed(error: HTTPError) -> None:
        """
        The connection broke, or the origin sent something unreadable (an
        L{netproxy.errors.HTTPError} saying what); it is closed.
        """


class IExchange(Interface):
    """
    One request through the proxy, as its origin side
    (L{netproxy.http.forwarding.Forwarding}) and its cache side
    (L{netproxy.http.caching.Caching}) see it: they write its response and
    record how far it got.
    """

    client: IExchangeClient = Attribute("The client it answers.")
    factory: Any = Attribute("The client's netproxy.http.proxy.ProxyFactory.")
    head: Any = Attribute("Its netproxy.http.head.RequestHead.")
    target: Any = Attribute("Its netproxy.http.message.Target, once its head was checked.")
    origin: tuple[str, int] = Attribute("The (host, port) it goes to, when it goes upstream.")
    framing: Any = Attribute("Its request body's netproxy.http.framing.Framing.")
    bodyless: bool = Attribute("Whether the request has no body.")
    client_keep: bool = Attribute("Whether the client asked to keep its connection after the response.")
    background: bool = Attribute("Whether the proxy makes the request on its own, for a client that reads no body.")
    state: ExchangeState = Attribute("Its state (see netproxy.http.exchange.Exchange).")
    request_done: bool = Attribute("Whether the request (its body included) has been read in full.")
    client_paused: bool = Attribute("Whether the exchange has paused the client's transport.")
    pending: bytes = Attribute("Bytes from the client read before the request went upstream.")
    leftover: bytes = Attribute("Bytes from the client past the request: the next request's.")
    status: int | None = Attribute("The status sent to the client, or None before a response started.")
    sent: int = Attribute("The bytes of response body sent to the client.")
    keep: bool = Attribute("Whether the client's connection carries another request after this response.")
    cache_result: str = Attribute("The access log's cache status: BYPASS, MISS, HIT, REVALIDATED or STALE.")
    started: float = Attribute("When its head was read, by the reactor's clock (the access log's time taken).")
    log: Any = Attribute("The twisted.logger.Logger its events go to.")

    def forward(headers: list[tuple[bytes, bytes]]) -> None:
        """
        Send the request upstream with C{headers}.
        """

    def forward_afresh() -> None:
        """
        Send the request upstream as the client sent it: the cache cannot
        answer it after all.
        """

    def client_data(data: bytes) -> None:
        """
        Bytes from the client: request body, then the next request's.

        :raises netproxy.errors.HTTPError: when the request body is
            malformed.
        """

    def pause_client() -> None:
        """
        Read no more from the client (until the exchange ends).
        """

    def answer_locally(status: int, response: bytes, rest: bytes) -> None:
        """
        Answer with C{response}, a whole response of the proxy's own with
        C{status}; C{rest} holds the bytes that followed the request.
        """

    def connection_header() -> tuple[bytes, bytes] | None:
        """
        :returns: the Connection field of a response the proxy makes itself,
            or L{None} for none.
        """

    def connection_field() -> bytes:
        """
        :returns: L{connection_header} as a field line, or C{b""}.
        """

    def finish() -> None:
        """
        The response is complete: write the access log line and hand the
        client's connection back.
        """

    def cancel() -> None:
        """
        The client has gone, or failed: stop everything.
        """


class IFetchReactor(IReactorTCP, IReactorTime):
    """
    What L{netproxy.http.fetch} needs of its reactor, for type checking (as
    treq's own C{_ITreqReactor}): to connect, and a clock.  It stands here,
    not beside the fetch, so that C{netproxy-client}'s reactor type can name
    it without loading treq and C{twisted.web}, which only a fetch needs.
    """
