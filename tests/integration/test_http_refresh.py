"""
End-to-end tests of C{--refresh-pattern}: a real C{twistd netproxy http}
with a cache, in front of a test origin page that sends what many package
mirrors send: no C{Last-Modified}, no C{ETag}, no C{Cache-Control}
(L{tests.integration.http_origin.Page} with no fields).  The rules are the
ones shipped for package caches (C{contrib/refresh-patterns/packages.conf},
which the documentation includes), given as a file and one by one.
"""

import signal
import shutil
from pathlib import Path

from twisted.python.filepath import FilePath
from twisted.trial.unittest import SkipTest

from tests.integration.daemon import LOCALHOST, WAIT_TIMEOUT, fresh_directory, run_command
from tests.integration.http_client import CacheTestCase, cache_status
from tests.integration.http_origin import BODY, Page, add_page, start_origin

ROOT = Path(__file__).resolve().parent.parent.parent

# The rules shipped for package caches, which docs/cache.rst includes: what
# is shipped and documented is what is tested.
SHIPPED_FILE = ROOT / "contrib" / "refresh-patterns" / "packages.conf"
SHIPPED_RULES = [line for line in SHIPPED_FILE.read_text().splitlines() if line and not line.startswith("#")]
SHIPPED = ["--refresh-patterns", str(SHIPPED_FILE)]
ONE_BY_ONE = [word for rule in SHIPPED_RULES for word in ("--refresh-pattern", rule)]


