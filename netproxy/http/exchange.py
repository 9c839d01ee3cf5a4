# -*- test-case-name: tests.http.test_exchange,tests.http.test_proxy -*-
"""
One request through the HTTP proxy, from its parsed head to the last byte
of its response.

The exchange checks the request against the proxy's rules and sends it on
its way: refused, turned into a CONNECT tunnel, answered by the proxy
itself (L{netproxy.http.admin}), by the cache (L{netproxy.http.caching}) or
by the origin (L{netproxy.http.forwarding}).  Whoever answers, the exchange
ends here: one access log line, and the client's connection handed back for
its next request, or closed.
"""

from typing import Any

from zope.interface import implementer

from netproxy.errors import HTTPError
from netproxy.escaping import Logger
from netproxy.http import admin
from netproxy.http.caching import Caching
from netproxy.http.cache.validation import PRECONDITIONS
from netproxy.http.forwarding import Forwarding
from netproxy.http.framing import Framing, request_framing
from netproxy.http.interfaces import ExchangeState, IExchange, IExchangeClient
from netproxy.http.message import Target, forward_headers, is_loop, keep_alive, parse_target, request_head_bytes

# Bytes of pipelined requests read ahead while a response is in flight,
# past which the client is no longer read from until it is complete.
MAX_READ_AHEAD = 64 * 1024


