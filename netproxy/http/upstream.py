# -*- test-case-name: tests.http.test_upstream,tests.http.test_forwarding -*-
"""
The proxy's side of a connection to an origin server: it reads one
response at a time, frames its body, and reports to the exchange it serves.

A connection outlives its exchanges: once a response has been read in full
and the origin agreed to keep the connection, it goes back to the pool for
the next request to the same origin.
"""

from typing import Any, Callable

from twisted.internet.protocol import Protocol, connectionDone
from twisted.python.failure import Failure

from netproxy.errors import HTTPError
from netproxy.http.body import make_decoder
from netproxy.http.framing import response_framing
from netproxy.http.head import HeadReader, parse_response_head
from netproxy.http.interfaces import IResponseReceiver
from netproxy.http.message import Target, keep_alive, no_delay
from netproxy.http.parents import Parent, absolute_form
from netproxy.instruments import Gauge

REUSABLE_FRAMINGS = ("none", "length", "chunked")


class UpstreamConnection(Protocol):
    """
    A connection to C{origin}, serving one exchange at a time: the
    L{IResponseReceiver} it tells of the response, in the order that
    interface says.

    :ivar origin: C{(host, port)}, its key in the pool (a parent's is
        L{Parent.key}).
    :ivar receiver: the L{IResponseReceiver} of the exchange in progress, or
        L{None} while idle.
    :ivar idle_since: when it went back to the pool, by the pool's clock
        (the pool sets it).
    :param gauge: a L{netproxy.instruments.Gauge} of open connections to
        count it in, or L{None}.
    :param on_idle_lost: called with the connection when the origin closes
        it while no exchange uses it (while it is pooled), or L{None}.
    :param parent: the L{Parent} it goes to, which takes requests in
        absolute form, or L{None} for an origin.
    """

    # A TCP transport, and a push producer the exchange pauses and resumes.
    transport: Any
    receiver: IResponseReceiver | None = None
    idle_since: float | None = None
    _reader: HeadReader
    _decoder: Any = None
    _method = b""
    _keep = False

    def __init__(self, origin: tuple[str, int], gauge: Gauge | None = None,
                 on_idle_lost: Callable[["UpstreamConnection"], object] | None = None,
                 parent: Parent | None = None) -> None:
        self.origin = origin
        self._gauge = gauge
        self._on_idle_lost = on_idle_lost
        self.parent = parent

    def connectionMade(self) -> None:
        no_delay(self.transport)
        if self._gauge is not None:
            self._gauge.inc()

    def start(self, receiver: IResponseReceiver, method: bytes) -> None:
        """
        Begin an exchange for C{receiver}, whose request (with C{method}) is
        being sent: its response is the next to arrive.
        """
        self.receiver = receiver
        self._method = method
        self._reader = HeadReader(parse_response_head)
        self._decoder = None

    def request_bytes(self, head: bytes, target: Target) -> bytes:
        """
        :param head: a request head for the origin of C{target}, in
            origin-form.
        :returns: the head to send on this connection: C{head}, or for a
            parent the same in absolute form with the parent's credentials.
        """
        if self.parent is None:
            return head
        return absolute_form(head, target, self.parent)

    def detach(self) -> None:
        """
        The exchange in progress is done with the connection, which tells
        it nothing more: it goes back to the pool, or is closed.
        """
        self.receiver = None

    def dataReceived(self, data: bytes) -> None:
        receiver = self.receiver
        if receiver is None:
            # An idle connection has nothing to say; an origin that talks
            # anyway cannot be trusted with the next request.
            self.transport.loseConnection()
            return
        try:
            self._received(receiver, data)
        except HTTPError as error:
            self.receiver = None
            self.transport.loseConnection()
            receiver.upstream_failed(error)

    def _received(self, receiver: IResponseReceiver, data: bytes) -> None:
        while self._decoder is None:
            head, data = self._reader.feed(data)
            if head is None:
                return
            if 100 <= head.status < 200:
                # Interim responses (100 Continue, 103 Early Hints) are
                # passed on (RFC 9110 15.2); the final one follows.
                self._reader = HeadReader(parse_response_head)
                receiver.interim_response(head)
                continue
            if head.status == 407 and self.parent is not None:
                # Credentials the parent wants are ours to give, not the client's.
                raise self.parent.refused(head.status, head.reason, "the request")
            framing = response_framing(self._method, head.status, head.version, head.headers)
            self._decoder = make_decoder(framing, error_status=502)
            # A response framed two ways (Transfer-Encoding and Content-Length)
            # may be a splitting attempt: never reuse its connection.
            self._keep = (keep_alive(head.version, head.headers) and framing.kind in REUSABLE_FRAMINGS
                          and not framing.must_close)
            receiver.response_head(head, framing)
        if data:
            for piece in self._decoder.feed(data):
                receiver.response_body(piece)
        if self._decoder.done and self.receiver is not None:
            # Bytes after the response are a protocol error: never reuse then.
            reusable = self._keep and not self._decoder.rest
            self.receiver = None
            receiver.response_done(reusable)

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        if self._gauge is not None:
            self._gauge.dec()
        receiver, self.receiver = self.receiver, None
        if receiver is None:
            if self._on_idle_lost is not None:
                self._on_idle_lost(self)
            return
        if self._decoder is not None:
            try:
                self._decoder.connection_lost()
            except HTTPError as error:
                receiver.upstream_failed(error)
                return
            if self._decoder.done:
                receiver.response_done(False)
                return
        receiver.upstream_failed(HTTPError(502, "the upstream server closed the connection before answering"))
