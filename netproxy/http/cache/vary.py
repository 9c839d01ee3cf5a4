# -*- test-case-name: tests.http.cache.test_vary -*-
"""
Variants of a stored response (RFC 9111 section 4.1): the request fields a
response's C{Vary} nominates, whether two requests agree on them, and the
secondary key naming the variant a request selects, so that the cache can
store variants side by side.

Pure functions of header fields.  Values are compared after a light
normalisation (field lines joined, whitespace made uniform) and otherwise
as sent, without any one field's own rules (case, list order): requests the
normalisation cannot tell apart share a variant, others each get their own.
C{Vary: *} matches no request.
"""

import re

from netproxy.http.head import header_values

_COMMA = re.compile(rb"[ \t]*,[ \t]*")
_SPACES = re.compile(rb"[ \t]+")


def vary_names(response_headers: list[tuple[bytes, bytes]]) -> tuple[bytes, ...]:
    """
    :param response_headers: a response's header fields.
    :returns: the lower-cased field names its Vary fields nominate, each
        once, in order; C{b"*"} among them when present.
    """
    names: dict[bytes, None] = {}
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


def vary_matches(
    names: tuple[bytes, ...],
    stored_request_headers: list[tuple[bytes, bytes]],
    request_headers: list[tuple[bytes, bytes]],
) -> bool:
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


def secondary_key(names: tuple[bytes, ...], request_headers: list[tuple[bytes, bytes]]) -> bytes:
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
