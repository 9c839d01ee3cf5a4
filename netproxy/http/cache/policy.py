# -*- test-case-name: tests.http.cache.test_policy -*-
"""
The rules of a shared HTTP cache, as pure functions: what may be stored,
whether a stored response may answer a request, and whether a miss may wait
for the response another request is fetching (RFC 9111), with
C{stale-while-revalidate} and C{stale-if-error} (RFC 5861).

The rest lives alongside: L{netproxy.http.cache.freshness} says how long a
response stays fresh and how old it arrived, L{netproxy.http.cache.fields}
reads the header fields these rules depend on (directives, dates,
delta-seconds), L{netproxy.http.cache.vary} selects variants,
L{netproxy.http.cache.validation} makes and answers conditional requests
and applies 304s, L{netproxy.http.cache.invalidation} says what an unsafe
request invalidates, and L{netproxy.http.cache.status} writes the
C{Cache-Status} field (RFC 9211).

Nothing here reads a clock, touches the store or the network: every time is a
parameter (float POSIX seconds), so the proxy and the tests get the same
answer for the same input.  Header fields are C{(name, value)} byte pairs in
received order, as L{netproxy.http.head} parses them.

Where the RFCs leave room, this module takes the cautious reading, and each
function's docstring names its choices.  Throughout: an invalid freshness
value makes a response stale, a duplicated directive or field counts by its
first occurrence, and the qualified forms C{private="f"} and C{no-cache="f"}
count as the unqualified ones (RFC 9111 sections 5.2.2.4 and 5.2.2.7 note
that caches commonly do so).
"""

from dataclasses import dataclass
from functools import cached_property
from typing import NamedTuple

from netproxy.http.cache.fields import Fields, as_fields, delta_seconds
from netproxy.http.cache.freshness import HEURISTICALLY_CACHEABLE, freshness_lifetime, initial_age
from netproxy.http.cache.refresh import RefreshRule
from netproxy.http.cache.validation import PRECONDITIONS
from netproxy.http.cache.vary import vary_matches, vary_names

# Header fields, as received or with what the rules read of them.
Headers = list[tuple[bytes, bytes]] | Fields

# Response directives that forbid serving it stale (RFC 9111 section 4.2.4).
_NEVER_STALE = frozenset({"must-revalidate", "proxy-revalidate", "s-maxage"})


@dataclass(frozen=True)
class Stored:
    """
    What the cache knows of a stored response.

    :ivar status: its status code.
    :ivar headers: its header fields, as stored (or as last updated by a 304).
    :ivar request_time: when the request that fetched (or last validated) it
        was sent.
    :ivar response_time: when that response was received.
    :ivar rule: the operator's freshness rule matching its URL, if any
        (L{netproxy.http.cache.refresh}).

    What depends on the response alone (its directives, initial age and
    freshness lifetime) is worked out once, when first needed: a stored
    response answers many requests, and it never changes (a 304 that
    updates it makes a new one).
    """

    status: int
    headers: list[tuple[bytes, bytes]]
    request_time: float
    response_time: float
    rule: RefreshRule | None = None

    @cached_property
    def fields(self) -> Fields:
        """
        Its header fields, as the rules read them.
        """
        return Fields(self.headers)

    @cached_property
    def directives(self) -> dict[str, str | None]:
        """
        Its Cache-Control directives, as
        L{netproxy.http.cache.fields.directives} gives them.
        """
        return self.fields.directives

    @cached_property
    def initial_age(self) -> float:
        """
        Its corrected initial age (RFC 9111 section 4.2.3): its age when it
        was received.
        """
        return initial_age(self.headers, self.request_time, self.response_time)

    @cached_property
    def stale_if_error_fresh(self) -> bool:
        """
        Whether, while fresh, it may be served when the origin fails, by its
        own C{stale-if-error} (as L{assess} decides when the request has no
        directives).
        """
        response = self.directives
        return ("no-cache" not in response and response.keys().isdisjoint(_NEVER_STALE)
                and delta_seconds(response.get("stale-if-error")) is not None)

    @cached_property
    def lifetime(self) -> float:
        """
        Its freshness lifetime, as L{freshness_lifetime} gives it.
        """
        return freshness_lifetime(self.status, self.headers, self.response_time, self.rule)


