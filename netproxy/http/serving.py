# -*- test-case-name: tests.http.test_serving,tests.http.test_caching -*-
"""
Answering a client from the cache: a stored response sent whole, as a 304
when the client's own preconditions hold for it, or as the 206 (or 416) a
range request asks for (RFC 9110 section 14, RFC 9111 section 3.4).

L{Serving} is the part of the cache's side of an exchange
(L{netproxy.http.caching.Caching}) that writes stored responses; deciding
whether one may be used is the caching side's, and the policy's.
"""

from typing import Any

from twisted.internet.defer import CancelledError, Deferred
from twisted.python.failure import Failure

from netproxy.escaping import Logger
from netproxy.http.cache import policy, ranges
from netproxy.http.cache.entry import BodyAbandoned, DamagedEntry, StreamStopped
from netproxy.http.cache.fields import MAX_DELTA, Fields
from netproxy.http.cache.responses import Cache, Found
from netproxy.http.cache.validation import not_modified
from netproxy.http.interfaces import IExchange
from netproxy.http.message import response_head_bytes

# The status lines of what a range request gets instead of the stored 200.
_PARTIAL = (206, b"Partial Content")
_UNSATISFIABLE = (416, b"Range Not Satisfiable")


def range_answer(found: Found, request: Fields) -> tuple[int, int] | str | None:
    """
    What a GET with C{Range} gets from a stored response (RFC 9111 section
    3.4): only a 200 is cut, and only when C{If-Range} (if any) holds.

    :returns: as L{ranges.requested_range}: the C{(first, last)} bytes for a
        206, L{ranges.UNSATISFIABLE} for a 416, or L{None} for the full
        response.
    """
    if found.stored.status != 200 or not ranges.if_range_holds(request.headers, found.stored.headers):
        return None
    return ranges.requested_range(request.headers, found.entry.length)


class Serving:
    """
    Sending stored responses to one exchange's client.

    :param exchange: the L{IExchange} it works for.
    :param cache: the proxy's L{Cache}.
    :ivar request: the request's fields, as the policy reads them (each once).
    """

    log = Logger()

    # The Cache-Status "fwd" parameter: why the request went upstream.
    _fwd: str | None = None
    # Sending a stored response: fires when it is sent.
    _serving: "Deferred[None] | None" = None

    def __init__(self, exchange: IExchange, cache: Cache) -> None:
        self.exchange = exchange
        self.cache = cache
        self.request = Fields(exchange.head.headers)

    def _serve(self, found: Found, result: str, status_field: bytes) -> None:
        """
        Answer the client with a stored response (or 304, when its own
        preconditions hold for it; or the part a range request asks for).

        :param result: the access log's cache status.
        :param status_field: the response's Cache-Status.
        """
        exchange = self.exchange
        exchange.cache_result = result
        exchange.request_done = True
        # Pipelined bytes: read before the request went upstream, or since.
        exchange.leftover, exchange.pending = exchange.pending + exchange.leftover, b""
        stored, entry = found.stored, found.entry
        age = policy.current_age(stored, exchange.factory.reactor.seconds())
        with_body = exchange.head.method != b"HEAD" and entry.length and not exchange.background
        window = None
        if stored.status == 200 and not_modified(self.request, stored.headers):
            exchange.status, with_body = 304, False
            first, length = response_head_bytes(304, b"Not Modified", found.fields)[:-2], None
        else:
            exchange.status, first = stored.status, found.head
            length = None if stored.status == 204 else entry.length
            ranged = with_body and b"range" in self.request.names and exchange.head.method == b"GET"
            answer = range_answer(found, self.request) if ranged else None
            if answer == ranges.UNSATISFIABLE:
                exchange.status, with_body, length = 416, False, 0
                first = self._partial_head(found, _UNSATISFIABLE, ranges.unsatisfied_range(entry.length))
            elif isinstance(answer, tuple):
                window = answer
                length = answer[1] - answer[0] + 1
                exchange.status = 206
                first = self._partial_head(found, _PARTIAL, ranges.content_range(answer[0], answer[1], entry.length))
        head = self._stored_head(first, age, status_field, length)
        transport = exchange.client.transport
        store = self.cache.store
        body = store.held_body(entry) if with_body else None
        if body is not None:
            # A small body held in memory: sent with its head, in one write.
            if window is not None:
                body = body[window[0]:window[1] + 1]
            exchange.sent = len(body)
            transport.writeSequence([head, body])
            self._served(None)
        elif with_body:
            exchange.state = "serving"
            serving = self._serving = store.read(entry, transport, window)
            if serving.called:
                # A small body is checked before anything is sent: a damaged
                # one was discarded, and the origin is asked instead.
                serving.addErrback(self._damaged_before_sending)
                if self._serving is None:
                    return
            transport.write(head)
            exchange.sent = entry.length if length is None else length
            serving.addBoth(self._served)
        else:
            transport.write(head)
            self._served(None)

    def _partial_head(self, found: Found, status: tuple[int, bytes], value: bytes) -> bytes:
        """
        :returns: the status line and fields of a 206 or 416 cut from
            C{found}, with C{Content-Range: value} (its own replaced), less
            the empty line that ends a head.
        """
        fields = [field for field in found.fields if field[0].lower() != b"content-range"]
        fields.append((b"Content-Range", value))
        return response_head_bytes(status[0], status[1], fields)[:-2]

    def _stored_head(self, first: bytes, age: float, status_field: bytes, length: int | None) -> bytes:
        """
        :returns: the head a stored response is served with: C{first}, its
            status line and fields (L{Found.head}); its C{age}; its
            Cache-Status; its Content-Length (L{None}: none).
        """
        exchange = self.exchange
        exchange.keep = exchange.client_keep
        framing = b"" if length is None else b"Content-Length: %d\r\n" % (length,)
        return b"%sAge: %d\r\nCache-Status: %s\r\n%s%s\r\n" % (
            first, min(age, MAX_DELTA), status_field, framing, exchange.connection_field())

    def _damaged_before_sending(self, failure: Failure) -> None:
        failure.trap(DamagedEntry)
        exchange = self.exchange
        self.log.warn("discarded damaged cache entry for {url}: {reason}",
                      url=exchange.head.target.decode("latin-1"), reason=failure.getErrorMessage())
        self._serving = None
        exchange.status = None
        exchange.request_done = False
        exchange.pending, exchange.leftover = exchange.leftover, b""
        exchange.cache_result, self._fwd = "MISS", "miss"
        exchange.forward_afresh()

    def _served(self, result: Any) -> None:
        self._serving = None
        exchange = self.exchange
        if exchange.state == "finished":
            return
        if isinstance(result, Failure):
            if not result.check(StreamStopped, CancelledError, DamagedEntry, BodyAbandoned):
                self.log.failure("sending a stored response failed", result)
            elif result.check(DamagedEntry, BodyAbandoned):
                self.log.warn("response for {url} from the cache cut short: {reason}",
                              url=exchange.head.target.decode("latin-1"), reason=result.getErrorMessage())
            exchange.client.abort()
            return
        exchange.finish()
