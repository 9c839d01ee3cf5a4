# -*- test-case-name: tests.http.cache.test_status -*-
"""
The C{Cache-Status} response field (RFC 9211) as this cache writes it: its
name, then whether the response was a hit, why the request went upstream
(C{fwd}), what the origin answered, whether the response was stored or
shared with a collapsed request, its freshness left and a free-text detail.

The field is written, never parsed, so the writer is strict: a C{fwd}
reason outside RFC 9211's list (L{FWD_REASONS}) or a detail that is not
printable ASCII raises L{ValueError} rather than go out as a field other
caches cannot read.  The C{ttl} is rounded down, so a response is never
announced fresher than it is.
"""

import re
from functools import lru_cache
from math import floor

CACHE_NAME = b"netproxy"
# A structured-field token (RFC 8941 section 3.3.4): a Via pseudonym (an
# HTTP token) that does not start with a letter or "*" must be quoted.
_SF_TOKEN = re.compile(rb"[A-Za-z*][!#$%&'*+\-.^_`|~0-9A-Za-z:/]*")
FWD_REASONS = frozenset(
    {"bypass", "method", "uri-miss", "vary-miss", "miss", "request", "stale", "partial"}
)


def _sf_string(text):
    """
    :returns: C{text} as a structured-field string (RFC 8941 section 3.3.3).
    :raises ValueError: when it has characters outside printable ASCII.
    """
    if not all(" " <= c <= "~" for c in text):
        raise ValueError(f"not printable ASCII: {text!r}")
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def cache_name(pseudonym: bytes) -> bytes:
    """
    :param pseudonym: the proxy's Via pseudonym (an HTTP token).
    :returns: its name in C{Cache-Status}: the pseudonym, so that the
        caches of a hierarchy tell themselves apart (the field lists each,
        closest to the origin first, closest to the client last), quoted
        when it is no structured-field token.
    :raises ValueError: when it is not printable ASCII.
    """
    if _SF_TOKEN.fullmatch(pseudonym):
        return pseudonym
    return _sf_string(pseudonym.decode("latin-1")).encode("ascii")


def cache_status(
    *,
    hit: bool,
    fwd: str | None = None,
    stored: bool = False,
    collapsed: bool = False,
    fwd_status: int | None = None,
    ttl: float | None = None,
    detail: str | None = None,
    name: bytes = CACHE_NAME,
) -> bytes:
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
    :param name: this cache's name (L{cache_name}).
    :returns: such as C{b"netproxy; hit; ttl=57"} or
        C{b"netproxy; fwd=miss; stored"}.
    :raises ValueError: for an unknown C{fwd} or an unprintable C{detail}.
    """
    params: list[str] = []
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
    return b"; ".join([name, *(p.encode("ascii") for p in params)])


@lru_cache(maxsize=4096)
def hit_status(ttl: int, name: bytes = CACHE_NAME) -> bytes:
    """
    :param ttl: a fresh response's freshness left, in whole seconds.
    :param name: this cache's name (L{cache_name}).
    :returns: the Cache-Status of a hit, remembered for recent values, as a
        hit on a busy entry asks for the same few.
    """
    return cache_status(hit=True, ttl=ttl, name=name)


@lru_cache(maxsize=1024)
def forwarded_status(fwd: str | None, fwd_status: int, stored: bool = False, name: bytes = CACHE_NAME) -> bytes:
    """
    :param fwd: why the request went upstream, as L{cache_status} takes it.
    :param fwd_status: what the upstream answered.
    :param stored: whether its response was stored.
    :param name: this cache's name (L{cache_name}).
    :returns: the Cache-Status of a response from upstream, remembered, as
        every miss asks for one of the same few.
    :raises ValueError: for an unknown C{fwd}.
    """
    return cache_status(hit=False, fwd=fwd, fwd_status=fwd_status, stored=stored, name=name)


def stale_status(ttl: float, why: str, name: bytes = CACHE_NAME) -> bytes:
    """
    :param ttl: a stale response's freshness left (negative).
    :param why: the directive that lets it be served stale (RFC 5861):
        C{"stale-while-revalidate"} or C{"stale-if-error"}.
    :param name: this cache's name (L{cache_name}).
    :returns: its Cache-Status: a hit, C{why} as its detail.
    """
    return cache_status(hit=True, ttl=ttl, detail=why, name=name)