class Assessment(NamedTuple):
    """
    Whether a stored response may answer a request (RFC 9111 section 4).
    A named tuple, as one is made for every request the cache answers.

    :ivar age: the response's current age, in seconds.
    :ivar lifetime: its freshness lifetime, in seconds.
    :ivar fresh: C{age < lifetime}.
    :ivar usable: it may be sent without contacting the origin.
    :ivar only_if_cached: the client asked for a stored response or a 504.
    :ivar stale_while_revalidate: it is stale, but may be sent while a
        background request revalidates it (RFC 5861 section 3).
    :ivar stale_if_error: it may be sent when the origin cannot be reached or
        answers 5xx (RFC 5861 section 4).
    :ivar fwd: when not usable, why the request goes upstream, as an RFC 9211
        C{fwd} value: C{"request"} when only the request's directives prevent
        reuse, C{"stale"} otherwise; C{None} when usable.
    """

    age: float
    lifetime: float
    fresh: bool
    usable: bool
    only_if_cached: bool
    stale_while_revalidate: bool
    stale_if_error: bool
    fwd: str | None

    @property
    def ttl(self) -> float:
        """
        :returns: the freshness left, in seconds; negative once stale.
        """
        return self.lifetime - self.age


def storable(method: bytes, request_headers: Headers, status: int, response_headers: Headers,
             rule: RefreshRule | None = None) -> bool:
    """
    May a shared cache store this response (RFC 9111 sections 3 and 3.5)?

    Never stored: interim, 206 and 304 responses; C{no-store} (unless
    C{must-understand} comes with a status this cache implements, RFC 9111
    section 5.2.2.3) in the request or response; C{private}; C{Vary: *}.
    A request's Authorization needs C{public}, C{s-maxage} or
    C{must-revalidate} in the response.  Other statuses than the
    heuristically cacheable ones need C{max-age}, C{s-maxage}, C{Expires}
    or C{public}.

    Beyond the RFC, responses that would be stale at once and could never
    be revalidated (no explicit expiry, no validator) are not stored, unless
    an operator's C{rule} gives them a freshness (its MIN; never to a
    C{no-cache} response, which must be revalidated at every use); and,
    as the service's specification asks, a response with C{Set-Cookie} is
    stored only when it says C{public} or C{s-maxage}.

    :param method: the request method; only C{GET} is stored.
    :param request_headers: the request's header fields.
    :param status: the response status.
    :param response_headers: the response's header fields.
    :param rule: the operator's L{RefreshRule} matching the URL, if any.
    :returns: L{True} when the response may be stored.
    """
    if method != b"GET" or status < 200 or status in (206, 304):
        return False
    request, fields = as_fields(request_headers), as_fields(response_headers)
    response = fields.directives
    understood = status in HEURISTICALLY_CACHEABLE
    if "must-understand" in response:
        # RFC 9111 section 5.2.2.3: must-understand overrides no-store for
        # a cache that implements the status code's caching rules.
        if not understood:
            return False
    elif "no-store" in response:
        return False
    if "no-store" in request.directives or "private" in response:
        return False
    shared = "public" in response or "s-maxage" in response
    if b"authorization" in request.names and not (shared or "must-revalidate" in response):
        return False
    names = fields.names
    if b"set-cookie" in names and not shared:
        return False
    if b"vary" in names and b"*" in vary_names(fields.headers):
        return False
    explicit = "max-age" in response or "s-maxage" in response or b"expires" in names
    if not (explicit or "public" in response or understood):
        return False
    if explicit or b"etag" in names or b"last-modified" in names:
        return True
    # Else it could never be revalidated: stored without a validator, it
    # would be stale at once, unless a rule makes it fresh for a while.
    return rule is not None and rule.minimum > 0 and "no-cache" not in response


def current_age(stored: Stored, now: float) -> float:
    """
    The age of a stored response (RFC 9111 section 4.2.3): its initial age
    (see L{netproxy.http.cache.freshness.initial_age}) plus the time it has
    been stored.  Clocks stepping backwards never make the response younger
    than it arrived.

    :param stored: the stored response.
    :param now: the current time.
    :returns: the age in seconds.
    """
    return stored.initial_age + max(0.0, now - stored.response_time)


