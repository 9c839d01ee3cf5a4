# -*- test-case-name: tests.http.test_caching -*-
"""
The cache's side of an exchange: it serves a stored response that may be
reused; otherwise it has the origin asked (with the stored response's
validators, to revalidate it) and stores the answer as it streams past.
Concurrent misses for one URL make one upstream request (collapsed
forwarding); a stale response answers under C{stale-if-error} and
C{stale-while-revalidate} (RFC 5861).
"""

from math import floor
from typing import Any

from netproxy.errors import HTTPError
from netproxy.http.cache import policy, ranges
from netproxy.http.cache.fields import Fields
from netproxy.http.cache.invalidation import SAFE_METHODS, invalidated_urls
from netproxy.http.cache.responses import Fetch, Found, cache_key
from netproxy.http.cache.status import cache_status, forwarded_status, hit_status, stale_status
from netproxy.http.cache.validation import head_matches, validators
from netproxy.http.range_relay import RangeRelay
from netproxy.http.serving import Serving


class Caching(Serving):
    """
    The cache's side of one exchange; L{Serving} sends the stored responses.

    :param exchange: the L{IExchange} it works for.
    :param cache: the proxy's L{Cache}.
    :ivar request: the request's fields, as the policy reads them (each once).
    :ivar key: the cache key of the request, or C{b""} when the cache does
        not handle it (RFC 9211's "bypass").
    :ivar leading: whether the exchange fetches a miss that others may wait
        for (collapsed forwarding), until its response head settles them.
    """

    key = b""
    leading = False
    # The stored response the origin is asked about, and what the policy
    # made of it.
    _found: Found | None = None
    _assessment: Any = None
    # Whether the request upstream carries the stored response's validators.
    _revalidating = False
    # The writer storing the origin's response, and the Fetch others may
    # follow (the leader's).
    _fill: Any = None
    _fetch: Fetch | None = None
    # What answers instead of the origin's response being discarded:
    # (cache status, stored response or None when lost, Cache-Status).
    _replacement: tuple[str, Found | None, bytes] | None = None
    # A range request that goes upstream without its range (fetched whole),
    # and what cuts its range out of the origin's 200 on the way.
    _whole = False
    _relay: RangeRelay | None = None

    def consult(self) -> list[tuple[bytes, bytes]] | None:
        """
        Look for a stored response: serve it when it may be reused,
        otherwise prepare what goes upstream.

        :returns: the cache's validators, which replace the client's own
            preconditions when it revalidates a stored response (the
            client's are answered from the refreshed entry); L{None} when
            the request is answered (or will be) without going upstream.
        :raises HTTPError: 504 when the client asked only-if-cached and
            nothing usable is stored.
        """
        exchange = self.exchange
        request = self.request
        cache = self.cache
        key = self.key = cache_key(exchange.target)
        found = cache.find(key, request.headers)
        exchange.cache_result = "MISS"
        checks = []
        if found is None:
            self._fwd = "uri-miss"
            only_if_cached = "only-if-cached" in request.directives
            if not only_if_cached and self._collapse():
                return None
        else:
            now = exchange.factory.reactor.seconds()
            assessment = policy.assess(request, found.stored, now)
            if assessment.usable:
                self._serve(found, "HIT", hit_status(floor(assessment.ttl), cache.name))
                return None
            if assessment.stale_while_revalidate and not exchange.background:
                self._serve(found, "STALE", stale_status(assessment.ttl, "stale-while-revalidate", cache.name))
                if key not in cache.revalidating:
                    exchange.factory.revalidate(exchange.head, key)
                return None
            self._found, self._assessment, self._fwd = found, assessment, assessment.fwd
            only_if_cached = assessment.only_if_cached
            if found.stored.status == 200:
                checks = validators(found.stored.headers)
                self._revalidating = bool(checks)
        if only_if_cached:
            raise HTTPError(504, "only-if-cached: no stored response is fresh enough")
        self._whole = (exchange.head.method == b"GET" and b"range" in request.names
                       and ranges.fetch_whole(request.headers, cache.range_offset_limit))
        return checks

    def upstream_fields(self, headers: list[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes]]:
        """
        :param headers: the fields of the request about to go upstream.
        :returns: them, less C{Range} and C{If-Range} when the whole
            response is fetched for a range request (Squid's
            C{range_offset_limit}): the range is cut from it here.
        """
        if not self._whole:
            return headers
        return [field for field in headers if field[0].lower() not in (b"range", b"if-range")]

    def relay_status(self, head: Any) -> tuple[int, bytes]:
        """
        :returns: the status and reason the client gets for the origin's
            response head: a 206 when its range is cut from a 200.
        """
        return (206, b"Partial Content") if self._relay is not None else (head.status, head.reason)

    def relayed(self, piece: bytes) -> bytes:
        """
        :returns: what the client gets of a piece of the origin's body: the
            part within its range, when one is cut.
        """
        return piece if self._relay is None else self._relay.relayed(piece)

    def _cut_range(self, head: Any, framing: Any, headers: list[tuple[bytes, bytes]]) -> bool:
        """
        A range request was fetched whole: cut its range from the origin's
        200 when its length is known and its C{If-Range} (if any) holds for
        it, rewriting C{headers} for the 206 (else the full 200 answers, as
        RFC 9110 section 14.2 allows).

        :returns: whether the response may be stored: when it is no longer
            than the range offset limit, or the range runs to its end (all
            of it is fetched anyway).
        """
        length = framing.length
        if (head.status != 200 or framing.kind != "length" or self.exchange.background
                or not ranges.if_range_holds(self.request.headers, head.headers)):
            # A background revalidation has no client to cut for: it stores.
            return True
        answer = ranges.requested_range(self.request.headers, length)
        if not isinstance(answer, tuple):
            return True
        first, last = answer
        self._relay = RangeRelay(self.exchange, first, last, lambda: self._fill is not None)
        headers[:] = [field for field in headers if field[0].lower() not in (b"content-length", b"content-range")]
        headers += [(b"Content-Length", b"%d" % (last - first + 1,)),
                    (b"Content-Range", ranges.content_range(first, last, length))]
        limit = self.cache.range_offset_limit
        return limit is None or length <= limit or last == length - 1

    def _collapse(self) -> bool:
        """
        Collapsed forwarding of a miss: follow the response being stored for
        the key, or wait for the request already fetching it, or lead
        (fetch it for the others that come meanwhile).

        :returns: whether this request is answered, or will be, without
            going upstream itself.
        """
        exchange = self.exchange
        if exchange.background or exchange.head.method != b"GET" or not policy.collapsible(self.request):
            return False
        fetch = self.cache.fetching(self.key)
        if fetch is not None:
            return self._may_share(fetch) and self._follow(fetch)
        if self.cache.lead(self.key):
            self.leading = True
            return False
        self.cache.wait(self.key, self)
        exchange.state = "waiting"
        exchange.pause_client()
        return True

    def resume(self, fetch: Fetch | None) -> None:
        """
        The miss this exchange waits for is settled: follow C{fetch}, the
        response being stored for it, when it may; else (or when there is
        none) go upstream.
        """
        if not (fetch is not None and self._may_share(fetch) and self._follow(fetch)):
            self.exchange.forward_afresh()

    def reconsult(self) -> None:
        """Another process's fetch of this miss is over: look again; go upstream if still needed."""
        if self.consult() is not None:
            self.exchange.forward_afresh()

    def stop_waiting(self) -> None:
        """The exchange no longer waits for the miss another is fetching."""
        self.cache.leave(self.key, self)

    def settle(self, head: Any, framing: Any, request_time: float, response_time: float) -> None:
        """
        The leader's response head arrived (C{head}, with its C{framing};
        requested and answered at those times), or none will (C{head} is
        L{None}): hand the response being stored to each waiting request
        that may share it, and send the others upstream on their own.
        """
        self.leading = False
        if head is not None and self._fill is not None and framing.kind == "length":
            stored = policy.Stored(head.status, head.headers, request_time, response_time,
                                   self.cache.rule_for(self.key))
            self._fetch = Fetch(self._fill, head, framing.length, stored, self.request.headers,
                                self.cache.pseudonym)
        # else a body of unknown length cannot be framed for the waiters
        # before it ends: waiting that long would not be collapsing.
        for waiter in self.cache.settle(self.key, self._fetch):
            waiter.resume(self._fetch)

    def _may_share(self, fetch: Fetch) -> bool:
        """
        :returns: whether this request may be answered with the response
            C{fetch} is storing.
        """
        # A body the store cannot keep will be abandoned: the waiters would
        # be cut short.
        return bool(not fetch.writer.abandoned and fetch.length <= self.cache.store.max_size
                    and policy.shareable(fetch.stored.fields, fetch.request_headers, self.request)
                    and policy.assess(self.request, fetch.stored, self.exchange.factory.reactor.seconds()).usable)

    def _follow(self, fetch: Fetch) -> bool:
        """
        Answer the client with the response another request is fetching
        and storing, as it arrives.

        :returns: whether it does; L{False} when what is stored so far
            cannot be read, and nothing was sent.
        """
        exchange = self.exchange
        transport = exchange.client.transport
        if fetch.length:
            serving = fetch.writer.follow(transport)
            if serving.called:
                # It failed at once (a follower writes nothing before the
                # next turn): the client is still free to go upstream.
                serving.addErrback(lambda failure: self.log.warn(
                    "could not follow the response being stored for {url}: {reason}",
                    url=exchange.head.target.decode("latin-1"), reason=failure.getErrorMessage()))
                return False
            self._serving = serving
            exchange.state = "serving"
        exchange.cache_result = "HIT"
        exchange.request_done = True
        exchange.leftover, exchange.pending = exchange.pending + exchange.leftover, b""
        exchange.status = fetch.head.status
        age = policy.current_age(fetch.stored, exchange.factory.reactor.seconds())
        exchange.factory.metrics.collapsed.inc()
        status_field = cache_status(hit=True, fwd="uri-miss", collapsed=True, name=self.cache.name)
        transport.write(self._stored_head(fetch.served_head, age, status_field, fetch.length))
        exchange.sent = fetch.length
        if fetch.length:
            serving.addBoth(self._served)
        else:
            self._served(None)
        return True

    def serve_stale_on_error(self) -> bool:
        """
        :returns: whether the stored response the origin could not replace
            was served, as its stale-if-error allows (RFC 5861 section 4).
        """
        if self._found is None or not self._assessment.stale_if_error:
            return False
        self._serve(self._found, "STALE", stale_status(self._assessment.ttl, "stale-if-error", self.cache.name))
        return True

    def serve_replacement(self) -> None:
        """The origin's response L{response_fields} chose to drop has ended: serve the stored one instead."""
        assert self._replacement is not None
        (result, found, status_field), self._replacement = self._replacement, None
        if found is None:
            # The store lost the entry meanwhile: ask again, plainly.
            self._revalidating, self._found = False, None
            self.exchange.forward_afresh()
            return
        self._serve(found, result, status_field)

    def response_fields(self, head: Any, framing: Any, headers: list[tuple[bytes, bytes]], request_time: float,
                        response_time: float) -> list[tuple[bytes, bytes]] | None:
        """
        The origin's response head arrived (its body framed by C{framing}),
        to be relayed with C{headers}: store it if policy and store allow
        (and only then say C{stored}); invalidate what unsafe methods change;
        freshen the stored GET response a 200 to HEAD matches.

        :returns: C{headers}, the response's Cache-Status added; or L{None}
            when the stored response answers instead, refreshed by a 304
            (or a 200 to HEAD) or stale after a 5xx: the origin's response
            is then read to its end and dropped, and L{serve_replacement}
            follows.
        """
        found = self._found
        if found is not None:
            if self._revalidating and head.status == 304:
                # Not modified: the stored response, refreshed, is the answer.
                self._replacement = ("REVALIDATED",
                                     self.cache.refresh(found, head.headers, request_time, response_time),
                                     forwarded_status(self._fwd, 304, name=self.cache.name))
                return None
            if head.status >= 500 and self._assessment.stale_if_error:
                self._replacement = ("STALE", found,
                                     stale_status(self._assessment.ttl, "stale-if-error", self.cache.name))
                return None
            if self.exchange.head.method == b"HEAD" and head.status == 200 and head_matches(found.stored.headers,
                                                                                          head.headers):
                # RFC 9111 section 4.3.5: its fields freshen the stored GET,
                # which then answers, with the fields the HEAD did not send.
                self._replacement = ("REVALIDATED",
                                     self.cache.refresh(found, head.headers, request_time, response_time),
                                     forwarded_status(self._fwd, 200, name=self.cache.name))
                return None
        exchange = self.exchange
        method = exchange.head.method
        if method not in SAFE_METHODS and 200 <= head.status < 400:
            self.cache.invalidate(invalidated_urls(method, head.status, exchange.head.target, head.headers))
        if not self.key:
            # Not a request the cache handles (RFC 9211's "bypass").
            self._fwd = "bypass"
        elif method == b"GET":
            fields = Fields(head.headers)
            keep = self._cut_range(head, framing, headers) if self._whole else True
            if keep and policy.storable(method, self.request, head.status, fields, self.cache.rule_for(self.key)):
                self._fill = self.cache.fill(self.key, self.request.headers, head, request_time, response_time,
                                             framing.length, fields)
        headers.append((b"Cache-Status", forwarded_status(self._fwd, head.status, self._fill is not None,
                                                                  self.cache.name)))
        return headers

    def response_body(self, piece: bytes) -> None:
        """A piece of the origin's response body, relayed: store it too."""
        if self._fill is not None:
            self._fill.write(piece)

    def response_done(self) -> None:
        """
        The origin's response has been relayed in full: what was stored of
        it is complete.
        """
        fill, self._fill = self._fill, None
        if fill is not None:
            fill.finish()
        if self._fetch is not None:
            # Those that follow it have what they need from the store.
            self.cache.fetched(self.key, self._fetch)
            self._fetch = None

    def release(self) -> None:
        """
        The exchange is over, complete or not: settle those waiting for a
        response it was to fetch, and drop what it was storing or serving
        (an incomplete response is never stored).
        """
        if self.leading:
            # No response to share: those waiting go upstream themselves.
            self.settle(None, None, 0.0, 0.0)
        if self._fetch is not None:
            self.cache.fetched(self.key, self._fetch)
            self._fetch = None
        fill, self._fill = self._fill, None
        if fill is not None:
            fill.abort()
        serving, self._serving = self._serving, None
        if serving is not None:
            serving.cancel()