class RefreshPatternTests(CacheTestCase):
    """
    Operator rules make responses without validators or freshness cacheable, and never override the origin's word.
    """

    def test_shipped_rules(self):
        """The shipped file has four rules (pool files, by-hash files, wheels, index files), and the docs include it."""
        self.assertEqual(len(SHIPPED_RULES), 4, SHIPPED_RULES)
        self.assertIn(".. literalinclude:: ../contrib/refresh-patterns/packages.conf",
                      (ROOT / "docs" / "cache.rst").read_text())

    async def fetch_twice(self, proxy, url):
        """
        :returns: the cache columns of the access lines of two GETs of C{url}, each answered 200 with L{BODY}.
        """
        columns = []
        for _ in range(2):
            response, received, column = await self.request(proxy, url)
            self.assertEqual((response.code, received.body), (200, BODY), proxy.output.transcript())
            columns.append((column, cache_status(response)[0]))
        return columns

    async def test_pool_file_hit(self):
        """A .deb without validators is stored under the pool rule: the second fetch is a hit, the origin asked once."""
        origin = start_origin(self)
        page = Page()
        url = add_page(origin, "debian", page) + "/pool/main/h/hello/hello_2.10-3_amd64.deb"
        proxy = await self.cached_proxy(*SHIPPED)
        self.assertEqual(await self.fetch_twice(proxy, url), [("MISS", "fwd=uri-miss"), ("HIT", "hit")])
        self.assertEqual(len(page.seen), 1)

    async def test_wheel_hit(self):
        """A wheel without validators is stored under the wheel rule."""
        origin = start_origin(self)
        page = Page()
        url = add_page(origin, "simple", page) + "/packages/attrs-23.2.0-py3-none-any.whl"
        proxy = await self.cached_proxy(*SHIPPED)
        self.assertEqual(await self.fetch_twice(proxy, url), [("MISS", "fwd=uri-miss"), ("HIT", "hit")])
        self.assertEqual(len(page.seen), 1)

    async def test_by_hash_hit(self):
        """An index file fetched by its hash (apt's by-hash) is immutable: stored under the by-hash rule alone."""
        origin = start_origin(self)
        page = Page()
        url = add_page(origin, "debian", page) + "/dists/stable/main/binary-amd64/by-hash/SHA256/0123abcd"
        proxy = await self.cached_proxy(*ONE_BY_ONE)
        self.assertEqual(await self.fetch_twice(proxy, url), [("MISS", "fwd=uri-miss"), ("HIT", "hit")])
        self.assertEqual(len(page.seen), 1)

    async def test_without_rule(self):
        """Without a rule (or for an index file, whose rule has MIN 0) nothing is stored: both fetches reach the origin."""
        origin = start_origin(self)
        page = Page()
        base = add_page(origin, "debian", page)
        plain = await self.cached_proxy()
        self.assertEqual([column for column, _ in await self.fetch_twice(plain, base + "/pool/main/a.deb")],
                         ["MISS", "MISS"])
        ruled = await self.cached_proxy(*SHIPPED)
        self.assertEqual([column for column, _ in await self.fetch_twice(ruled, base + "/dists/stable/InRelease")],
                         ["MISS", "MISS"])
        self.assertEqual(len(page.seen), 4)

    async def test_explicit_wins(self):
        """Cache-Control no-store or max-age=0 from the origin is obeyed, whatever the rule says."""
        origin = start_origin(self)
        proxy = await self.cached_proxy(*SHIPPED)
        for value in (b"no-store", b"max-age=0", b"private", b"no-cache"):
            page = Page((b"Cache-Control", value))
            url = add_page(origin, value.decode("ascii").replace("=", ""), page) + "/pool/main/a.deb"
            columns = await self.fetch_twice(proxy, url)
            self.assertEqual([column for column, _ in columns], ["MISS", "MISS"], value)
            self.assertEqual(len(page.seen), 2, value)

    async def test_curl_fetches_deb_twice(self):
        """curl through the proxy, as apt would, gets a .deb twice; the origin sends it once."""
        curl = shutil.which("curl")
        if curl is None:
            raise SkipTest("curl is not installed")
        origin = start_origin(self)
        page = Page(body=b"!<arch>\ndebian-binary\x00\xff" * 4000)
        url = add_page(origin, "mirror", page) + "/debian/pool/main/c/curl/curl_7.88.1-10_amd64.deb"
        proxy = await self.cached_proxy(*SHIPPED)
        directory = FilePath(fresh_directory(self))
        for number in range(2):
            output = directory.child(f"{number}.deb")
            result = await run_command([curl, "--silent", "--show-error", "--noproxy", "", "--proxy",
                                        f"http://{LOCALHOST}:{proxy.port}", "--max-time", str(WAIT_TIMEOUT),
                                        "--output", output.path, "--write-out", "%{http_code}", url])
            self.assertEqual((result.code, result.out), (0, "200"), result)
            self.assertEqual(output.getContent(), page.body)
        self.assertEqual(len(page.seen), 1)

    async def test_reload_on_hangup(self):
        """SIGHUP puts a rewritten --refresh-patterns file in force; a broken one is logged and the rules kept."""
        origin = start_origin(self)
        page = Page()
        base = add_page(origin, "debian", page)
        rules = FilePath(fresh_directory(self)).child("rules.conf")
        rules.setContent(b"# nothing yet\n")
        proxy = await self.cached_proxy("--refresh-patterns", rules.path)
        columns = await self.fetch_twice(proxy, base + "/pool/a.deb")
        self.assertEqual([column for column, _ in columns], ["MISS", "MISS"])
        rules.setContent(SHIPPED_FILE.read_bytes())
        since = proxy.mark()
        proxy.send_signal(signal.SIGHUP)
        await proxy.wait_for(r"reloaded 4 refresh patterns from ", since)
        columns = await self.fetch_twice(proxy, base + "/pool/b.deb")
        self.assertEqual([column for column, _ in columns], ["MISS", "HIT"])
        rules.setContent(b"/pool/ 1 20% never\n")
        since = proxy.mark()
        proxy.send_signal(signal.SIGHUP)
        await proxy.wait_for(r"refused to reload the refresh patterns: .*rules\.conf line 1: MAX must be a whole "
                             r"number of minutes, got 'never'; keeping the 4 rules in force", since)
        columns = await self.fetch_twice(proxy, base + "/pool/c.deb")
        self.assertEqual([column for column, _ in columns], ["MISS", "HIT"])
        self.assertEqual(len(page.seen), 4)