def assess(request_headers: Headers, stored: Stored, now: float) -> Assessment:
    """
    Decide how a stored response may answer a request (RFC 9111 sections 4,
    4.2.4 and 5.2; RFC 5861).

    Request directives: C{no-cache} (or C{Pragma: no-cache}) and
    C{max-age=0} always send the request upstream; C{max-age=N} accepts an
    age up to N; C{min-fresh=N} wants N seconds of freshness left;
    C{max-stale} accepts any staleness and C{max-stale=N} up to N.  A request
    directive with an invalid value is ignored (an invalid C{max-stale}
    therefore allows no staleness).  C{no-store} does not concern a response
    already stored (RFC 9111 section 5.2.1.5).

    A response with C{no-cache} is never used unvalidated; one with
    C{must-revalidate}, C{proxy-revalidate} or C{s-maxage} is never used
    stale, whatever C{max-stale}, C{stale-while-revalidate} or
    C{stale-if-error} say (RFC 9111 section 4.2.4).

    C{stale-while-revalidate} also needs the request to accept the
    response's age.  C{stale-if-error} comes from the response or the
    request, the longer window counting since either party may grant it;
    the request's own C{stale-if-error} lets a client that sent C{no-cache}
    still receive a stale response rather than an error.

    :param request_headers: the request's header fields.
    :param stored: the stored response, already matched by URL and Vary.
    :param now: the current time.
    :returns: an L{Assessment}.
    """
    request = as_fields(request_headers).directives
    response = stored.directives
    age = current_age(stored, now)
    lifetime = stored.lifetime
    if not request and age < lifetime and "no-cache" not in response:
        # Most requests: no directives, and a fresh response to reuse.  The
        # same answer as below, without working through every directive.
        return Assessment(age, lifetime, True, True, False, False, stored.stale_if_error_fresh, None)
    fresh = age < lifetime
    staleness = max(0.0, age - lifetime)

    validate = "no-cache" in response
    may_serve_stale = not validate and response.keys().isdisjoint(_NEVER_STALE)
    forced = "no-cache" in request
    max_age = delta_seconds(request.get("max-age"))
    min_fresh = delta_seconds(request.get("min-fresh"))
    # Ages on the wire are whole seconds, so a response can look 0 seconds
    # old; max-age=0 is how clients ask for revalidation, and gets it.
    too_old = max_age is not None and (max_age == 0 or age > max_age)
    too_close = min_fresh is not None and lifetime - age < min_fresh
    acceptable = not (too_old or too_close)

    if fresh:
        in_time = True
    elif "max-stale" in request and may_serve_stale:
        limit = request["max-stale"]
        max_stale = delta_seconds(limit)
        in_time = limit is None or (max_stale is not None and staleness <= max_stale)
    else:
        in_time = False
    usable = not (forced or validate) and acceptable and in_time

    revalidate_window = delta_seconds(response.get("stale-while-revalidate"))
    stale_while_revalidate = (
        not fresh
        and may_serve_stale
        and not forced
        and acceptable
        and revalidate_window is not None
        and staleness <= revalidate_window
    )
    requested_window = delta_seconds(request.get("stale-if-error"))
    error_windows = [w for w in (delta_seconds(response.get("stale-if-error")), requested_window) if w is not None]
    stale_if_error = (
        may_serve_stale
        and (not forced or requested_window is not None)
        and bool(error_windows)
        and staleness <= max(error_windows)
    )

    if usable:
        fwd = None
    elif fresh and not validate:
        fwd = "request"
    else:
        fwd = "stale"
    return Assessment(
        age=age,
        lifetime=lifetime,
        fresh=fresh,
        usable=usable,
        only_if_cached="only-if-cached" in request,
        stale_while_revalidate=stale_while_revalidate,
        stale_if_error=stale_if_error,
        fwd=fwd,
    )


def collapsible(request_headers: Headers) -> bool:
    """
    May a request that misses wait for the response another request is
    fetching for the same URL, rather than go upstream itself?

    Not when it is conditional (the origin's answer to it, a 304, could not
    be shared, nor would the response others wait for answer it), nor when
    its directives want the origin asked afresh (C{no-cache}, C{max-age=0}):
    a response that started before it arrived would not do.  Nor when it
    asks for a range: following the whole response it would receive it all.

    :param request_headers: the request's header fields.
    """
    fields = as_fields(request_headers)
    if not fields.names.isdisjoint(PRECONDITIONS) or b"range" in fields.names:
        return False
    request = fields.directives
    return "no-cache" not in request and delta_seconds(request.get("max-age")) != 0


def shareable(response_headers: Headers, request_headers: Headers, waiting_headers: Headers) -> bool:
    """
    May a response being stored for one request be handed to another that
    waited for it (collapsed forwarding)?

    Not with C{Set-Cookie}, whatever the response says of caching (a cookie
    is meant for one client), not when C{private} or C{no-cache}, and not
    when its Vary fields differ between the two requests.  Whether its
    freshness suits the waiting request is L{assess}'s to say.

    :param response_headers: the response's header fields.
    :param request_headers: the fields of the request it answers.
    :param waiting_headers: the fields of the request waiting for it.
    """
    fields = as_fields(response_headers)
    response = fields.directives
    if "private" in response or "no-cache" in response or b"set-cookie" in fields.names:
        return False
    if b"vary" not in fields.names:
        return True
    return vary_matches(vary_names(fields.headers), as_fields(request_headers).headers,
                        as_fields(waiting_headers).headers)
