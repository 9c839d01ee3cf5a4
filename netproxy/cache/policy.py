"""
The rules of a shared HTTP cache, as pure functions: what may be stored, how
long it stays fresh, whether a stored response may answer a request, how it is
revalidated and what an unsafe request invalidates (RFC 9111), with
C{stale-while-revalidate} and C{stale-if-error} (RFC 5861) and the
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

import re
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import formatdate
from functools import cached_property
from math import floor
from typing import NamedTuple
from urllib.parse import urljoin, urlsplit

from netproxy.http.head import header_values

# RFC 9111 section 1.2.2: delta-seconds beyond what a cache can represent
# count as 2**31.
MAX_DELTA = 2**31
# RFC 9111 section 4.2.2: a heuristic lifetime is a fraction of the time since
# Last-Modified; a day caps it, as common caches do.
HEURISTIC_FRACTION = 0.1
HEURISTIC_CAP = 24 * 60 * 60

# RFC 9110 section 15.1, less 206: this cache does not store partial content.
HEURISTICALLY_CACHEABLE = frozenset({200, 203, 204, 300, 301, 308, 404, 405, 410, 414, 501})
SAFE_METHODS = frozenset({b"GET", b"HEAD", b"OPTIONS", b"TRACE"})
CACHE_NAME = b"netproxy"
FWD_REASONS = frozenset(
    {"bypass", "method", "uri-miss", "vary-miss", "miss", "request", "stale", "partial"}
)

# Fields a 304 must not change in a stored response (RFC 9111 section 3.2):
# the hop-by-hop and proxy-specific fields never stored (section 3.1), the
# framing of the stored body (Content-Length, and Transfer-Encoding and
# Trailer, which a 304 without content cannot describe), and the fields the
# stored bytes depend on (Content-Encoding, Content-Type, Content-Range):
# a 304 claiming another coding or type would mislabel the body we hold.
_NOT_UPDATED = frozenset(
    b"connection keep-alive proxy-connection te transfer-encoding trailer upgrade"
    b" proxy-authenticate proxy-authentication-info proxy-authorization"
    b" content-length content-encoding content-type content-range".split()
)

# A request with any of these is conditional (RFC 9110 section 13.1).
PRECONDITIONS = frozenset({b"if-match", b"if-none-match", b"if-modified-since", b"if-unmodified-since", b"if-range"})
# Response directives that forbid serving it stale (RFC 9111 section 4.2.4).
_NEVER_STALE = frozenset({"must-revalidate", "proxy-revalidate", "s-maxage"})

_TCHAR = b"!#$%&'*+-.^_`|~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
# One list element, with quoted strings kept whole so that their commas do not
# split it; an unterminated quote swallows the rest of the value.
_ELEMENT = re.compile(rb'(?:[^,"]|"(?:[^"\\]|\\.)*"?)*')
_QUOTED = re.compile(rb'"((?:[^"\\]|\\.)*)"')
_QUOTED_PAIR = re.compile(rb"\\(.)")
_ENTITY_TAG = re.compile(rb'\s*(?:(\*)|(W/)?("[^"]*"))\s*(?:,|$)')
_DIGITS = re.compile(r"[0-9]+")
_COMMA = re.compile(rb"[ \t]*,[ \t]*")
_SPACES = re.compile(rb"[ \t]+")

_MONTHS = b"Jan Feb Mar Apr May Jun Jul Aug Sep Oct Nov Dec".split()
_MONTH = rb"(?P<month>" + b"|".join(_MONTHS) + rb")"
_WEEKDAY = rb"(?:Mon|Tue|Wed|Thu|Fri|Sat|Sun)"
_TIME = rb"(?P<hour>[0-9]{2}):(?P<minute>[0-9]{2}):(?P<second>[0-9]{2})"
# RFC 9110 section 5.6.7: IMF-fixdate, then the obsolete RFC 850 and asctime
# forms.
_DATE_FORMS = [
    re.compile(
        _WEEKDAY + rb", (?P<day>[0-9]{2}) " + _MONTH + rb" (?P<year>[0-9]{4}) " + _TIME + rb" GMT"
    ),
    re.compile(
        rb"(?:Monday|Tuesday|Wednesday|Thursday|Friday|Saturday|Sunday), "
        rb"(?P<day>[0-9]{2})-" + _MONTH + rb"-(?P<year>[0-9]{2}) " + _TIME + rb" GMT"
    ),
    re.compile(
        _WEEKDAY + rb" " + _MONTH + rb" (?P<day>[ 0-9][0-9]) " + _TIME + rb" (?P<year>[0-9]{4})"
    ),
]


@dataclass(frozen=True)
class Stored:
    """
    What the cache knows of a stored response.

    :ivar status: its status code.
    :ivar headers: its header fields, as stored (or as last updated by a 304).
    :ivar request_time: when the request that fetched (or last validated) it
        was sent.
    :ivar response_time: when that response was received.

    What depends on the response alone (its directives, initial age and
    freshness lifetime) is worked out once, when first needed: a stored
    response answers many requests, and it never changes (a 304 that
    updates it makes a new one).
    """

    status: int
    headers: list[tuple[bytes, bytes]]
    request_time: float
    response_time: float

    @cached_property
    def directives(self):
        """
        Its Cache-Control directives, as L{directives} gives them.
        """
        return directives(self.headers)

    @cached_property
    def initial_age(self):
        """
        Its corrected initial age (RFC 9111 section 4.2.3): its age when it
        was received.
        """
        return _initial_age(self)

    @cached_property
    def lifetime(self):
        """
        Its freshness lifetime, as L{freshness_lifetime} gives it.
        """
        return freshness_lifetime(self.status, self.headers, self.response_time)


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
    def ttl(self):
        """
        :returns: the freshness left, in seconds; negative once stale.
        """
        return self.lifetime - self.age


def parse_cache_control(values):
    """
    Parse the directives of every C{Cache-Control} (or C{Pragma}) field.

    Directive names are lower-cased; values are unquoted, so C{max-age="10"}
    reads as C{max-age=10} (RFC 9111 section 5.2 asks recipients to accept
    both forms).  An element whose name is not a token is skipped; a value
    that is neither a token nor a quoted string is kept as written, for the
    reader of that directive to reject.

    :param values: the field values, in order.
    :returns: a L{dict} from directive name to its value, or to C{None} when it
        has none; of a directive given twice, the first occurrence wins.
    """
    found = {}
    if not values:
        return found
    data = b",".join(values)
    position = 0
    while position <= len(data):
        element = _ELEMENT.match(data, position).group()
        position += len(element) + 1
        name, equals, value = element.partition(b"=")
        name = name.strip(b" \t")
        if not name or name.translate(None, _TCHAR):
            continue
        key = name.lower().decode("ascii")
        if key in found:
            continue
        if equals:
            value = value.strip(b" \t")
            quoted = _QUOTED.fullmatch(value)
            if quoted:
                value = _QUOTED_PAIR.sub(rb"\1", quoted.group(1))
            found[key] = value.decode("latin-1")
        else:
            found[key] = None
    return found


def parse_http_date(value):
    """
    Parse an HTTP-date (RFC 9110 section 5.6.7), case-sensitively as its
    grammar says.

    A two-digit RFC 850 year is read as 1970 to 2069: the RFC's "no more than
    50 years ahead" rule needs the current time, which this pure function
    does not have, and these dates are all but extinct.

    :param value: the field value.
    :returns: the POSIX time, or C{None} when C{value} is not a valid date in
        one of the three forms (so C{Expires: 0} gives C{None}).
    """
    value = value.strip()
    for form in _DATE_FORMS:
        match = form.fullmatch(value)
        if match:
            break
    else:
        return None
    year = int(match["year"])
    if year < 100:
        year += 1900 if year >= 70 else 2000
    fields = (match["day"], match["hour"], match["minute"], match["second"])
    try:
        moment = datetime(year, _MONTHS.index(match["month"]) + 1, *map(int, fields), tzinfo=UTC)
    except ValueError:
        return None
    return moment.timestamp()


def format_http_date(seconds):
    """
    :param seconds: a POSIX time; the fraction is dropped.
    :returns: it as an IMF-fixdate, such as C{b"Sun, 06 Nov 1994 08:49:37 GMT"}.
    """
    return formatdate(floor(seconds), usegmt=True).encode("ascii")


def _delta_seconds(value):
    """
    :param value: a directive's or field's value, or C{None}.
    :returns: the non-negative integer it holds, capped at L{MAX_DELTA}; or
        C{None} when it is absent or not a delta-seconds (negative, a
        fraction, empty, a list).
    """
    if value is None or not _DIGITS.fullmatch(value):
        return None
    return min(int(value), MAX_DELTA)


def _first_date(headers, name):
    """
    :returns: the first C{name} field of C{headers} as a POSIX time, or
        C{None} when absent or invalid.
    """
    values = header_values(headers, name)
    return parse_http_date(values[0]) if values else None


def directives(headers):
    """
    :param headers: a request's or a response's header fields.
    :returns: its Cache-Control directives, as L{parse_cache_control} gives
        them.  Without a Cache-Control field, C{Pragma: no-cache} counts as
        C{no-cache}: in requests as RFC 7234 section 5.4 said (RFC 9111
        deprecates Pragma without forbidding it), in responses because its
        meaning there was never specified and revalidating is the safe
        reading.
    """
    values = header_values(headers, b"cache-control")
    if values:
        return parse_cache_control(values)
    if "no-cache" in parse_cache_control(header_values(headers, b"pragma")):
        return {"no-cache": None}
    return {}


def _has_validator(headers):
    """
    :returns: whether C{headers} carry an ETag or a Last-Modified field.
    """
    return bool(header_values(headers, b"etag") or header_values(headers, b"last-modified"))


def storable(method, request_headers, status, response_headers):
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
    be revalidated (no explicit expiry, no validator) are not stored; and,
    as the service's specification asks, a response with C{Set-Cookie} is
    stored only when it says C{public} or C{s-maxage}.

    :param method: the request method; only C{GET} is stored.
    :param request_headers: the request's header fields.
    :param status: the response status.
    :param response_headers: the response's header fields.
    :returns: L{True} when the response may be stored.
    """
    if method != b"GET" or status < 200 or status in (206, 304):
        return False
    response = directives(response_headers)
    understood = status in HEURISTICALLY_CACHEABLE
    if "must-understand" in response:
        # RFC 9111 section 5.2.2.3: must-understand overrides no-store for
        # a cache that implements the status code's caching rules.
        if not understood:
            return False
    elif "no-store" in response:
        return False
    if "no-store" in directives(request_headers) or "private" in response:
        return False
    shared = "public" in response or "s-maxage" in response
    if header_values(request_headers, b"authorization") and not (
        shared or "must-revalidate" in response
    ):
        return False
    if header_values(response_headers, b"set-cookie") and not shared:
        return False
    if b"*" in vary_names(response_headers):
        return False
    explicit = (
        "max-age" in response
        or "s-maxage" in response
        or bool(header_values(response_headers, b"expires"))
    )
    if not (explicit or "public" in response or understood):
        return False
    return explicit or _has_validator(response_headers)


