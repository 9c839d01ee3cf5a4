"""
End-to-end tests of the HTTP proxy's shared cache: a real C{twistd netproxy
http}, each with its own C{--cache-dir}, in front of the test origin
(L{tests.integration.http_origin}), to which each test adds the pages it
needs: a L{Page} answers the status, header fields and body the test sets,
and records every request that reaches it.  Requests go through treq
(L{tests.integration.http_client.CacheTestCase.request}), but for the
concurrent clients of the collapsed-forwarding tests, which are raw.

What the cache did is read from three places: whether the origin saw the
request, the response's C{Cache-Status} and C{Age} fields, and the cache
column of the proxy's access log (HIT, MISS, REVALIDATED, STALE, BYPASS).
"""

import os
import re
import subprocess

from twisted.internet.defer import Deferred, succeed
from twisted.trial.unittest import SkipTest
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET

from tests.integration.daemon import bounded, connect_client, run_command
from tests.integration.http_client import CacheTestCase, access_line, cache_status, start_proxy
from tests.integration.http_origin import (
    BODY,
    MAX_AGE_60,
    Page,
    add_page,
    body_of,
    pattern_digest,
    start_origin,
    stoppable_origin,
)


class _Localised(Page):
    """
    A L{Page} whose body names the request's C{Accept-Language}.
    """

    def body_for(self, request):
        return b"%s in %s" % (self.body, request.getHeader(b"accept-language") or b"none")


class StorageTests(CacheTestCase):
    """
    What is stored, what is not, and that it lasts.
    """

    async def test_hit(self):
        """
        A response with max-age=60 is fetched from the origin once, then served from the cache byte for byte.
        """
        origin = start_origin(self)
        page = Page(MAX_AGE_60)
        url = add_page(origin, "hit", page)
        proxy = await self.cached_proxy()
        await self.assert_stored(proxy, url)
        connections = origin.connections
        await self.assert_hit(proxy, url)
        self.assertEqual((len(page.seen), origin.connections), (1, connections))

    async def test_persists_across_restart(self):
        """
        A proxy started on the cache directory of one stopped with SIGTERM serves its entries without the origin.
        """
        origin = start_origin(self)
        page = Page(MAX_AGE_60)
        url = add_page(origin, "persistent", page)
        directory = self.cache_dir()
        first = await self.cached_proxy(cache_dir=directory)
        await self.assert_stored(first, url)
        self.assertTrue(await first.stop(), first.output.transcript())
        self.assertEqual(first.output.status_text(), "exit code 0", first.output.transcript())
        connections = origin.connections
        second = await self.cached_proxy(cache_dir=directory)
        await self.assert_hit(second, url)
        self.assertEqual((len(page.seen), origin.connections), (1, connections))

    async def test_large_body(self):
        """
        A 5 MiB cacheable body is stored as it streams past, then served from the cache intact, by SHA-256.
        """
        size = 5 * 1024 * 1024
        origin = start_origin(self)
        page = Page(MAX_AGE_60, body=body_of(size))
        url = add_page(origin, "large", page)
        proxy = await self.cached_proxy()
        expected = pattern_digest(size)
        for column in ("MISS", "HIT"):
            response, received, logged = await self.request(proxy, url, size=str(size), keep=False)
            self.assertEqual((response.code, received.size, received.digest.hexdigest(), logged),
                             (200, size, expected, column), cache_status(response))
        self.assertEqual(len(page.seen), 1)

    async def test_not_stored(self):
        """
        Responses with Cache-Control private or no-store, or with Set-Cookie, are never stored: every request goes up.
        """
        origin = start_origin(self)
        pages = {
            "private": Page((b"Cache-Control", b"private, max-age=60")),
            "no-store": Page((b"Cache-Control", b"no-store, max-age=60")),
            "cookie": Page(MAX_AGE_60, (b"Set-Cookie", b"session=1")),
        }
        proxy = await self.cached_proxy()
        for name, page in pages.items():
            url = add_page(origin, name, page)
            for _ in range(2):
                response, received, column = await self.request(proxy, url)
                self.assertEqual((response.code, received.body, column), (200, BODY, "MISS"), name)
                self.assertEqual(cache_status(response), ["fwd=uri-miss", "fwd-status=200"], name)
            self.assertEqual(len(page.seen), 2, f"{name}: a response that must not be stored was served from it")

    async def test_no_cache_option(self):
        """
        With --no-cache every request reaches the origin, logged BYPASS, with no Cache-Status and no cache directory.
        """
        origin = start_origin(self)
        page = Page(MAX_AGE_60)
        url = add_page(origin, "bypassed", page)
        proxy = await start_proxy(self, "--no-cache")
        for _ in range(2):
            response, received, column = await self.request(proxy, url)
            self.assertEqual((response.code, received.body, column), (200, BODY, "BYPASS"))
            self.assertEqual(response.headers.getRawHeaders(b"cache-status"), None)
            self.assertEqual(response.headers.getRawHeaders(b"age"), None)
        self.assertEqual(len(page.seen), 2)
        self.assertFalse(os.path.exists(os.path.join(proxy.directory, "netproxy-cache")))


