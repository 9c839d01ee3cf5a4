# -*- test-case-name: tests.http.test_forwarding,tests.http.test_proxy -*-
"""
The origin's side of an exchange: it takes an idle upstream connection from
the pool (or makes one), streams the request body up and the response body
down with back-pressure both ways, and hands the connection back to the pool
when both sides allow it.  Errors before the response has started become a
short error page; after it, the client's connection is closed, the only
honest way to say the response is cut short.

One timer per exchange bounds every wait with C{--timeout}: for the rest
of the request body (408), for the origin's answer (504), and for each
next piece of the response (the connection is cut).  Progress moves a
timestamp rather than the timer, so a piece costs no timer operation.
"""

from typing import Any

from twisted.internet.defer import CancelledError, Deferred
from twisted.internet.interfaces import IDelayedCall
from twisted.python.failure import Failure
from zope.interface import implementer

from netproxy.dialing import connect_error
from netproxy.errors import HTTPError
from netproxy.escaping import Logger
from netproxy.http.body import LAST_CHUNK, encode_chunk, make_decoder
from netproxy.http.caching import Caching
from netproxy.http.interfaces import IExchange, IResponseReceiver
from netproxy.http.message import forward_headers, response_head_bytes
from netproxy.http.routes import Route, parent_failed
from netproxy.http.upstream import UpstreamConnection

# Methods a stale pooled connection may be retried with (RFC 9110 9.2.2),
# when the request had no body.
IDEMPOTENT = frozenset({b"GET", b"HEAD", b"OPTIONS", b"TRACE", b"PUT", b"DELETE"})