def freshness_lifetime(status, response_headers, response_time=None):
    """
    How long a response stays fresh in a shared cache (RFC 9111 section 4.2.1).

    In order: C{s-maxage}, C{max-age}, C{Expires} minus C{Date}, else a
    heuristic of a tenth of the time since C{Last-Modified}, at most a day,
    for heuristically cacheable statuses and C{public} responses.  An invalid
    or negative C{s-maxage} or C{max-age}, or an invalid C{Expires} (such as
    C{0}), makes the response stale: the RFC's advice for invalid freshness
    information.  Of two C{Expires} or C{Date} fields, the first counts.

    :param status: the response status.
    :param response_headers: the response's header fields.
    :param response_time: when the response was received, which stands for a
        missing or invalid C{Date} (RFC 9110 section 6.6.1 has a recipient
        add one).  Without either, only the directives give a lifetime.
    :returns: the lifetime in seconds, never negative.
    """
    response = directives(response_headers)
    for name in ("s-maxage", "max-age"):
        if name in response:
            return float(_delta_seconds(response[name]) or 0)
    date = _first_date(response_headers, b"date")
    if date is None:
        date = response_time
    expires = header_values(response_headers, b"expires")
    if expires:
        expiry = parse_http_date(expires[0])
        if expiry is None or date is None:
            return 0.0
        return max(0.0, expiry - date)
    if status not in HEURISTICALLY_CACHEABLE and "public" not in response:
        return 0.0
    modified = _first_date(response_headers, b"last-modified")
    if modified is None or date is None:
        return 0.0
    return min(HEURISTIC_CAP, max(0.0, (date - modified) * HEURISTIC_FRACTION))