class ReuseTests(CacheTestCase):
    """
    How stored responses answer later requests: validation, variants,
    errors, invalidation and the client's own directives.
    """

    async def test_revalidation(self):
        """
        A stale or no-cache stored response is revalidated with If-None-Match; the origin's 304 gets the stored body.
        """
        origin = start_origin(self)
        proxy = await self.cached_proxy()
        for name, directives in [("expired", b"max-age=0"), ("no-cache", b"no-cache, max-age=60")]:
            page = Page((b"Cache-Control", directives), (b"ETag", b'"v1"'))
            url = add_page(origin, name, page)
            await self.assert_stored(proxy, url)
            # Were the origin asked for the body again, the test would see this.
            page.body = b"not the stored body"
            response, received, column = await self.request(proxy, url)
            self.assertEqual((response.code, received.body, column), (200, BODY, "REVALIDATED"),
                             f"{name}\n{proxy.output.transcript()}")
            self.assertEqual(cache_status(response), ["fwd=stale", "fwd-status=304"], name)
            self.assertEqual([seen.header("if-none-match") for seen in page.seen], [[], ['"v1"']], name)
            self.assertEqual(page.answered, [200, 304], name)

    async def test_client_conditional(self):
        """
        A client's If-None-Match naming a fresh stored ETag gets 304 from the cache; another tag gets the stored body.
        """
        origin = start_origin(self)
        page = Page(MAX_AGE_60, (b"ETag", b'"v1"'))
        url = add_page(origin, "conditional", page)
        proxy = await self.cached_proxy()
        await self.assert_stored(proxy, url)
        response, received, column = await self.request(proxy, url, headers={b"If-None-Match": [b'"v1"']},
                                                        status=304)
        self.assertEqual((response.code, received.body, column), (304, b"", "HIT"), proxy.output.transcript())
        self.assertIn("hit", cache_status(response))
        self.assertEqual(response.headers.getRawHeaders(b"etag"), [b'"v1"'])
        await self.assert_hit(proxy, url, headers={b"If-None-Match": [b'"v0"']})
        self.assertEqual(len(page.seen), 1)

    async def test_vary(self):
        """
        Two Accept-Language variants of a Vary: Accept-Language response are stored side by side, each served its own.
        """
        origin = start_origin(self)
        page = _Localised(MAX_AGE_60, (b"Vary", b"Accept-Language"))
        url = add_page(origin, "localised", page)
        proxy = await self.cached_proxy()
        languages = [b"en", b"fr"]
        for language in languages:
            await self.assert_stored(proxy, url, BODY + b" in " + language, {b"Accept-Language": [language]})
        for language in languages:
            await self.assert_hit(proxy, url, BODY + b" in " + language, {b"Accept-Language": [language]})
        self.assertEqual([seen.header("accept-language") for seen in page.seen], [["en"], ["fr"]])

    async def test_stale_if_error_5xx(self):
        """
        A stale response with stale-if-error is served, logged STALE, when the origin answers 503.
        """
        origin = start_origin(self)
        page = Page((b"Cache-Control", b"max-age=0, stale-if-error=600"))
        url = add_page(origin, "failing", page)
        proxy = await self.cached_proxy()
        await self.assert_stored(proxy, url)
        page.status, page.body = 503, b"origin error"
        response, received, column = await self.request(proxy, url)
        self.assertEqual((response.code, received.body, column), (200, BODY, "STALE"), proxy.output.transcript())
        self.assertIn("hit", cache_status(response))
        self.assertEqual(page.answered, [200, 503])

    async def test_stale_if_error_origin_down(self):
        """
        A stale response with stale-if-error is served, logged STALE, when the origin no longer accepts connections.
        """
        origin = stoppable_origin(self)
        page = Page((b"Cache-Control", b"max-age=0, stale-if-error=600"))
        url = add_page(origin, "gone", page)
        proxy = await self.cached_proxy()
        await self.assert_stored(proxy, url)
        await origin.stop()
        response, received, column = await self.request(proxy, url)
        self.assertEqual((response.code, received.body, column), (200, BODY, "STALE"), proxy.output.transcript())
        self.assertIn("hit", cache_status(response))
        self.assertEqual(len(page.seen), 1)

    async def test_invalidated_by_post(self):
        """
        A successful POST to a URL removes its stored response: the next GET goes to the origin.
        """
        origin = start_origin(self)
        page = Page(MAX_AGE_60)
        url = add_page(origin, "invalidated", page)
        proxy = await self.cached_proxy()
        await self.assert_stored(proxy, url)
        await self.assert_hit(proxy, url)
        response, received, _ = await self.request(proxy, url, method=b"POST", body=b"changed")
        self.assertEqual((response.code, received.body), (200, BODY))
        page.body = b"after the POST"
        await self.assert_stored(proxy, url, b"after the POST")
        self.assertEqual([(seen.method, seen.body) for seen in page.seen],
                         [("GET", b""), ("POST", b"changed"), ("GET", b"")])

    async def test_purge(self):
        """
        PURGE from loopback (the default --admin) removes a stored response (200), then finds nothing (404).
        """
        origin = start_origin(self)
        page = Page(MAX_AGE_60)
        url = add_page(origin, "purged", page)
        proxy = await self.cached_proxy()
        await self.assert_stored(proxy, url)
        await self.request(proxy, url, method=b"PURGE", status=200)
        await self.request(proxy, url, method=b"PURGE", status=404)
        await self.assert_stored(proxy, url)
        self.assertEqual(len(page.seen), 2)

    async def test_only_if_cached(self):
        """
        only-if-cached with nothing stored is answered 504 without contacting the origin.
        """
        origin = start_origin(self)
        page = Page(MAX_AGE_60)
        url = add_page(origin, "absent", page)
        proxy = await self.cached_proxy()
        since = proxy.mark()
        await self.assert_error(proxy, b"GET %s HTTP/1.1\r\nHost: a\r\nCache-Control: only-if-cached\r\n\r\n"
                                % url.encode("ascii"), 504)
        await proxy.wait_for(access_line("GET", url, 504), since)
        self.assertEqual((page.seen, origin.connections), ([], 0))


