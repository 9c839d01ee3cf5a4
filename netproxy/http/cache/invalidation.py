# -*- test-case-name: tests.http.cache.test_invalidation -*-
"""
What an unsafe request invalidates in a shared cache (RFC 9111 section 4.4):
its own URL, and the same-origin URLs its response names in C{Location}
and C{Content-Location}.  A pure function, as in L{netproxy.http.cache.policy}.
"""

from urllib.parse import urljoin, urlsplit

from netproxy.http.head import header_values

SAFE_METHODS = frozenset({b"GET", b"HEAD", b"OPTIONS", b"TRACE"})


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


def invalidated_urls(
    method: bytes, status: int, request_url: bytes, response_headers: list[tuple[bytes, bytes]]
) -> list[bytes]:
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
