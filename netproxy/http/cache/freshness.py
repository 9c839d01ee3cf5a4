# -*- test-case-name: tests.http.cache.test_freshness -*-
"""
How long a response stays fresh, and how old it was when it arrived (RFC
9111 sections 4.2.1 to 4.2.3): the two numbers every decision of
L{netproxy.http.cache.policy} about a stored response starts from.

Pure functions of a response's header fields and the times it was
requested and received (float POSIX seconds), like the policy itself.  An
invalid freshness value makes a response stale, and of a field given twice
the first counts.
"""

from netproxy.http.cache.fields import delta_seconds, directives, first_date, parse_http_date
from netproxy.http.cache.refresh import RefreshRule
from netproxy.http.head import header_values

# RFC 9111 section 4.2.2: a heuristic lifetime is a fraction of the time since
# Last-Modified; a day caps it, as common caches do.
HEURISTIC_FRACTION = 0.1
HEURISTIC_CAP = 24 * 60 * 60

# RFC 9110 section 15.1, less 206: this cache does not store partial content.
HEURISTICALLY_CACHEABLE = frozenset({200, 203, 204, 300, 301, 308, 404, 405, 410, 414, 501})


def freshness_lifetime(status: int, response_headers: list[tuple[bytes, bytes]],
                       response_time: float | None = None, rule: RefreshRule | None = None) -> float:
    """
    How long a response stays fresh in a shared cache (RFC 9111 section 4.2.1).

    In order: C{s-maxage}, C{max-age}, C{Expires} minus C{Date}, else a
    heuristic of a tenth of the time since C{Last-Modified}, at most a day,
    for heuristically cacheable statuses and C{public} responses (or the
    heuristic of the operator's C{rule}, when one matched its URL).  An invalid
    or negative C{s-maxage} or C{max-age}, or an invalid C{Expires} (such as
    C{0}), makes the response stale: the RFC's advice for invalid freshness
    information.  Of two C{Expires} or C{Date} fields, the first counts.

    :param status: the response status.
    :param response_headers: the response's header fields.
    :param response_time: when the response was received, which stands for a
        missing or invalid C{Date} (RFC 9110 section 6.6.1 has a recipient
        add one).  Without either, only the directives give a lifetime.
    :param rule: the operator's L{RefreshRule} for the response's URL, if
        one matched: it replaces the heuristic, never explicit freshness.
    :returns: the lifetime in seconds, never negative.
    """
    response = directives(response_headers)
    for name in ("s-maxage", "max-age"):
        if name in response:
            return float(delta_seconds(response[name]) or 0)
    date = first_date(response_headers, b"date")
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
    modified = first_date(response_headers, b"last-modified")
    if rule is not None:
        return rule.lifetime(date, modified)
    if modified is None or date is None:
        return 0.0
    return min(HEURISTIC_CAP, max(0.0, (date - modified) * HEURISTIC_FRACTION))


def initial_age(headers: list[tuple[bytes, bytes]], request_time: float, response_time: float) -> float:
    """
    The corrected initial age of a response (RFC 9111 section 4.2.3): how
    old it was when it arrived.

    Age should be a single delta-seconds (RFC 9111 section 5.1); of a list
    (C{7200, 0}, on one line or several) the first value counts, and
    parameters after it (C{7200;foo=1}) are ignored, as Squid reads them:
    an origin's or upstream cache's word that the response is old is not
    thrown away in favour of a fresher reading.  A first value that is not
    delta-seconds (C{abc}, C{-5}, C{7200.0}) is ignored; a huge one counts as
    L{netproxy.http.cache.fields.MAX_DELTA}.  An invalid or missing Date
    counts as the response time, so only the Age field and the request's
    round trip make up the initial age.

    :param headers: the response's header fields.
    :param request_time: when the request it answers was sent.
    :param response_time: when it was received.
    :returns: the age in seconds.
    """
    date = first_date(headers, b"date")
    if date is None:
        date = response_time
    ages = header_values(headers, b"age")
    age_value = None
    if ages:
        first = ages[0].split(b",", 1)[0].split(b";", 1)[0].strip(b" \t")
        age_value = delta_seconds(first.decode("latin-1"))
    apparent_age = max(0.0, response_time - date)
    response_delay = max(0.0, response_time - request_time)
    corrected_age_value = (age_value or 0) + response_delay
    return max(apparent_age, corrected_age_value)