class _HeldPage(Resource):
    """
    A page that answers each request with a body of its own (numbered), sends
    the head and the first half of it, then holds the rest until the test
    calls L{release}.

    :ivar held: the requests being answered, in arrival order, each with the
        rest of its body.
    """

    isLeaf = True

    def __init__(self, *fields):
        super().__init__()
        self.fields = fields
        self.held = []
        self._waiters = []

    def body(self, number):
        return b"answer %06d\n" % (number,) + BODY

    def render(self, request):
        body = self.body(len(self.held))
        for name, value in self.fields:
            request.responseHeaders.addRawHeader(name, value)
        request.setHeader(b"content-length", b"%d" % (len(body),))
        half = len(body) // 2
        request.write(body[:half])
        self.held.append((request, body[half:]))
        for count, deferred in list(self._waiters):
            if len(self.held) >= count:
                self._waiters.remove((count, deferred))
                deferred.callback(None)
        return NOT_DONE_YET

    def arrived(self, count):
        """
        :returns: a L{Deferred} firing once C{count} requests have arrived.
        """
        if len(self.held) >= count:
            return succeed(None)
        deferred = Deferred()
        self._waiters.append((count, deferred))
        return bounded(deferred)

    def release(self):
        """
        Send the rest of every held answer.
        """
        for request, rest in self.held:
            request.write(rest)
            request.finish()