def current_age(stored, now):
    """
    The age of a stored response (RFC 9111 section 4.2.3): its initial age
    plus the time it has been stored.

    An Age field that is not a single delta-seconds is ignored (RFC 9111
    section 5.1); a huge one counts as L{MAX_DELTA}.  An invalid or missing
    Date counts as the response time, so only the Age field and the request's
    round trip make up the initial age.  Clocks stepping backwards never make
    the response younger than it arrived.

    :param stored: the stored response.
    :param now: the current time.
    :returns: the age in seconds.
    """
    return stored.initial_age + max(0.0, now - stored.response_time)


def _initial_age(stored):
    headers = stored.headers
    date = _first_date(headers, b"date")
    if date is None:
        date = stored.response_time
    ages = header_values(headers, b"age")
    age_value = None
    if len(ages) == 1:
        age_value = _delta_seconds(ages[0].strip().decode("latin-1"))
    apparent_age = max(0.0, stored.response_time - date)
    response_delay = max(0.0, stored.response_time - stored.request_time)
    corrected_age_value = (age_value or 0) + response_delay
    return max(apparent_age, corrected_age_value)


def assess(request_headers, stored, now):
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
    request = directives(request_headers)
    response = stored.directives
    age = current_age(stored, now)
    lifetime = stored.lifetime
    fresh = age < lifetime
    staleness = max(0.0, age - lifetime)

    validate = "no-cache" in response
    may_serve_stale = not validate and response.keys().isdisjoint(_NEVER_STALE)
    forced = "no-cache" in request
    max_age = _delta_seconds(request.get("max-age"))
    min_fresh = _delta_seconds(request.get("min-fresh"))
    # Ages on the wire are whole seconds, so a response can look 0 seconds
    # old; max-age=0 is how clients ask for revalidation, and gets it.
    too_old = max_age is not None and (max_age == 0 or age > max_age)
    too_close = min_fresh is not None and lifetime - age < min_fresh
    acceptable = not (too_old or too_close)

    if fresh:
        in_time = True
    elif "max-stale" in request and may_serve_stale:
        limit = request["max-stale"]
        max_stale = _delta_seconds(limit)
        in_time = limit is None or (max_stale is not None and staleness <= max_stale)
    else:
        in_time = False
    usable = not (forced or validate) and acceptable and in_time

    revalidate_window = _delta_seconds(response.get("stale-while-revalidate"))
    stale_while_revalidate = (
        not fresh
        and may_serve_stale
        and not forced
        and acceptable
        and revalidate_window is not None
        and staleness <= revalidate_window
    )
    requested_window = _delta_seconds(request.get("stale-if-error"))
    error_windows = [_delta_seconds(response.get("stale-if-error")), requested_window]
    error_windows = [w for w in error_windows if w is not None]
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