@implementer(IExchange)
class Exchange:
    """
    One proxied request.

    An exchange is in one of these states (C{state}), in this order, though
    most exchanges skip most of them:

      - C{checking}: its head has been read and is being checked.
      - C{waiting}: its response is a miss another exchange is fetching
        (collapsed forwarding): it waits, its client paused, until that
        response's head says whether it may follow it, and its cache side
        is resumed (L{Caching.resume}).
      - C{connecting}: connecting to the origin, its client paused.
      - C{sent}: its head has gone upstream; the origin has not answered.
      - C{relaying}: the origin's response is relayed to the client (and
        stored, when the cache may keep it).
      - C{discarding}: the origin's response is read to its end and dropped,
        since a stored response answers instead: refreshed by a 304, or
        stale after a 5xx (stale-if-error).
      - C{serving}: a stored response, or one another exchange is fetching,
        is being sent from the cache.
      - C{finished}: its response is complete, or it was cancelled; nothing
        more happens.

    Across states, it records how far the request and the response got:

    :ivar request_done: the request, its body included, has been read in
        full; the client's bytes from then on are the next request's, held
        in C{leftover}.  An origin may answer before that (an early
        response); the upload then goes on while the response is relayed.
    :ivar client_paused: the exchange has paused the client's transport
        (connecting, waiting, or too much read ahead) until it ends.
    :ivar pending: bytes from the client read before the request went
        upstream, sent when it does.
    :ivar status: the status sent, or L{None} before a response started.
    :ivar forwarding: its origin side, once it goes upstream.
    :ivar caching: its cache side, when the proxy has a cache.

    :param client: the L{IExchangeClient} it came from.
    :param head: its L{netproxy.http.head.RequestHead}.
    :param background: whether the proxy makes it on its own.
    """

    log = Logger()

    # Set by begin, before anything reads them.
    target: Target
    origin: tuple[str, int]
    framing: Framing
    bodyless: bool
    client_keep: bool
    # Defaults until the exchange gets that far: most never set most.
    state: ExchangeState = "checking"
    status: int | None = None
    sent = 0
    request_done = False
    client_paused = False
    pending = b""
    leftover = b""
    keep = False
    cache_result = "BYPASS"
    background = False
    forwarding: Forwarding | None = None
    caching: Caching | None = None

    def __init__(self, client: IExchangeClient, head: Any, background: bool = False) -> None:
        self.client = client
        self.factory = client.factory
        self.head = head
        self.started: float = self.factory.reactor.seconds()
        if background:
            self.background = True

    def begin(self, rest: bytes) -> None:
        """
        Check the request and start answering it; C{rest} holds the bytes
        that followed its head.

        :raises HTTPError: when the request is refused.
        """
        head = self.head
        # A loop is refused before anything else, the proxy's own pages and
        # PURGE included: a request the proxy sent itself comes from its
        # own address, an --admin one by default (netproxy.http.loops).
        if is_loop(head.headers, self.factory.pseudonym):
            raise HTTPError(403, "forwarding loop: this request has already passed through netproxy")
        if head.target[:1] == b"/" and head.method != b"CONNECT":
            if is_loop(head.headers, any_netproxy=True):
                # Another netproxy's client asking for this proxy's pages.
                raise HTTPError(403, "forwarding loop: this request has already passed through netproxy")
            self._read_framing()
            admin.page(self, rest)
            return
        self.target = target = parse_target(head.method, head.target)
        host = target.host.decode("ascii")
        if self.factory.listening.match(host, target.port) is not None:
            raise HTTPError(403, f"forwarding loop: {target.authority.decode('ascii')} is this proxy itself")
        rule = self.factory.rules.match(host, target.port)
        if rule is not None:
            raise HTTPError(403, f"destination {target.authority.decode('ascii')} is blocked by rule {rule}")
        if head.method == b"CONNECT":
            self.client.start_tunnel(target, rest)
            return
        framing = self._read_framing()
        if head.method == b"PURGE":
            admin.purge(self, rest)
            return
        self.origin = (host, target.port)
        self.pending = rest
        checks = None
        cache = self.factory.cache
        if cache is not None:
            caching = self.caching = Caching(self, cache)
            if head.method in (b"GET", b"HEAD") and self.bodyless:
                checks = caching.consult()
                if checks is None:
                    return
        headers = forward_headers(head.headers, target, via_version=head.version, pseudonym=self.factory.pseudonym)
        if framing.kind == "chunked":
            # The body is re-chunked on its way up: say so, or the origin
            # would read the chunks as the next request.
            headers.append((b"Transfer-Encoding", b"chunked"))
        if checks:
            # The cache's validators replace the client's preconditions,
            # which are answered from the refreshed entry.
            headers = [field for field in headers if field[0].lower() not in PRECONDITIONS] + checks
        if self.caching is not None:
            headers = self.caching.upstream_fields(headers)
        self.forward(headers)

    def _read_framing(self) -> Framing:
        framing = self.framing = request_framing(self.head.version, self.head.headers)
        self.bodyless = framing.kind == "none"
        self.client_keep = keep_alive(self.head.version, self.head.headers)
        return framing

    def forward(self, headers: list[tuple[bytes, bytes]]) -> None:
        """Send the request upstream with C{headers}."""
        forwarding = self.forwarding
        if forwarding is None:
            forwarding = self.forwarding = Forwarding(self, self.caching)
        forwarding.start(request_head_bytes(self.head.method, self.target.path, headers))

    def forward_afresh(self) -> None:
        """
        Send the request upstream as the client sent it (it has no body):
        the cache could not answer it after all.
        """
        self.forward(forward_headers(self.head.headers, self.target, via_version=self.head.version,
                                     pseudonym=self.factory.pseudonym))

    def client_data(self, data: bytes) -> None:
        """
        Bytes from the client while this exchange runs: request body, then
        the start of the next pipelined request.

        :raises HTTPError: when the request body is malformed.
        """
        if self.request_done:
            self.leftover += data
            if len(self.leftover) > MAX_READ_AHEAD:
                self.pause_client()
        elif self.state == "sent" or self.state == "relaying":
            assert self.forwarding is not None
            self.forwarding.upload(data)
        else:
            self.pending += data

    def pause_client(self) -> None:
        """Read no more from the client until the exchange ends."""
        if not self.client_paused:
            self.client.transport.pauseProducing()
            self.client_paused = True

    def answer_locally(self, status: int, response: bytes, rest: bytes) -> None:
        """
        Answer with C{response}, a whole response of the proxy's own (a page,
        or the outcome of a PURGE) with C{status}; C{rest} holds the bytes
        that followed the request.
        """
        self.status = status
        self.sent = len(response.partition(b"\r\n\r\n")[2])
        self.request_done, self.keep, self.leftover = True, self.client_keep, rest
        self.client.transport.write(response)
        self.finish()

    def connection_header(self) -> tuple[bytes, bytes] | None:
        """
        :returns: the Connection field of a response the proxy makes itself:
            C{close} when the client's connection ends with it, C{keep-alive}
            for an HTTP/1.0 client whose connection stays; or L{None}.
        """
        if not self.client_keep:
            return (b"Connection", b"close")
        if self.head.version != (1, 1):
            return (b"Connection", b"keep-alive")
        return None

    def connection_field(self) -> bytes:
        """:returns: L{connection_header} as a field line, or C{b""}."""
        field = self.connection_header()
        return b"" if field is None else b"%s: %s\r\n" % field

    def finish(self) -> None:
        """
        The response is complete: write the access log line and hand the
        client's connection back, for its next request or to be closed.
        """
        self.state = "finished"
        self.client.log_access(self.head, self.status, self.sent, self.started, self.cache_result)
        self.client.exchange_done(self.keep and self.request_done, self.leftover)

    def cancel(self) -> None:
        """The client has gone, or failed: stop everything."""
        caching = self.caching
        if self.state == "waiting":
            assert caching is not None
            caching.stop_waiting()
        self.state = "finished"
        if self.forwarding is not None:
            self.forwarding.cancel()
        if caching is not None:
            caching.release()
