"""
One request through the HTTP proxy, from its parsed head to the last byte
of its response.

The exchange checks the request against the proxy's rules, takes an idle
upstream connection from the pool (or makes one), streams the request body
up and the response body down with back-pressure both ways, and hands the
connection back to the pool when both sides allow it.  Errors before the
response has started become a short error page; after it, the client's
connection is closed, the only honest way to say the response is cut short.

One timer per exchange bounds every wait with C{--timeout}: for the rest
of the request body (408), for the origin's answer (504), and for each
next piece of the response (the connection is cut).  Progress moves a
timestamp rather than the timer, so a piece costs no timer operation.
"""

from functools import partial
from math import floor

from twisted.internet.defer import CancelledError
from twisted.internet.protocol import Factory
from twisted.logger import Logger

from netproxy.http.cache import policy
from netproxy.http.cache.responses import Fetch, cache_key
from netproxy.http.cache.fields import MAX_DELTA, directives
from netproxy.http.cache.invalidation import SAFE_METHODS, invalidated_urls
from netproxy.http.cache.status import cache_status, hit_status
from netproxy.http.cache.entry import BodyAbandoned, DamagedEntry, StreamStopped
from netproxy.http.cache.validation import PRECONDITIONS, not_modified, validators
from netproxy.dialing import connect_checked, connect_failure_reason
from netproxy.errors import Blocked, HTTPError
from netproxy.http import admin
from netproxy.http.body import LAST_CHUNK, encode_chunk, make_decoder
from netproxy.http.framing import request_framing
from netproxy.http.message import (
    forward_headers,
    is_loop,
    keep_alive,
    parse_target,
    request_head_bytes,
    response_head_bytes,
)
from netproxy.http.upstream import UpstreamConnection

# Bytes of pipelined requests read ahead while a response is in flight,
# past which the client is no longer read from until it is complete.
MAX_READ_AHEAD = 64 * 1024

# Methods a stale pooled connection may be retried with (RFC 9110 9.2.2),
# when the request had no body.
IDEMPOTENT = frozenset({b"GET", b"HEAD", b"OPTIONS", b"TRACE", b"PUT", b"DELETE"})

def connect_error(failure, target):
    """
    :returns: the L{HTTPError} answering a failed connection to C{target}:
        403 for a blocked address, 504 for a timeout, 502 otherwise.
    """
    authority = target.authority.decode("ascii")
    if failure.check(Blocked):
        return HTTPError(403, f"destination {authority} is blocked: it {failure.getErrorMessage()}")
    reason = connect_failure_reason(failure)
    return HTTPError(504 if reason == "timed out" else 502, f"could not connect to {authority}: {reason}")