def collapsible(request_headers):
    """
    May a request that misses wait for the response another request is
    fetching for the same URL, rather than go upstream itself?

    Not when it is conditional (the origin's answer to it, a 304, could not
    be shared, nor would the response others wait for answer it), nor when
    its directives want the origin asked afresh (C{no-cache}, C{max-age=0}):
    a response that started before it arrived would not do.

    :param request_headers: the request's header fields.
    """
    if any(name.lower() in PRECONDITIONS for name, _ in request_headers):
        return False
    request = directives(request_headers)
    return "no-cache" not in request and _delta_seconds(request.get("max-age")) != 0


def shareable(response_headers, request_headers, waiting_headers):
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
    response = directives(response_headers)
    if "private" in response or "no-cache" in response or header_values(response_headers, b"set-cookie"):
        return False
    return vary_matches(vary_names(response_headers), request_headers, waiting_headers)


def vary_names(response_headers):
    """
    :param response_headers: a response's header fields.
    :returns: the lower-cased field names its Vary fields nominate, each
        once, in order; C{b"*"} among them when present.
    """
    names = {}
    for value in header_values(response_headers, b"vary"):
        for name in value.split(b","):
            name = name.strip(b" \t").lower()
            if name:
                names[name] = None
    return tuple(names)


def _normalised(headers, name):
    """
    Normalise a request field for Vary matching (RFC 9111 section 4.1): its
    lines joined with commas, whitespace collapsed and spacing around commas
    made uniform, so that C{gzip,br} matches C{gzip, br} and two field lines.
    Values are otherwise compared as sent: case only matters or not per field.

    :returns: the normalised value, or C{None} when the field is absent.
    """
    values = header_values(headers, name)
    if not values:
        return None
    joined = b", ".join(v for v in (v.strip(b" \t") for v in values) if v)
    return _COMMA.sub(b", ", _SPACES.sub(b" ", joined))


