"""
End-to-end tests of the HTTP proxy's PAC file and rate limits, through a
real C{twistd netproxy http}: a browser-style fetch of C{/proxy.pac}
(generated, and from C{--pac-file} reloaded on SIGHUP), a download and a
CONNECT tunnel slowed to C{--rate-limit}, 429 past C{--max-requests-rate}
while another address is still served, and the counters of C{/metrics}.
"""

import json
import re
import shutil
import signal
import subprocess
import time

from twisted.python.filepath import FilePath

from tests.integration.daemon import LOCALHOST, WAIT_TIMEOUT, fresh_directory, raw_exchange, start_server
from tests.integration.http_client import HttpTestCase, fetch, parse_replies, proxy_agent
from tests.integration.http_origin import body_of
from tests.metrics_helpers import samples

PAC_TYPE = "application/x-ns-proxy-autoconfig"
# 512 KiB at 256 KiB a second, with a 64 KiB burst, and up to 64 KiB read
# at once that may overdraw the bucket last: at least 1.5 seconds.
SIZE, RATE = 512 * 1024, "256K"
LEAST_SECONDS = (SIZE - 2 * 64 * 1024) / (256 * 1024) - 0.1


def page_request(path, host=b"127.0.0.1", method=b"GET"):
    """
    :returns: a request for one of the proxy's own pages, as a browser
        sends it to fetch a PAC file, closing the connection after.
    """
    return (b"%s %s HTTP/1.1\r\nHost: %s\r\nUser-Agent: Mozilla/5.0\r\nAccept: */*\r\nConnection: close\r\n\r\n"
            % (method, path, host))


class LimitsTestCase(HttpTestCase):
    """
    Helpers: pages of the proxy, read over raw sockets.
    """

    async def page(self, proxy, path, source=None, **kwargs):
        """
        :returns: the L{tests.integration.http_client.Reply} to a request
            for C{path} from C{source}.
        """
        reply = await raw_exchange(proxy.port, page_request(path, **kwargs), until_closed=True, source=source)
        [page] = parse_replies(reply.data)
        return page

    async def scrape(self, proxy, source):
        """
        :returns: the samples of C{proxy}'s /metrics, asked for from C{source}.
        """
        page = await self.page(proxy, b"/metrics", source=source)
        self.assertEqual(page.status, 200, proxy.output.transcript())
        return samples(page.body)


class PacTests(LimitsTestCase):
    """
    C{/proxy.pac} and C{/wpad.dat}.
    """

    async def test_generated(self):
        """
        Without --pac-file, a client outside --admin gets a generated PAC file naming the proxy's address from the
        Host it asked, which sends URLs to the proxy, and the browser's own host and the --direct rules DIRECT.
        """
        proxy, _ = await self.proxy_and_origin("--admin", "127.0.0.1/32", "--direct", "*.internal.example")
        authority = f"127.0.0.1:{proxy.port}".encode("ascii")
        for path in (b"/proxy.pac", b"/wpad.dat"):
            page = await self.page(proxy, path, source="127.0.0.2", host=authority)
            self.assertEqual((page.status, page.header("content-type")), (200, [PAC_TYPE]))
            self.assertIn(b'"PROXY 127.0.0.1:%d"' % (proxy.port,), page.body)
        head = await raw_exchange(proxy.port, page_request(b"/proxy.pac", method=b"HEAD"), until_closed=True)
        self.assertTrue(head.data.startswith(b"HTTP/1.1 200 OK\r\n"), head.data)
        self.assertTrue(head.data.endswith(b"\r\n\r\n"), head.data)
        node = shutil.which("node")
        if node is not None:
            script = page.body.decode("ascii") + (
                "\nconsole.log(JSON.stringify([FindProxyForURL('http://example.com/', 'example.com'),"
                " FindProxyForURL('http://localhost:8000/', 'localhost'),"
                " FindProxyForURL('https://git.internal.example/', 'git.internal.example')]));\n")
            result = subprocess.run([node, "-e", script], capture_output=True, text=True, timeout=WAIT_TIMEOUT)
            self.assertEqual(json.loads(result.stdout), [f"PROXY 127.0.0.1:{proxy.port}", "DIRECT", "DIRECT"])
        post = await raw_exchange(proxy.port, page_request(b"/proxy.pac", method=b"POST"), until_closed=True)
        self.assertTrue(post.data.startswith(b"HTTP/1.1 405 "), post.data)

    async def test_file_reloaded(self):
        """--pac-file is served as it is; SIGHUP puts a new file in force, and keeps it when the next is bad."""
        path = FilePath(fresh_directory(self)).child("proxy.pac")
        first = b"function FindProxyForURL(url, host) { return \"PROXY 192.0.2.1:3128\"; }\n"
        path.setContent(first)
        proxy, _ = await self.proxy_and_origin("--pac-file", path.path)
        self.assertEqual((await self.page(proxy, b"/proxy.pac")).body, first)
        second = first.replace(b"192.0.2.1", b"192.0.2.2")
        path.setContent(second)
        since = proxy.mark()
        proxy.send_signal(signal.SIGHUP)
        await proxy.wait_for(r"reloaded the PAC file", since)
        self.assertEqual((await self.page(proxy, b"/wpad.dat")).body, second)
        path.setContent(b"<html>oops</html>")
        since = proxy.mark()
        proxy.send_signal(signal.SIGHUP)
        await proxy.wait_for(r"refused to reload the PAC file: .* defines no FindProxyForURL", since)
        self.assertEqual((await self.page(proxy, b"/proxy.pac")).body, second)


