"""
End-to-end tests of range requests through a real C{twistd netproxy http}
with a cache: parts of a stored response cut from the cache (curl's
C{-r}, as download managers and video players send them), and range misses
fetched whole or forwarded as C{--range-offset-limit} says.
"""

import shutil

from twisted.python.filepath import FilePath
from twisted.trial.unittest import SkipTest

from tests.integration.daemon import LOCALHOST, WAIT_TIMEOUT, fresh_directory, run_command
from tests.integration.http_client import CacheTestCase, cache_status
from tests.integration.http_origin import MAX_AGE_60, Page, add_page, body_of, start_origin

MIB = 1024 * 1024


class CurlTestCase(CacheTestCase):
    """
    Cache tests that fetch with curl.
    """

    async def curl(self, proxy, url, *args):
        """
        Run curl through C{proxy} for C{url} with C{args}.

        :returns: C{(status code, body received)}.
        """
        curl = shutil.which("curl")
        if curl is None:
            raise SkipTest("curl is not installed")
        output = FilePath(fresh_directory(self)).child("body")
        result = await run_command([curl, "--silent", "--show-error", "--noproxy", "", "--proxy",
                                    f"http://{LOCALHOST}:{proxy.port}", "--max-time", str(WAIT_TIMEOUT),
                                    "--output", output.path, "--write-out", "%{http_code}", *args, url])
        self.assertEqual(result.code, 0, result)
        return result.out, output.getContent()


class RangeHitTests(CurlTestCase):
    """
    A range of a stored complete response is a 206 from the cache.
    """

    async def test_curl_range_of_stored_mib(self):
        """curl -r 0-99 of a stored 1 MiB entry gets a 206 of exactly its first 100 bytes; the origin is not asked."""
        body = body_of(MIB)
        origin = start_origin(self)
        page = Page(MAX_AGE_60, body=body)
        url = add_page(origin, "mib", page)
        proxy = await self.cached_proxy()
        await self.assert_stored(proxy, url, body=body)
        connections = origin.connections
        since = proxy.mark()
        self.assertEqual(await self.curl(proxy, url, "-r", "0-99"), ("206", body[:100]))
        self.assertEqual(await self.curl(proxy, url, "-r", "-500"), ("206", body[-500:]))
        self.assertEqual(await self.curl(proxy, url, "-r", f"{MIB - 1000}-"), ("206", body[-1000:]))
        self.assertEqual(await self.curl(proxy, url, "-r", f"{MIB}-"), ("416", b""))
        await proxy.wait_for(r'"GET \S+/mib HTTP/1\.1" 416 0 .* HIT ', since)
        self.assertEqual((len(page.seen), origin.connections), (1, connections))

    async def test_treq_range_fields(self):
        """The 206 carries Content-Range, Content-Length and a hit Cache-Status."""
        body = body_of(5000)
        origin = start_origin(self)
        url = add_page(origin, "fields", Page(MAX_AGE_60, body=body))
        proxy = await self.cached_proxy()
        await self.assert_stored(proxy, url, body=body)
        response, received, column = await self.request(proxy, url, headers={b"Range": [b"bytes=10-19"]}, status=206)
        self.assertEqual((response.code, received.body, column), (206, body[10:20], "HIT"))
        self.assertEqual(response.headers.getRawHeaders(b"content-range"), [b"bytes 10-19/5000"])
        self.assertEqual(cache_status(response)[0], "hit")


class RangeMissTests(CurlTestCase):
    """
    A range request that misses is fetched whole and stored, or forwarded, as --range-offset-limit says.
    """

    async def test_fetched_whole_then_hit(self):
        """curl -r 0-99 of an unstored 1 MiB response gets its 206; the origin saw no Range; the next range is a hit."""
        body = body_of(MIB)
        origin = start_origin(self)
        page = Page(MAX_AGE_60, body=body)
        url = add_page(origin, "whole", page)
        proxy = await self.cached_proxy()
        self.assertEqual(await self.curl(proxy, url, "-r", "0-99"), ("206", body[:100]))
        self.assertEqual(await self.curl(proxy, url, "-r", "1000-1999"), ("206", body[1000:2000]))
        self.assertEqual(len(page.seen), 1)
        self.assertEqual(page.seen[0].header("range"), [])

    async def test_forwarded_beyond_limit(self):
        """A range starting past --range-offset-limit goes to the origin with its Range, every time."""
        body = body_of(5000)
        origin = start_origin(self)
        page = Page(body=body)
        url = add_page(origin, "forwarded", page)
        proxy = await self.cached_proxy("--range-offset-limit", "1K")
        for _ in range(2):
            response, received, column = await self.request(proxy, url, headers={b"Range": [b"bytes=2000-2099"]})
            self.assertEqual((response.code, column), (200, "MISS"))
        self.assertEqual([seen.header("range") for seen in page.seen], [["bytes=2000-2099"]] * 2)
