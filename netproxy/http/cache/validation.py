# -*- test-case-name: tests.http.cache.test_validation -*-
"""
Conditional requests and 304 responses in a cache (RFC 9110 section 13;
RFC 9111 sections 3.2 and 4.3): the preconditions that revalidate a stored
response, whether a client's own conditional GET finds a stored response
unchanged, and how a 304 refreshes the stored fields.

Pure functions of header fields, like L{netproxy.http.cache.policy}.
L{PRECONDITIONS} names every field that makes a request conditional; of
them only If-None-Match and If-Modified-Since are evaluated here, the
others concerning the origin.  Entity tags compare weakly, as a GET's
If-None-Match does, and a 304 never changes the fields the stored body
depends on.
"""

import re

from netproxy.http.cache.fields import Fields, as_fields, first_date, parse_http_date
from netproxy.http.head import header_values

# A request with any of these is conditional (RFC 9110 section 13.1).
PRECONDITIONS = frozenset({b"if-match", b"if-none-match", b"if-modified-since", b"if-unmodified-since", b"if-range"})

# Fields a 304 must not change in a stored response (RFC 9111 section 3.2):
# the hop-by-hop and proxy-specific fields never stored (section 3.1), the
# framing of the stored body (Content-Length, and Transfer-Encoding and
# Trailer, which a 304 without content cannot describe), and Content-Range,
# which section 3.2 lets a cache leave alone.  Content-Type and
# Content-Encoding are updated, as section 3.2 requires of a cache that
# stores the bytes as received (only one that decodes or parses them may
# keep its own).
_NOT_UPDATED = frozenset(
    b"connection keep-alive proxy-connection te transfer-encoding trailer upgrade"
    b" proxy-authenticate proxy-authentication-info proxy-authorization"
    b" content-length content-range".split()
)

_ENTITY_TAG = re.compile(rb'\s*(?:(\*)|(W/)?("[^"]*"))\s*(?:,|$)')


def validators(stored_headers: list[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes]]:
    """
    The precondition fields to revalidate a stored response (RFC 9111
    section 4.3.1): both when it has both, for intermediaries that only
    understand dates.

    :param stored_headers: the stored response's header fields.
    :returns: C{If-None-Match} with its entity tags, and C{If-Modified-Since}
        with its Last-Modified date when that is a valid date.
    """
    fields: list[tuple[bytes, bytes]] = []
    tags = [v.strip() for v in header_values(stored_headers, b"etag") if v.strip()]
    if tags:
        fields.append((b"If-None-Match", b", ".join(tags)))
    modified = header_values(stored_headers, b"last-modified")
    if modified and parse_http_date(modified[0]) is not None:
        fields.append((b"If-Modified-Since", modified[0].strip()))
    return fields


def _entity_tags(value: bytes) -> list[bytes] | None:
    """
    :returns: the opaque tags (quotes kept, C{W/} dropped) of an
        If-None-Match or ETag value, C{[b"*"]} for C{*}; or C{None} when
        the value is not a valid list of them.
    """
    tags: list[bytes] = []
    position = 0
    while position < len(value):
        match = _ENTITY_TAG.match(value, position)
        if match is None or match.end() == position:
            return None
        tags.append(match.group(1) or match.group(3))
        position = match.end()
    return tags or None


def not_modified(request_headers: list[tuple[bytes, bytes]] | Fields, stored_headers: list[tuple[bytes, bytes]]) -> bool:
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
    request = as_fields(request_headers)
    if b"if-none-match" not in request.names and b"if-modified-since" not in request.names:
        # Most requests: not conditional.
        return False
    request_headers = request.headers
    none_match = header_values(request_headers, b"if-none-match")
    if none_match:
        wanted = _entity_tags(b",".join(none_match))
        if not wanted:
            return False
        if b"*" in wanted:
            return True
        etags = header_values(stored_headers, b"etag")
        current = _entity_tags(etags[0]) if etags else None
        return current is not None and len(current) == 1 and current[0] in wanted
    since_values = header_values(request_headers, b"if-modified-since")
    if len(since_values) != 1:
        return False
    since = parse_http_date(since_values[0])
    modified = first_date(stored_headers, b"last-modified")
    if modified is None:
        modified = first_date(stored_headers, b"date")
    return since is not None and modified is not None and modified <= since


def updated_headers(
    stored_headers: list[tuple[bytes, bytes]], response_304_headers: list[tuple[bytes, bytes]]
) -> list[tuple[bytes, bytes]]:
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


def head_matches(stored_headers: list[tuple[bytes, bytes]], head_headers: list[tuple[bytes, bytes]]) -> bool:
    """
    Whether a 200 to a HEAD describes a stored response to GET, so that its
    fields may freshen it (RFC 9111 section 4.3.5, selecting as section
    4.3.4 does): the same entity tag (compared weakly) when the HEAD
    response has one; else the same Last-Modified when it has one; else
    neither has a validator.  Never when it gives another Content-Length:
    the body it describes is not the one stored.

    :param stored_headers: the stored response's fields.
    :param head_headers: the fields of the 200 to HEAD.
    """
    lengths = [v.strip() for v in header_values(head_headers, b"content-length")]
    if lengths and lengths != [v.strip() for v in header_values(stored_headers, b"content-length")]:
        return False
    tags = header_values(head_headers, b"etag")
    if tags:
        stored_tags = header_values(stored_headers, b"etag")
        return len(tags) == 1 and len(stored_tags) == 1 and _weak(tags[0]) == _weak(stored_tags[0])
    modified = first_date(head_headers, b"last-modified")
    if modified is not None:
        return modified == first_date(stored_headers, b"last-modified")
    names = {name.lower() for name, _ in stored_headers}
    return b"etag" not in names and b"last-modified" not in names


def _weak(tag: bytes) -> bytes:
    tag = tag.strip()
    return tag[2:] if tag[:2] == b"W/" else tag