class RateLimitTests(LimitsTestCase):
    """
    C{--rate-limit} and C{--max-requests-rate}.
    """

    async def test_download_slowed(self):
        """A download through the proxy keeps to --rate-limit, whole and intact, and /metrics counts the throttling."""
        proxy, origin = await self.proxy_and_origin("--no-cache", "--rate-limit", RATE)
        url = origin.url(f"/fixed?size={SIZE}")
        started = time.monotonic()
        response, received = await fetch(proxy_agent(proxy.port), b"GET", url)
        took = time.monotonic() - started
        self.assertEqual((response.code, received.complete), (200, True))
        self.assertEqual(received.body, body_of(SIZE))
        self.assertGreaterEqual(took, LEAST_SECONDS)
        scraped = await self.scrape(proxy, "127.0.0.2")
        self.assertGreaterEqual(scraped[("netproxy_http_throttled_bytes_total", ())], SIZE - 2 * 64 * 1024)
        self.assertGreaterEqual(scraped[("netproxy_http_throttled_seconds_total", ())], LEAST_SECONDS)

    async def test_tunnel_slowed(self):
        """Bytes through a CONNECT tunnel keep to --rate-limit too."""
        data = b"t" * SIZE
        server = start_server(self, reply=lambda received: data if received == b"go" else b"")
        proxy, _ = await self.proxy_and_origin("--rate-limit", RATE, "--connect-port", str(server.port))
        connect = b"CONNECT %s:%d HTTP/1.1\r\nHost: %s:%d\r\n\r\n" % (
            LOCALHOST.encode(), server.port, LOCALHOST.encode(), server.port)
        started = time.monotonic()
        established = b"HTTP/1.1 200 Connection established\r\n\r\n"
        reply = await raw_exchange(proxy.port, connect + b"go", expect=len(established) + SIZE, limit=2 * SIZE)
        took = time.monotonic() - started
        self.assertTrue(reply.data.startswith(established), reply.data[:200])
        self.assertEqual(reply.data.partition(b"\r\n\r\n")[2], data)
        self.assertGreaterEqual(took, LEAST_SECONDS)

    async def test_too_many_requests(self):
        """
        Past --max-requests-rate a client gets 429 with Retry-After and a page naming the cause, logged; another
        address is still served; /metrics counts the refusal.
        """
        # One request, then one every 20 seconds.
        proxy, origin = await self.proxy_and_origin("--no-cache", "--max-requests-rate", "0.05")
        url = origin.url("/fixed?size=100").encode("ascii")
        request = b"GET %s HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n" % (url, url.split(b"/")[2])
        first = await raw_exchange(proxy.port, request, until_closed=True)
        self.assertEqual(parse_replies(first.data)[0].status, 200)
        reply = await self.assert_error(proxy, request, 429, r"too many requests from 127\.0\.0\.1: at most 0\.05 a "
                                                             r"second \(--max-requests-rate\)")
        [retry] = reply.header("retry-after")
        self.assertTrue(1 <= int(retry) <= 20, retry)
        await proxy.wait_for(r"client 127\.0\.0\.1 is over --max-requests-rate 0\.05/s: refusing its requests")
        await proxy.wait_for(r'^127\.0\.0\.1 - .* "GET ' + re.escape(url.decode()) + r' HTTP/1\.1" 429 ')
        other = await raw_exchange(proxy.port, request, until_closed=True, source="127.0.0.2")
        self.assertEqual(parse_replies(other.data)[0].status, 200)
        scraped = await self.scrape(proxy, "127.0.0.3")
        self.assertEqual(scraped[("netproxy_http_rate_limited_requests_total", ())], 1)
        self.assertEqual(scraped[("netproxy_http_requests_total", (("method", "GET"), ("status", "429")))], 1)
