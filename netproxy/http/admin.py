# -*- test-case-name: tests.http.test_admin -*-
"""
What the HTTP proxy answers itself, for clients of its C{--admin} networks
(loopback by default): its own pages, asked for in origin-form (C{GET
/metrics}: Prometheus metrics; C{GET /status}: a short page for people),
and C{PURGE url}, which removes a URL from the cache.

The PAC file (C{GET /proxy.pac}, C{/wpad.dat}; L{netproxy.http.pac}) is
answered here too, to every client the proxy admits: browsers fetch it
before they use the proxy.

Any other origin-form request is not a proxy request: 400, as before.
"""

import html
import time
from typing import Any

from netproxy.connections import client_host
from netproxy.http.cache.responses import cache_key
from netproxy.errors import EntryNotRemoved, HTTPError
from netproxy.http.interfaces import IExchange
from netproxy.http.message import error_response
from netproxy.http import pac
from netproxy.instruments import CONTENT_TYPE

PAGES = (b"/metrics", b"/status", *pac.PATHS)


def _check_admin(exchange: IExchange, what: str) -> None:
    """
    :raises HTTPError: 403 unless the exchange's client is of an
        C{--admin} network; 400 if its request has a body.
    """
    host = client_host(exchange.client.transport.getPeer())
    if host is None or exchange.factory.admin.match(host) is None:
        raise HTTPError(403, f"{what} is allowed from --admin networks only, not from {host}")
    if not exchange.bodyless:
        raise HTTPError(400, f"{what}: the request must have no body")


def _page_response(exchange: IExchange, content_type: bytes, body: bytes, with_body: bool = True) -> bytes:
    head = (b"HTTP/1.1 200 OK\r\nContent-Type: %s\r\nContent-Length: %d\r\nCache-Control: no-store\r\n%s\r\n"
            % (content_type, len(body), exchange.connection_field()))
    return head + (body if with_body else b"")


def page(exchange: IExchange, rest: bytes) -> None:
    """
    Answer an origin-form request with one of the proxy's pages.

    :raises HTTPError: 400 for a path that is no page, 405 for a method
        other than GET or HEAD, 403 for clients not of an C{--admin}
        network (but for the PAC file), 404 for a PAC file the client's
        connection cannot be given (L{netproxy.http.pac.pac_body}).
    """
    head = exchange.head
    path = head.target.partition(b"?")[0]
    if path not in PAGES:
        raise HTTPError(400, "not a proxy request: " + head.target[:80].decode("ascii", "backslashreplace"))
    if head.method not in (b"GET", b"HEAD"):
        raise HTTPError(405, f"{path.decode('ascii')} answers GET and HEAD only")
    if path in pac.PATHS:
        if not exchange.bodyless:
            raise HTTPError(400, f"the page {path.decode('ascii')}: the request must have no body")
        body = pac.pac_body(exchange)
        response = _page_response(exchange, pac.CONTENT_TYPE, body, with_body=head.method == b"GET")
        exchange.answer_locally(200, response, rest)
        return
    _check_admin(exchange, f"the page {path.decode('ascii')}")
    factory = exchange.factory
    if path == b"/metrics":
        content_type, body = CONTENT_TYPE, factory.metrics.page()
    else:
        content_type, body = b"text/html; charset=utf-8", status_page(factory)
    response = _page_response(exchange, content_type, body, with_body=head.method == b"GET")
    exchange.answer_locally(200, response, rest)


def purge(exchange: IExchange, rest: bytes) -> None:
    """
    Answer C{PURGE url}: remove what the cache holds for the URL (200, or
    404 when it held nothing).  200 means gone for good, after a restart
    too; an entry that could not be removed so is 500, with the reason.

    :raises HTTPError: 403 for clients not of an C{--admin} network, 400
        for a PURGE with a body, 500 when the entry could not be removed.
    """
    _check_admin(exchange, "PURGE")
    cache = exchange.factory.cache
    url = exchange.head.target.decode("latin-1")
    try:
        removed = cache is not None and cache.purge(cache_key(exchange.target))
    except EntryNotRemoved as e:
        raise HTTPError(500, f"{url} could not be removed from the cache: {e}") from None
    if removed:
        status, text = 200, f"{url} removed from the cache"
    else:
        status, text = 404, f"{url} is not in the cache"
    exchange.log.info("{peer} purged {url}: {status}", peer=exchange.client.peer, url=url, status=status)
    field = exchange.connection_header()
    page = error_response(status, text, close=False, extra_headers=[field] if field else ())
    exchange.answer_locally(status, page, rest)


def _duration(seconds: float) -> str:
    seconds = int(seconds)
    days, seconds = divmod(seconds, 86400)
    hours, seconds = divmod(seconds, 3600)
    minutes, seconds = divmod(seconds, 60)
    return (f"{days}d " if days else "") + f"{hours:02d}:{minutes:02d}:{seconds:02d}"


def _size(count: float) -> str:
    for unit in ("bytes", "KiB", "MiB", "GiB"):
        if count < 1024 or unit == "GiB":
            return f"{count:.0f} {unit}" if unit == "bytes" else f"{count:.1f} {unit}"
        count /= 1024
    return ""  # pragma: no cover


def status_page(factory: Any) -> bytes:
    """
    :returns: the C{/status} page: a short HTML summary for people.
    """
    metrics = factory.metrics
    requests = metrics.requests.total()
    results = {result: metrics.cache_requests.value(result) for result in ("HIT", "MISS", "REVALIDATED", "STALE")}
    consulted = sum(results.values())
    rows = [
        ("Up for", _duration(time.time() - metrics.started)),
        ("Client connections", str(len(factory.connections))),
        ("Upstream connections (idle)",
         f"{metrics.upstream_connections.value()} ({len(factory.pool)})"),
        ("Requests", str(requests)),
        ("Bytes sent", _size(metrics.sent.value())),
    ]
    cache = factory.cache
    if cache is None:
        rows.append(("Cache", "off (--no-cache)"))
    else:
        store = cache.store
        ratio = f"{100 * results['HIT'] / consulted:.1f}%" if consulted else "-"
        rows += [
            ("Cache", f"{len(store)} entries, {_size(store.size)} of {_size(store.max_size)}"),
            ("Cache hits", f"{results['HIT']} of {consulted} consulted ({ratio})"),
            ("Revalidated / stale", f"{results['REVALIDATED']} / {results['STALE']}"),
            ("Collapsed misses", str(metrics.collapsed.value())),
            ("Evictions", str(store.evictions)),
        ]
    limiter = factory.rate_limiter
    if limiter is not None:
        rows.append(("Rate limits", f"{len(limiter.clients)} client addresses followed, paused "
                                    f"{limiter.throttled_seconds:.1f} s in all, {limiter.refused_requests} "
                                    f"requests refused (429)"))
    cells = "\n".join(f"<tr><th>{html.escape(name)}</th><td>{html.escape(value)}</td></tr>" for name, value in rows)
    return (f"<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>netproxy status</title></head>\n"
            f"<body><h1>netproxy</h1>\n<table>\n{cells}\n</table>\n"
            f"<p><a href=\"/metrics\">Metrics</a></p></body></html>\n").encode("utf-8")