class CollapsedForwardingTests(CacheTestCase):
    """
    Concurrent misses for one URL through real twistd: one origin request
    when the response may be shared, one each when it may not.
    """

    CLIENTS = 50

    async def clients(self, proxy, url):
        """
        Connect C{CLIENTS} raw clients to C{proxy}, each asking for C{url}
        once, then closing.
        """
        request = b"GET %s HTTP/1.1\r\nHost: origin\r\nConnection: close\r\n\r\n" % (url.encode("ascii"),)
        return [await connect_client(self, proxy.port, request) for _ in range(self.CLIENTS)]

    def bodies(self, clients):
        return [client.received.partition(b"\r\n\r\n")[2] for client in clients]

    async def test_one_origin_request(self):
        """
        Fifty clients asking at once for a shareable miss make one origin
        request; each gets the whole body, the others as it streams in.
        """
        origin = start_origin(self)
        page = _HeldPage(MAX_AGE_60)
        url = add_page(origin, "shared", page)
        proxy = await self.cached_proxy()
        clients = await self.clients(proxy, url)
        # Every client has had the start of its response (so every request
        # is collapsed) while the origin still holds the end of the body.
        for client in clients:
            await client.wait_for_bytes(1)
        await page.arrived(1)
        page.release()
        for client in clients:
            await bounded(client.lost)
        self.assertEqual(len(page.held), 1)
        self.assertEqual(self.bodies(clients), [page.body(0)] * self.CLIENTS)
        statuses = [re.search(rb"\r\nCache-Status: ([^\r]*)", client.received).group(1) for client in clients]
        self.assertEqual(statuses.count(b"netproxy; hit; fwd=uri-miss; collapsed"), self.CLIENTS - 1)

    async def test_private_not_shared(self):
        """
        A private response is handed to none of the clients that waited:
        each gets the origin's answer to its own request.
        """
        origin = start_origin(self)
        page = _HeldPage((b"Cache-Control", b"private, max-age=60"))
        url = add_page(origin, "private", page)
        proxy = await self.cached_proxy()
        clients = await self.clients(proxy, url)
        await page.arrived(self.CLIENTS)
        page.release()
        for client in clients:
            await bounded(client.lost)
        self.assertEqual(len(page.held), self.CLIENTS)
        self.assertEqual(sorted(self.bodies(clients)), [page.body(n) for n in range(self.CLIENTS)])


class ReadOnlyCacheTests(CacheTestCase):
    """
    A cache whose files cannot be deleted (made immutable with chattr, as
    chmod does not stop root, who runs CI): PURGE says 200 only when the
    entry is gone for good, a restart included, and 500 otherwise; the
    store's refusals are not announced as stored.
    """

    async def immutable(self, path):
        """
        Make C{path} immutable (C{chattr +i}) until the test ends, or skip
        the test where this file system or process cannot.
        """
        try:
            result = await run_command(["chattr", "+i", path])
        except OSError as error:
            raise SkipTest(f"chattr is not available: {error}")
        if result.code != 0:
            raise SkipTest(f"chattr +i {path} failed: {result.err.strip()}")
        self.addCleanup(subprocess.run, ["chattr", "-i", path], check=False)

    def index_of(self, directory):
        """
        :returns: the paths of the cache C{directory}'s index and its journal.
        """
        return [os.path.join(directory, name) for name in ("index.sqlite", "index.sqlite-wal")]

    async def test_purge_in_read_only_directory(self):
        """
        PURGE in a directory where no file can be created or deleted is 200, and the entry stays gone after a restart:
        the removal is in the index, which is written in place.
        """
        origin = start_origin(self)
        page = Page(MAX_AGE_60)
        url = add_page(origin, "read-only", page)
        directory = self.cache_dir()
        first = await self.cached_proxy(cache_dir=directory)
        await self.assert_stored(first, url)
        await self.immutable(directory)
        await self.request(first, url, method=b"PURGE", status=200)
        self.assertTrue(await first.stop(), first.output.transcript())
        second = await self.cached_proxy(cache_dir=directory)
        response, received, column = await self.request(second, url)
        self.assertEqual((column, received.body), ("MISS", BODY), second.output.transcript())
        self.assertEqual(len(page.seen), 2)

    async def test_purge_of_immutable_index(self):
        """
        PURGE when the cache's index cannot be written is 500 naming why; the entry is not served again.
        """
        origin = start_origin(self)
        page = Page(MAX_AGE_60)
        url = add_page(origin, "immutable", page)
        directory = self.cache_dir()
        proxy = await self.cached_proxy(cache_dir=directory)
        await self.assert_stored(proxy, url)
        for path in self.index_of(directory):
            await self.immutable(path)
        since = proxy.mark()
        await self.assert_error(proxy, b"PURGE %s HTTP/1.1\r\nHost: a\r\n\r\n" % (url.encode("ascii"),), 500,
                                r"could not be removed from the cache: the cache index could not be changed: \S")
        await proxy.wait_for(access_line("PURGE", url, 500), since)
        await proxy.wait_for(r"#error\] .*: 500 .*could not be removed from the cache", since)
        for _ in range(2):
            response, received, column = await self.request(proxy, url)
            self.assertEqual((column, received.body), ("MISS", BODY), proxy.output.transcript())
        self.assertEqual(len(page.seen), 3)
