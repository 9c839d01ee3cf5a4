"""
The proxy's side of a connection to an origin server: it reads one
response at a time, frames its body, and reports to the exchange it serves.

A connection outlives its exchanges: once a response has been read in full
and the origin agreed to keep the connection, it goes back to the pool for
the next request to the same origin.
"""

from twisted.internet.protocol import Protocol

from netproxy.errors import HTTPError
from netproxy.http.body import make_decoder
from netproxy.http.framing import response_framing
from netproxy.http.head import HeadReader, parse_response_head
from netproxy.http.message import keep_alive, no_delay

REUSABLE_FRAMINGS = ("none", "length", "chunked")


class UpstreamConnection(Protocol):
    """
    A connection to C{origin}, serving one exchange at a time.

    The exchange (see L{netproxy.http.exchange.Exchange}) is told, in
    order: C{response_head(head, framing)}, C{response_body(piece)} for each
    piece, then C{response_done(reusable)}; or C{upstream_failed(error)}
    if the connection breaks first.

    :ivar origin: C{(host, port)}.
    :ivar exchange: the exchange in progress, or L{None} while idle.
    :ivar used: how many exchanges it has served.
    :ivar gauge: a L{netproxy.instruments.Gauge} of open connections to count
        it in, or L{None}.
    """

    def __init__(self, origin, gauge=None):
        self.origin = origin
        self.gauge = gauge
        self.exchange = None
        self.used = 0
        self.idle_since = None
        self.on_idle_lost = None
        self._reader = None
        self._decoder = None
        self._method = None
        self._keep = False

    def connectionMade(self):
        no_delay(self.transport)
        if self.gauge is not None:
            self.gauge.inc()

    def start(self, exchange, method):
        """
        Begin an exchange: its response is the next to arrive.
        """
        self.exchange = exchange
        self.used += 1
        self._method = method
        self._reader = HeadReader(parse_response_head)
        self._decoder = None

    @property
    def response_started(self):
        return self._decoder is not None

    def dataReceived(self, data):
        if self.exchange is None:
            # An idle connection has nothing to say; an origin that talks
            # anyway cannot be trusted with the next request.
            self.transport.loseConnection()
            return
        try:
            self._received(data)
        except HTTPError as error:
            exchange, self.exchange = self.exchange, None
            self.transport.loseConnection()
            exchange.upstream_failed(error)

    def _received(self, data):
        while self._decoder is None:
            head, data = self._reader.feed(data)
            if head is None:
                return
            if 100 <= head.status < 200:
                # Interim responses (100 Continue, 103 Early Hints) are
                # passed on (RFC 9110 15.2); the final one follows.
                self._reader = HeadReader(parse_response_head)
                self.exchange.interim_response(head)
                continue
            framing = response_framing(self._method, head.status, head.version, head.headers)
            self._decoder = make_decoder(framing, error_status=502)
            # A response framed two ways (Transfer-Encoding and Content-Length)
            # may be a splitting attempt: never reuse its connection.
            self._keep = (keep_alive(head.version, head.headers) and framing.kind in REUSABLE_FRAMINGS
                          and not framing.must_close)
            self.exchange.response_head(head, framing)
        if data:
            for piece in self._decoder.feed(data):
                self.exchange.response_body(piece)
        if self._decoder.done and self.exchange is not None:
            # Bytes after the response are a protocol error: never reuse then.
            reusable = self._keep and not self._decoder.rest
            exchange, self.exchange = self.exchange, None
            exchange.response_done(reusable)

    def connectionLost(self, reason):
        if self.gauge is not None:
            self.gauge.dec()
        exchange, self.exchange = self.exchange, None
        if exchange is None:
            if self.on_idle_lost is not None:
                self.on_idle_lost(self)
            return
        if self._decoder is not None:
            try:
                self._decoder.connection_lost()
            except HTTPError as error:
                exchange.upstream_failed(error)
                return
            if self._decoder.done:
                exchange.response_done(False)
                return
        exchange.upstream_failed(HTTPError(502, "the upstream server closed the connection before answering"))