def vary_matches(names, stored_request_headers, request_headers):
    """
    Do the fields a stored response's Vary nominates match (RFC 9111
    section 4.1)?

    :param names: the names from L{vary_names}.
    :param stored_request_headers: the header fields of the request that
        fetched the stored response.
    :param request_headers: the header fields of the request at hand.
    :returns: L{True} when every nominated field matches, a field absent from
        both counting as a match; L{False} whenever C{names} holds C{b"*"}.
    """
    if b"*" in names:
        return False
    return all(
        _normalised(stored_request_headers, name) == _normalised(request_headers, name)
        for name in names
    )


def secondary_key(names, request_headers):
    """
    Name the variant a request selects, for storing variants side by side.

    :param names: the names from L{vary_names}.
    :param request_headers: the request's header fields.
    :returns: one line per nominated field, sorted by name: C{name:value}, or
        only C{name} when the field is absent (so that an empty field and a
        missing one differ); C{b""} when C{names} is empty.  Requests that
        L{vary_matches} pairs give the same key.
    """
    lines = []
    for name in sorted(set(names)):
        value = _normalised(request_headers, name)
        lines.append(name if value is None else name + b":" + value)
    return b"\n".join(lines)


def validators(stored_headers):
    """
    The precondition fields to revalidate a stored response (RFC 9111
    section 4.3.1): both when it has both, for intermediaries that only
    understand dates.

    :param stored_headers: the stored response's header fields.
    :returns: C{If-None-Match} with its entity tags, and C{If-Modified-Since}
        with its Last-Modified date when that is a valid date.
    """
    fields = []
    tags = [v.strip() for v in header_values(stored_headers, b"etag") if v.strip()]
    if tags:
        fields.append((b"If-None-Match", b", ".join(tags)))
    modified = header_values(stored_headers, b"last-modified")
    if modified and parse_http_date(modified[0]) is not None:
        fields.append((b"If-Modified-Since", modified[0].strip()))
    return fields


def _entity_tags(value):
    """
    :returns: the opaque tags (quotes kept, C{W/} dropped) of an
        If-None-Match or ETag value, C{[b"*"]} for C{*}; or C{None} when
        the value is not a valid list of them.
    """
    tags = []
    position = 0
    while position < len(value):
        match = _ENTITY_TAG.match(value, position)
        if match is None or match.end() == position:
            return None
        tags.append(match.group(1) or match.group(3))
        position = match.end()
    return tags or None


def not_modified(request_headers, stored_headers):
    """
    Does a client's conditional GET find the stored response unchanged, so
    that the proxy may answer 304 (RFC 9110 sections 13.1.2, 13.1.3 and
    13.2.2; RFC 9111 section 4.3.2)?

    If-None-Match decides when present: C{*} matches, entity tags compare
    weakly.  Otherwise a single, valid If-Modified-Since is compared with the
    stored Last-Modified, or with the stored Date when there is none.
    If-Match and If-Unmodified-Since concern the origin and are not
    evaluated.  Call this only for a stored 200 the request could reuse.

    :param request_headers: the request's header fields.
    :param stored_headers: the stored response's header fields.
    :returns: L{True} when the answer is 304.
    """
    none_match = header_values(request_headers, b"if-none-match")
    if none_match:
        wanted = _entity_tags(b",".join(none_match))
        if not wanted:
            return False
        if b"*" in wanted:
            return True
        etags = header_values(stored_headers, b"etag")
        current = _entity_tags(etags[0]) if etags else None
        return bool(current) and len(current) == 1 and current[0] in wanted
    since = header_values(request_headers, b"if-modified-since")
    if len(since) != 1:
        return False
    since = parse_http_date(since[0])
    modified = _first_date(stored_headers, b"last-modified")
    if modified is None:
        modified = _first_date(stored_headers, b"date")
    return since is not None and modified is not None and modified <= since