@implementer(IResponseReceiver)
class Forwarding:
    """
    The origin's side of one exchange.

    :param exchange: the L{IExchange} it works for.
    :param caching: the exchange's cache side, told of the response as it
        arrives, or L{None} without a cache.
    :ivar upstream: the L{UpstreamConnection} carrying the request, or
        L{None} while there is none.
    """

    log = Logger()

    upstream: UpstreamConnection | None = None
    _connecting: "Deferred[Any] | None" = None
    _timer: IDelayedCall | None = None
    # When the response last moved, by the reactor's clock.
    _progress = 0.0
    _request_time = 0.0
    _connect_started = 0.0
    # Whether the connection came from the pool, and whether the request
    # was already sent again once because a pooled connection was stale.
    _reused = False
    _retried = False
    # Whether the response body is chunked on its way to the client.
    _chunk_out = False
    # Reads the request body, made when the first of it is uploaded.
    _decoder: Any = None

    def __init__(self, exchange: IExchange, caching: Caching | None) -> None:
        self.exchange = exchange
        self.caching = caching
        self.factory = factory = exchange.factory
        self._clock = factory.reactor
        # The client's transport, where the response goes.
        self._client = exchange.client.transport
        self._chunked_in = exchange.framing.kind == "chunked"
        self._request = b""

    def start(self, request: bytes) -> None:
        """
        Send C{request}, the request's head, upstream; its body follows.
        """
        self._request = request
        exchange = self.exchange
        factory = self.factory
        try:
            route = Route(factory, exchange.target, exchange.origin)
        except HTTPError as error:
            exchange.client.fail(error)
            return
        upstream = factory.pool.take(route.key)
        if upstream is not None:
            self._send(upstream, reused=True)
            return
        exchange.state = "connecting"
        # Read nothing more from the client until the origin is connected.
        exchange.pause_client()
        self._connect_started = factory.reactor.seconds()
        connecting = self._connecting = route.connect()
        connecting.addCallbacks(self._connected, self._not_connected)

    def _connected(self, upstream: UpstreamConnection) -> None:
        self._connecting = None
        self.factory.metrics.connect_seconds.observe(self._clock.seconds() - self._connect_started)
        if self.exchange.state == "finished":
            upstream.transport.loseConnection()
            return
        self._send(upstream, reused=False)

    def _not_connected(self, failure: Failure) -> None:
        self._connecting = None
        if self.exchange.state == "finished" or failure.check(CancelledError):
            return
        if self._stale_on_error():
            return
        error = failure.value if isinstance(failure.value, HTTPError) else None
        self.exchange.client.fail(error or connect_error(failure, self.exchange.target.authority.decode("ascii")))

    def _stale_on_error(self) -> bool:
        """
        :returns: whether the cache answered instead, under stale-if-error.
        """
        if self.caching is None:
            return False
        self._cancel_timer()
        return self.caching.serve_stale_on_error()

    def _send(self, upstream: UpstreamConnection, reused: bool) -> None:
        exchange = self.exchange
        self.upstream = upstream
        self._reused = reused
        exchange.state = "sent"
        upstream.start(self, exchange.head.method)
        upstream.transport.write(upstream.request_bytes(self._request, exchange.target))
        clock = self._clock
        self._request_time = self._progress = clock.seconds()
        self._timer = clock.callLater(self.factory.timeout, self._timed_out)
        data, exchange.pending = exchange.pending, b""
        try:
            if exchange.request_done:
                # Sent again, after the cache could not answer: the request
                # was read, and what follows is the next one.
                exchange.client_data(data)
            elif exchange.bodyless:
                # Nothing to upload: what follows the head is the next request.
                exchange.request_done, exchange.leftover = True, data
            else:
                self.upload(data)
        except HTTPError as error:
            # A bad request body that arrived before the connection did:
            # refused like one arriving later (ProxyProtocol.dataReceived),
            # rather than lost in the connection Deferred.
            exchange.client.fail(error)
            return
        if self.upstream is not upstream:
            # The exchange was cancelled meanwhile.
            return
        if not exchange.request_done:
            # Back-pressure on the upload: a slow origin pauses the client.
            upstream.transport.registerProducer(self._client, True)
        if exchange.client_paused:
            # Paused while connecting; read-ahead is bounded from here on.
            self._client.resumeProducing()
            exchange.client_paused = False

    def upload(self, data: bytes) -> None:
        """
        Send on C{data}, the next bytes of the request body from the client
        (with, once the body is complete, the start of the next request).

        :raises HTTPError: when the request body is malformed.
        """
        exchange = self.exchange
        decoder = self._decoder
        if decoder is None:
            decoder = self._decoder = make_decoder(exchange.framing, 400)
        pieces = decoder.feed(data)
        assert self.upstream is not None
        transport = self.upstream.transport
        write = transport.write
        for piece in pieces:
            if self._chunked_in:
                transport.writeSequence(encode_chunk(piece))
            else:
                write(piece)
        if pieces:
            # The origin's time to answer runs from the end of the upload,
            # so a long upload that keeps moving is not a 504.
            self._progress = self._clock.seconds()
        if decoder.done:
            if self._chunked_in:
                write(LAST_CHUNK)
            exchange.request_done = True
            exchange.leftover = decoder.rest
            if transport.producer is not None:
                transport.unregisterProducer()
                # The origin may have paused the upload just now: the
                # client is resumed when the exchange ends.
                exchange.client_paused = True

    def interim_response(self, head: Any) -> None:
        """
        The origin sent a 1xx response: pass it on to an HTTP/1.1 client
        (HTTP/1.0 clients must never see one), except 101, since the
        proxy does not carry protocol upgrades.
        """
        if self.exchange.head.version == (1, 1) and head.status != 101:
            # No 1xx has a body, nor may say it has (RFC 9110 section 8.6).
            headers = [field for field in forward_headers(head.headers, via_version=head.version,
                                                          pseudonym=self.factory.pseudonym)
                       if field[0].lower() != b"content-length"]
            self._client.write(response_head_bytes(head.status, head.reason, headers))
        self._progress = self._clock.seconds()

    def response_head(self, head: Any, framing: Any) -> None:
        """
        The origin's response head arrived: send ours to the client, unless
        the cache answers instead.
        """
        exchange = self.exchange
        now = self._progress = self._clock.seconds()
        self.factory.metrics.response_seconds.observe(now - self._request_time)
        if self.upstream is not None and self.upstream.parent is not None:
            self.factory.parents.answered(self.upstream.parent)
        headers = forward_headers(head.headers, via_version=head.version, pseudonym=self.factory.pseudonym)
        if framing.kind in ("chunked", "close") or head.status == 204:
            # A Content-Length beside Transfer-Encoding is overridden by it
            # and must not be forwarded (RFC 9112 section 6.3): the body
            # we send is framed differently.  A 204 must not have one at
            # all (RFC 9110 section 8.6).
            headers = [field for field in headers if field[0].lower() != b"content-length"]
        client_11 = exchange.head.version == (1, 1)
        # A body the origin ends by closing is chunked for an HTTP/1.1
        # client, whose connection then outlives it.
        chunk_out = framing.kind in ("chunked", "close") and client_11
        if chunk_out:
            headers.append((b"Transfer-Encoding", b"chunked"))
        # A response that starts before the upload is complete ends the
        # connection (see response_done): say so in its head.
        keep = (exchange.client_keep and exchange.request_done
                and (framing.kind in ("none", "length") or chunk_out))
        if not keep:
            headers.append((b"Connection", b"close"))
        elif not client_11:
            headers.append((b"Connection", b"keep-alive"))
        caching = self.caching
        if caching is not None:
            cached = caching.response_fields(head, framing, headers, self._request_time, now)
            if cached is None:
                exchange.state = "discarding"
                return
            headers = cached
        exchange.state = "relaying"
        status, reason = (head.status, head.reason) if caching is None else caching.relay_status(head)
        exchange.status = status
        exchange.keep = keep
        self._chunk_out = chunk_out
        self._client.write(response_head_bytes(status, reason, headers))
        # Back-pressure on the download: a slow client pauses the origin.
        assert self.upstream is not None
        self._client.registerProducer(self.upstream.transport, True)
        if caching is not None and caching.leading:
            caching.settle(head, framing, self._request_time, now)

    def response_body(self, piece: bytes) -> None:
        """
        Relay a piece of the response body.
        """
        self._progress = self._clock.seconds()
        exchange = self.exchange
        if exchange.state in ("discarding", "finished"):
            return
        caching = self.caching
        if caching is not None:
            caching.response_body(piece)
            piece = caching.relayed(piece)
        exchange.sent += len(piece)
        if self._chunk_out:
            self._client.writeSequence(encode_chunk(piece))
        else:
            self._client.write(piece)

    def response_done(self, reusable: bool) -> None:
        """
        The response is complete; C{reusable} says whether the origin's
        connection may carry another request.
        """
        exchange = self.exchange
        caching = self.caching
        if exchange.state == "discarding":
            self._release(reusable and exchange.request_done)
            assert caching is not None
            caching.serve_replacement()
            return
        if caching is not None:
            caching.response_done()
        if self._chunk_out:
            self._client.write(LAST_CHUNK)
        self._release(reusable and exchange.request_done)
        exchange.finish()

    def upstream_failed(self, error: HTTPError) -> None:
        """
        The origin's connection broke, or sent something unreadable.
        """
        self._cancel_timer()
        upstream, self.upstream = self.upstream, None
        if upstream is not None and upstream.transport.connected:
            upstream.transport.loseConnection()
        exchange = self.exchange
        if exchange.status is None:
            stale = self._reused and not self._retried
            if upstream is not None and upstream.parent is not None:
                error = parent_failed(self.factory, upstream.parent, error, stale)
            if stale and exchange.head.method in IDEMPOTENT and exchange.bodyless:
                # The pooled connection was closed by the origin just as we
                # reused it: try once more on a fresh one.
                self._retried = True
                exchange.pending, exchange.leftover = exchange.leftover, b""
                exchange.request_done = False
                self._decoder = None
                self.start(self._request)
                return
            if self._stale_on_error():
                return
            exchange.client.fail(error)
        else:
            self.log.warn("response from {origin} to {peer} cut short: {reason}",
                          origin=exchange.target.authority.decode("ascii"), peer=exchange.client.peer,
                          reason=str(error))
            exchange.client.abort()

    def _timed_out(self) -> None:
        timeout = self.factory.timeout
        idle = self._clock.seconds() - self._progress
        if idle < timeout:
            self._timer = self._clock.callLater(timeout - idle, self._timed_out)
            return
        self._timer = None
        upstream, self.upstream = self.upstream, None
        if upstream is not None:
            upstream.detach()
            upstream.transport.loseConnection()
        exchange = self.exchange
        authority = exchange.target.authority.decode("ascii")
        if exchange.status is not None:
            # Either side may have stalled (a client that stops reading
            # pauses the origin): the response cannot be completed.
            self.log.warn("response from {origin} to {peer} stalled for {timeout} seconds: closing",
                          origin=authority, peer=exchange.client.peer, timeout=timeout)
            exchange.client.abort()
        elif not exchange.request_done:
            exchange.client.fail(HTTPError(408, f"the request body was not received within {timeout:g} seconds"))
        else:
            if upstream is not None and upstream.parent is not None:
                authority = f"parent proxy {upstream.parent.name} (asked for {authority})"
            exchange.client.fail(HTTPError(504, f"{authority} did not answer within {timeout:g} seconds"))

    def cancel(self) -> None:
        """
        The exchange is cancelled: stop connecting, and close the upstream
        connection.
        """
        self._cancel_timer()
        if self._connecting is not None:
            self._connecting.cancel()
        self._release(False)

    def _release(self, reusable: bool) -> None:
        """
        Hand the upstream connection back to the pool when C{reusable},
        else close it.
        """
        self._cancel_timer()
        upstream, self.upstream = self.upstream, None
        if upstream is None:
            return
        transport = upstream.transport
        if self._client.producer is transport:
            self._client.unregisterProducer()
            # The client's back-pressure may have paused it on the last
            # write; paused in the pool, it would never read its next response.
            transport.resumeProducing()
        if transport.producer is not None:
            transport.unregisterProducer()
        upstream.detach()
        if reusable:
            self.factory.pool.put(upstream.origin, upstream)
        else:
            transport.loseConnection()

    def _cancel_timer(self) -> None:
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None