class Exchange:
    """
    One proxied request.

    :param client: the L{netproxy.http.proxy.ProxyProtocol} it came on.
    :param head: its L{netproxy.http.head.RequestHead}.
    """

    log = Logger()

    # Defaults until the exchange gets that far; class attributes, since
    # most exchanges (cache hits among them) never set most of them.
    target = None
    upstream = None
    status = None
    sent = 0
    request_done = False
    leftover = b""
    keep = False
    client_paused = False
    _pending = b""
    _connecting = None
    _timer = None
    _progress = 0.0
    _reused = False
    _retried = False
    _chunk_out = False
    _finished = False
    _request_time = 0.0
    _connect_started = 0.0
    # The cache's part: the status word of the access log, the stored
    # response consulted, and what becomes of the origin's answer.
    cache_result = "BYPASS"
    _key = None
    _found = None
    _assessment = None
    _fwd = None
    _revalidating = False
    _swallow = None
    _fill = None
    _serving = None
    # Collapsed forwarding: fetching a miss others may wait for, or waiting.
    _leading = False
    _waiting = False
    _fetch = None
    #: A request the proxy makes on its own (a background revalidation),
    #: for a client that reads no body.
    background = False

    def __init__(self, client, head):
        self.client = client
        self.factory = client.factory
        self.head = head
        self.started = self.factory.reactor.seconds()

    def begin(self, rest):
        """
        Check the request and start forwarding it; C{rest} holds the bytes
        that followed its head.

        :raises HTTPError: when the request is refused.
        """
        head = self.head
        if head.target[:1] == b"/" and head.method != b"CONNECT":
            self._read_framing()
            admin.page(self, rest)
            return
        self.target = target = parse_target(head.method, head.target)
        if is_loop(head.headers):
            raise HTTPError(403, "forwarding loop: this request has already passed through netproxy")
        host = target.host.decode("ascii")
        rule = self.factory.rules.match(host, target.port)
        if rule is not None:
            raise HTTPError(403, f"destination {target.authority.decode('ascii')} is blocked by rule {rule}")
        if head.method == b"CONNECT":
            self.client.start_tunnel(target, rest)
            return
        self._read_framing()
        if head.method == b"PURGE":
            admin.purge(self, rest)
            return
        self.origin = (host, target.port)
        self._pending = rest
        checks = []
        cache = self.factory.cache
        if cache is not None and head.method in (b"GET", b"HEAD") and self.bodyless:
            checks = self._consult(cache)
            if checks is None:
                return
        headers = forward_headers(head.headers, target, via_version=head.version)
        if self._chunked_in:
            # The body is re-chunked on its way up: say so, or the origin
            # would read the chunks as the next request.
            headers.append((b"Transfer-Encoding", b"chunked"))
        if checks:
            headers = [field for field in headers if field[0].lower() not in PRECONDITIONS] + checks
        self._forward(headers)

    def _read_framing(self):
        framing = request_framing(self.head.version, self.head.headers)
        self.decoder = make_decoder(framing, 400)
        self._chunked_in = framing.kind == "chunked"
        self.bodyless = framing.kind == "none"
        self.client_keep = keep_alive(self.head.version, self.head.headers)

    def answer_locally(self, status, response, rest):
        """
        Answer with C{response}, a whole response of the proxy's own (a page,
        or the outcome of a PURGE) with C{status}; C{rest} holds the bytes
        that followed the request.
        """
        self.status = status
        self.sent = len(response.partition(b"\r\n\r\n")[2])
        self.request_done, self.keep, self.leftover = True, self.client_keep, rest
        self.client.transport.write(response)
        self._served(None)

    def _forward_afresh(self):
        # The cache could not answer after all: the client's request as it
        # came (it has no body), without the cache's validators.
        self._forward(forward_headers(self.head.headers, self.target, via_version=self.head.version))

    def _forward(self, headers):
        self.request_bytes = request_head_bytes(self.head.method, self.target.path, headers)
        self._connect()

    def _consult(self, cache):
        """
        Look for a stored response: serve it when it may be reused,
        otherwise prepare what goes upstream.

        :returns: the cache's validators, which replace the client's own
            preconditions when it revalidates a stored response (the
            client's are answered from the refreshed entry); L{None} when
            served.
        :raises HTTPError: 504 when the client asked only-if-cached and
            nothing usable is stored.
        """
        self._key = cache_key(self.target)
        found = cache.find(self._key, self.head.headers)
        self.cache_result = "MISS"
        checks = []
        if found is None:
            self._fwd = "uri-miss"
            only_if_cached = "only-if-cached" in directives(self.head.headers)
            if not only_if_cached and self._collapse(cache):
                return None
        else:
            now = self.factory.reactor.seconds()
            assessment = policy.assess(self.head.headers, found.stored, now)
            if assessment.usable:
                self._serve(found, "HIT", hit_status(floor(assessment.ttl)))
                return None
            if assessment.stale_while_revalidate and not self.background:
                self._serve(found, "STALE", cache_status(
                    hit=True, ttl=assessment.ttl, detail="stale-while-revalidate"))
                if self._key not in cache.revalidating:
                    self.factory.revalidate(self.head, self._key)
                return None
            self._found, self._assessment, self._fwd = found, assessment, assessment.fwd
            only_if_cached = assessment.only_if_cached
            if found.stored.status == 200:
                checks = validators(found.stored.headers)
                self._revalidating = bool(checks)
        if only_if_cached:
            raise HTTPError(504, "only-if-cached: no stored response is fresh enough")
        return checks

    def _collapse(self, cache):
        """
        Collapsed forwarding of a miss: follow the response being stored for
        the key, or wait for the request already fetching it, or lead
        (fetch it for the others that come meanwhile).

        :returns: whether this request is answered, or will be, without
            going upstream itself.
        """
        if self.background or self.head.method != b"GET" or not policy.collapsible(self.head.headers):
            return False
        fetch = cache.fetching(self._key)
        if fetch is not None:
            return self._may_share(fetch) and self._follow(fetch)
        if cache.lead(self._key):
            self._leading = True
            return False
        cache.wait(self._key, self)
        self._waiting = True
        self._pause_client()
        return True

    def _settle(self, head=None, framing=None):
        """
        The leader's response head arrived (C{head}, with its C{framing}), or
        none will: hand the response being stored to each waiting request
        that may share it, and send the others upstream on their own.
        """
        self._leading = False
        if head is not None and self._fill is not None and framing.kind == "length":
            stored = policy.Stored(head.status, head.headers, self._request_time, self._progress)
            self._fetch = Fetch(self._fill, head, framing.length, stored, self.head.headers)
        # else a body of unknown length cannot be framed for the waiters
        # before it ends: waiting that long would not be collapsing.
        for waiter in self.factory.cache.settle(self._key, self._fetch):
            waiter._waiting = False
            if not (self._fetch is not None and waiter._may_share(self._fetch) and waiter._follow(self._fetch)):
                waiter._forward_afresh()

    def _may_share(self, fetch):
        """
        :returns: whether this request may be answered with the response
            C{fetch} is storing.
        """
        # A body the store cannot keep will be abandoned: the waiters would
        # be cut short.
        return (not fetch.writer.abandoned and fetch.length <= self.factory.cache.store.max_size
                and policy.shareable(fetch.head.headers, fetch.request_headers, self.head.headers)
                and policy.assess(self.head.headers, fetch.stored, self.factory.reactor.seconds()).usable)

    def _follow(self, fetch):
        """
        Answer the client with the response another request is fetching
        and storing, as it arrives.

        :returns: whether it does; L{False} when what is stored so far
            cannot be read, and nothing was sent.
        """
        if fetch.length:
            serving = fetch.writer.follow(self.client.transport)
            if serving.called:
                # It failed at once (a follower writes nothing before the
                # next turn): the client is still free to go upstream.
                serving.addErrback(lambda failure: self.log.warn(
                    "could not follow the response being stored for {url}: {reason}",
                    url=self.head.target.decode("latin-1"), reason=failure.getErrorMessage()))
                return False
            self._serving = serving
        self.cache_result = "HIT"
        self.request_done = True
        self.leftover, self._pending = self._pending + self.leftover, b""
        head = fetch.head
        self.status = head.status
        age = policy.current_age(fetch.stored, self.factory.reactor.seconds())
        self.factory.metrics.collapsed.inc()
        status_field = cache_status(hit=True, fwd="uri-miss", collapsed=True)
        self.client.transport.write(self._stored_head(fetch.served_head, age, status_field, fetch.length))
        self.sent = fetch.length
        if fetch.length:
            serving.addBoth(self._served)
        else:
            self._served(None)
        return True

    def _serve(self, found, result, status_field):
        """
        Answer the client with a stored response (or 304, when its own
        preconditions hold for it).

        :param result: the access log's cache status.
        :param status_field: the response's Cache-Status.
        """
        self.cache_result = result
        self.request_done = True
        # Pipelined bytes: read before the request went upstream, or since.
        self.leftover, self._pending = self._pending + self.leftover, b""
        stored, entry = found.stored, found.entry
        age = policy.current_age(stored, self.factory.reactor.seconds())
        with_body = self.head.method != b"HEAD" and entry.length and not self.background
        if stored.status == 200 and not_modified(self.head.headers, stored.headers):
            self.status, with_body = 304, False
            first, length = response_head_bytes(304, b"Not Modified", found.fields)[:-2], None
        else:
            self.status, first = stored.status, found.head
            length = None if stored.status == 204 else entry.length
        head = self._stored_head(first, age, status_field, length)
        body = self.factory.cache.store.held_body(entry) if with_body else None
        if body is not None:
            # A small body held in memory: sent with its head, in one write.
            self.sent = entry.length
            self.client.transport.writeSequence([head, body])
            self._served(None)
        elif with_body:
            serving = self._serving = self.factory.cache.store.read(entry, self.client.transport)
            if serving.called:
                # A small body is checked before anything is sent: a damaged
                # one was discarded, and the origin is asked instead.
                serving.addErrback(self._damaged_before_sending, found)
                if self._serving is None:
                    return
            self.client.transport.write(head)
            self.sent = entry.length
            serving.addBoth(self._served)
        else:
            self.client.transport.write(head)
            self._served(None)

    def _stored_head(self, first, age, status_field, length):
        """
        :param first: the status line and fields of a stored response, as
            L{netproxy.http.cache.responses.Found.head} has them.
        :param age: its current age.
        :param status_field: its Cache-Status.
        :param length: its Content-Length, or L{None} for none.
        :returns: the head it is served with.
        """
        self.keep = self.client_keep
        framing = b"" if length is None else b"Content-Length: %d\r\n" % (length,)
        return b"%sAge: %d\r\nCache-Status: %s\r\n%s%s\r\n" % (
            first, min(age, MAX_DELTA), status_field, framing, self.connection_field())

    def connection_header(self):
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

    def connection_field(self):
        """
        :returns: L{connection_header} as a field line, or C{b""}.
        """
        field = self.connection_header()
        return b"" if field is None else b"%s: %s\r\n" % field

    def _damaged_before_sending(self, failure, found):
        failure.trap(DamagedEntry)
        self.log.warn("discarded damaged cache entry for {url}: {reason}", url=self.head.target.decode("latin-1"),
                      reason=failure.getErrorMessage())
        self._serving = None
        self.status = None
        self.request_done = False
        self._pending, self.leftover = self.leftover, b""
        self.cache_result, self._fwd = "MISS", "miss"
        self._forward_afresh()

    def _served(self, result):
        self._serving = None
        if self._finished:
            return None
        if result is not None:
            if not result.check(StreamStopped, CancelledError, DamagedEntry, BodyAbandoned):
                self.log.failure("sending a stored response failed", result)
            elif result.check(DamagedEntry, BodyAbandoned):
                self.log.warn("response for {url} from the cache cut short: {reason}",
                              url=self.head.target.decode("latin-1"), reason=result.getErrorMessage())
            self.client.abort()
            return None
        self._finished = True
        self._log()
        self.client.exchange_done(self.keep, self.leftover)
        return None

    def _connect(self):
        upstream = self.factory.pool.take(self.origin)
        if upstream is not None:
            self._send(upstream, reused=True)
            return
        # Read nothing more from the client until the origin is connected.
        self._pause_client()
        host, port = self.origin
        factory = Factory.forProtocol(partial(UpstreamConnection, self.origin,
                                              self.factory.metrics.upstream_connections))
        factory.noisy = False
        self._connect_started = self.factory.reactor.seconds()
        connecting = self._connecting = connect_checked(
            self.factory.reactor, self.factory.rules, host, port, factory, self.factory.connect_timeout)
        connecting.addCallbacks(self._connected, self._not_connected)

    def _connected(self, upstream):
        self._connecting = None
        self.factory.metrics.connect_seconds.observe(self.factory.reactor.seconds() - self._connect_started)
        if self._finished:
            upstream.transport.loseConnection()
            return
        self._send(upstream, reused=False)

    def _not_connected(self, failure):
        self._connecting = None
        if self._finished or failure.check(CancelledError):
            return
        if self._serve_stale_on_error():
            return
        self.client.fail(connect_error(failure, self.target))

    def _serve_stale_on_error(self):
        """
        Serve the stored response the origin could not replace, when its
        stale-if-error allows (RFC 5861 section 4).

        :returns: whether it was served.
        """
        if self._found is None or not self._assessment.stale_if_error:
            return False
        self._cancel_timer()
        self._serve(self._found, "STALE", self._stale_status())
        return True

    def _send(self, upstream, reused):
        self.upstream = upstream
        self._reused = reused
        upstream.start(self, self.head.method)
        upstream.transport.write(self.request_bytes)
        self._request_time = self.factory.reactor.seconds()
        self._progress = self.factory.reactor.seconds()
        self._timer = self.factory.reactor.callLater(self.factory.timeout, self._timed_out)
        data, self._pending = self._pending, b""
        try:
            self.client_data(data)
        except HTTPError as error:
            # A bad request body that arrived before the connection did:
            # refused like one arriving later (ProxyProtocol.dataReceived),
            # rather than lost in the connection Deferred.
            self.client.fail(error)
            return
        if self._finished:
            return
        if not self.request_done:
            # Back-pressure on the upload: a slow origin pauses the client.
            upstream.transport.registerProducer(self.client.transport, True)
        if self.client_paused:
            # Paused while connecting; read-ahead is bounded from here on.
            self.client.transport.resumeProducing()
            self.client_paused = False

    def client_data(self, data):
        """
        Bytes from the client while this exchange runs: request body, then
        the start of the next pipelined request.
        """
        if self.request_done:
            self.leftover += data
            if len(self.leftover) > MAX_READ_AHEAD:
                self._pause_client()
            return
        if self.upstream is None:
            self._pending += data
            return
        pieces = self.decoder.feed(data)
        write = self.upstream.transport.write
        for piece in pieces:
            if self._chunked_in:
                self.upstream.transport.writeSequence(encode_chunk(piece))
            else:
                write(piece)
        if pieces:
            # The origin's time to answer runs from the end of the upload,
            # so a long upload that keeps moving is not a 504.
            self._progress = self.factory.reactor.seconds()
        if self.decoder.done:
            if self._chunked_in:
                write(LAST_CHUNK)
            self.request_done = True
            self.leftover = self.decoder.rest
            if self.upstream.transport.producer is not None:
                self.upstream.transport.unregisterProducer()
                # The origin may have paused the upload just now: the
                # client is resumed when the exchange ends.
                self.client_paused = True

    def interim_response(self, head):
        """
        The origin sent a 1xx response: pass it on to an HTTP/1.1 client
        (HTTP/1.0 clients must never see one), except 101, since the
        proxy does not carry protocol upgrades.
        """
        if self.head.version == (1, 1) and head.status != 101:
            headers = forward_headers(head.headers, via_version=head.version)
            self.client.transport.write(response_head_bytes(head.status, head.reason, headers))
        self._progress = self.factory.reactor.seconds()

    def response_head(self, head, framing):
        """
        The origin's response head arrived: send ours to the client.
        """
        now = self._progress = self.factory.reactor.seconds()
        self.factory.metrics.response_seconds.observe(now - self._request_time)
        cache = self.factory.cache
        if self._found is not None:
            if self._revalidating and head.status == 304:
                # Not modified: the stored response, refreshed, is the answer.
                self._swallow = ("REVALIDATED", cache.refresh(self._found, head.headers, self._request_time, now),
                                 cache_status(hit=False, fwd=self._fwd, fwd_status=304))
                return
            if head.status >= 500 and self._assessment.stale_if_error:
                self._swallow = ("STALE", self._found, self._stale_status())
                return
        self.status = head.status
        headers = forward_headers(head.headers, via_version=head.version)
        if framing.kind in ("chunked", "close"):
            # A Content-Length beside Transfer-Encoding is overridden by it
            # and must not be forwarded (RFC 9112 section 6.3): the body
            # we send is framed differently.
            headers = [field for field in headers if field[0].lower() != b"content-length"]
        client_11 = self.head.version == (1, 1)
        # A body the origin ends by closing is chunked for an HTTP/1.1
        # client, whose connection then outlives it.
        self._chunk_out = framing.kind in ("chunked", "close") and client_11
        if self._chunk_out:
            headers.append((b"Transfer-Encoding", b"chunked"))
        # A response that starts before the upload is complete ends the
        # connection (see response_done): say so in its head.
        self.keep = (self.client_keep and self.request_done
                     and (framing.kind in ("none", "length") or self._chunk_out))
        if not self.keep:
            headers.append((b"Connection", b"close"))
        elif not client_11:
            headers.append((b"Connection", b"keep-alive"))
        if cache is not None:
            headers = self._cache_response(cache, head, headers, now)
        self.client.transport.write(response_head_bytes(head.status, head.reason, headers))
        # Back-pressure on the download: a slow client pauses the origin.
        self.client.transport.registerProducer(self.upstream.transport, True)
        if self._leading:
            self._settle(head, framing)

    def _cache_response(self, cache, head, headers, now):
        """
        Store the origin's response if the policy allows, and invalidate
        what an unsafe method changed.

        :returns: C{headers} with the response's Cache-Status.
        """
        method = self.head.method
        if method not in SAFE_METHODS and 200 <= head.status < 400:
            cache.invalidate(invalidated_urls(method, head.status, self.head.target, head.headers))
        if self._key is None:
            # Not a request the cache handles (RFC 9211's "bypass").
            return headers + [(b"Cache-Status", cache_status(hit=False, fwd="bypass", fwd_status=head.status))]
        if method == b"GET" and policy.storable(method, self.head.headers, head.status, head.headers):
            self._fill = cache.fill(self._key, self.head.headers, head, self._request_time, now)
        return headers + [(b"Cache-Status", cache_status(
            hit=False, fwd=self._fwd, fwd_status=head.status, stored=self._fill is not None))]

    def _stale_status(self):
        return cache_status(hit=True, ttl=self._assessment.ttl, detail="stale-if-error")

    def response_body(self, piece):
        """
        Relay a piece of the response body.
        """
        self._progress = self.factory.reactor.seconds()
        if self._swallow is not None:
            return
        if self._fill is not None:
            self._fill.write(piece)
        self.sent += len(piece)
        if self._chunk_out:
            self.client.transport.writeSequence(encode_chunk(piece))
        else:
            self.client.transport.write(piece)

    def response_done(self, reusable):
        """
        The response is complete; C{reusable} says whether the origin's
        connection may carry another request.
        """
        if self._swallow is not None:
            result, found, status_field = self._swallow
            self._release(reusable and self.request_done)
            self._finished = False
            if found is None:
                # The store lost the entry meanwhile: ask again, plainly.
                self._revalidating, self._found = False, None
                self._swallow = None
                self._forward_afresh()
                return
            self._serve(found, result, status_field)
            return
        if self._fill is not None:
            self._fill, fill = None, self._fill
            fill.finish()
        if self._chunk_out:
            self.client.transport.write(LAST_CHUNK)
        self._release(reusable and self.request_done)
        self._log()
        self.client.exchange_done(self.keep and self.request_done, self.leftover)

    def upstream_failed(self, error):
        """
        The origin's connection broke, or sent something unreadable.
        """
        self._cancel_timer()
        upstream, self.upstream = self.upstream, None
        if upstream is not None and upstream.transport.connected:
            upstream.transport.loseConnection()
        if self.status is None:
            if self._reused and not self._retried and self.head.method in IDEMPOTENT and self.bodyless:
                # The pooled connection was closed by the origin just as we
                # reused it: try once more on a fresh one.
                self._retried = True
                self._pending = self.leftover
                self.leftover = b""
                self.request_done = False
                self.decoder = make_decoder(request_framing(self.head.version, self.head.headers), 400)
                self._connect()
                return
            if self._serve_stale_on_error():
                return
            self.client.fail(error)
        else:
            self.log.warn("response from {origin} to {peer} cut short: {reason}",
                          origin=self.target.authority.decode("ascii"), peer=self.client.peer, reason=str(error))
            self.client.abort()

    def _timed_out(self):
        timeout = self.factory.timeout
        idle = self.factory.reactor.seconds() - self._progress
        if idle < timeout:
            self._timer = self.factory.reactor.callLater(timeout - idle, self._timed_out)
            return
        self._timer = None
        upstream, self.upstream = self.upstream, None
        if upstream is not None:
            upstream.exchange = None
            upstream.transport.loseConnection()
        authority = self.target.authority.decode("ascii")
        if self.status is not None:
            # Either side may have stalled (a client that stops reading
            # pauses the origin): the response cannot be completed.
            self.log.warn("response from {origin} to {peer} stalled for {timeout} seconds: closing",
                          origin=authority, peer=self.client.peer, timeout=timeout)
            self.client.abort()
        elif not self.request_done:
            self.client.fail(HTTPError(408, f"the request body was not received within {timeout:g} seconds"))
        else:
            self.client.fail(HTTPError(504, f"{authority} did not answer within {timeout:g} seconds"))

    def cancel(self):
        """
        The client has gone, or failed: stop everything.
        """
        self._finished = True
        self._cancel_timer()
        if self._connecting is not None:
            self._connecting.cancel()
        self._release(False)

    def _release(self, reusable):
        self._finished = True
        self._cancel_timer()
        if self._leading:
            # No response to share: those waiting go upstream themselves.
            self._settle()
        if self._fetch is not None:
            self.factory.cache.fetched(self._key, self._fetch)
            self._fetch = None
        if self._waiting:
            self._waiting = False
            self.factory.cache.leave(self._key, self)
        if self._fill is not None:
            # An incomplete response is never stored.
            self._fill, fill = None, self._fill
            fill.abort()
        if self._serving is not None:
            self._serving, serving = None, self._serving
            serving.cancel()
        upstream, self.upstream = self.upstream, None
        if upstream is None:
            return
        if self.client.transport.producer is upstream.transport:
            self.client.transport.unregisterProducer()
            # The client's back-pressure may have paused it on the last
            # write; paused in the pool, it would never read its next response.
            upstream.transport.resumeProducing()
        if upstream.transport.producer is not None:
            upstream.transport.unregisterProducer()
        if reusable:
            upstream.exchange = None
            upstream.on_idle_lost = self.factory.idle_upstream_lost
            self.factory.pool.put(self.origin, upstream)
        else:
            upstream.exchange = None
            upstream.transport.loseConnection()

    def _pause_client(self):
        if not self.client_paused:
            self.client.transport.pauseProducing()
            self.client_paused = True

    def _cancel_timer(self):
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None

    def _log(self):
        self.client.log_access(self.head, self.status, self.sent, self.started, self.cache_result)