def updated_headers(stored_headers, response_304_headers):
    """
    Refresh a stored response's fields from a 304 (RFC 9111 sections 3.2 and
    4.3.4): each field in the 304 replaces every stored field of that name,
    except the framing and body-describing ones listed in L{_NOT_UPDATED} and
    those the 304's Connection field names.

    A stored Age is always dropped: the 304 vouches for the response as of
    its own arrival, so an Age the 304 does not repeat would count the old
    age twice.  (The caller records the new request and response times, and
    should give the 304 a Date if it has none, RFC 9110 section 6.6.1.)

    :param stored_headers: the stored response's header fields.
    :param response_304_headers: the 304's header fields.
    :returns: the new list of header fields: the stored ones not replaced, in
        order, followed by the 304's.
    """
    excluded = set(_NOT_UPDATED)
    for value in header_values(response_304_headers, b"connection"):
        excluded.update(n.strip(b" \t").lower() for n in value.split(b","))
    updates = [(n, v) for n, v in response_304_headers if n.lower() not in excluded]
    replaced = {n.lower() for n, _ in updates} | {b"age"}
    return [(n, v) for n, v in stored_headers if n.lower() not in replaced] + updates


def _origin(url):
    """
    :returns: the C{(scheme, host, port)} of an absolute C{http://} URL
        (text), or C{None} for anything else.
    """
    try:
        parts = urlsplit(url)
        port = parts.port or 80
    except ValueError:
        return None
    if parts.scheme.lower() != "http" or not parts.hostname:
        return None
    return ("http", parts.hostname.lower(), port)


def invalidated_urls(method, status, request_url, response_headers):
    """
    The URLs whose stored responses an unsafe request invalidates (RFC 9111
    section 4.4).

    :param method: the request method; any method not known to be safe
        (GET, HEAD, OPTIONS, TRACE) is unsafe.
    :param status: the response status; only 2xx and 3xx invalidate.
    :param request_url: the absolute request URL.
    :param response_headers: the response's header fields, whose first
        Location and Content-Location, resolved against C{request_url}, are
        invalidated too when they have the request URL's origin (so a
        response cannot purge another site's entries).
    :returns: C{request_url} then those URLs, without fragments or
        duplicates; or C{[]}.
    """
    if method in SAFE_METHODS or not 200 <= status < 400:
        return []
    base = request_url.decode("latin-1")
    origin = _origin(base)
    urls = [request_url]
    for name in (b"location", b"content-location"):
        values = header_values(response_headers, name)
        if not values or origin is None:
            continue
        try:
            target = urljoin(base, values[0].strip().decode("latin-1")).partition("#")[0]
        except ValueError:
            continue
        url = target.encode("latin-1")
        if _origin(target) == origin and url not in urls:
            urls.append(url)
    return urls


def _sf_string(text):
    """
    :returns: C{text} as a structured-field string (RFC 8941 section 3.3.3).
    :raises ValueError: when it has characters outside printable ASCII.
    """
    if not all(" " <= c <= "~" for c in text):
        raise ValueError(f"not printable ASCII: {text!r}")
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def cache_status(*, hit, fwd=None, stored=False, collapsed=False, fwd_status=None, ttl=None, detail=None):
    """
    An RFC 9211 Cache-Status field value for this cache.

    :param hit: the response came from the cache without going upstream.
    :param fwd: why the request went upstream: one of L{FWD_REASONS}.
    :param stored: the upstream response was stored.
    :param collapsed: the request waited for the response another request
        was fetching, and was answered with it.
    :param fwd_status: the status the upstream answered.
    :param ttl: the response's freshness left, in seconds (negative when
        stale); rounded down.
    :param detail: free text for operators, printable ASCII.
    :returns: such as C{b"netproxy; hit; ttl=57"} or
        C{b"netproxy; fwd=miss; stored"}.
    :raises ValueError: for an unknown C{fwd} or an unprintable C{detail}.
    """
    params = []
    if hit:
        params.append("hit")
    if fwd is not None:
        if fwd not in FWD_REASONS:
            raise ValueError(f"unknown Cache-Status fwd reason: {fwd!r}")
        params.append(f"fwd={fwd}")
    if fwd_status is not None:
        params.append(f"fwd-status={int(fwd_status)}")
    if stored:
        params.append("stored")
    if collapsed:
        params.append("collapsed")
    if ttl is not None:
        params.append(f"ttl={floor(ttl)}")
    if detail is not None:
        params.append("detail=" + _sf_string(detail))
    return b"; ".join([CACHE_NAME, *(p.encode("ascii") for p in params)])
