"""
End-to-end tests of the HTTP cache shared by C{--workers 2}: both workers
serve from one C{--cache-dir}, so what one stores the other serves, a PURGE
through one is gone in both, concurrent misses spread over both reach the
origin once, and C{/metrics} from either shows the whole service.

Each request goes on a new connection, so the kernel hands it to either
worker; which one served it is read from the access log (C{worker=N}).
Where a test needs a request served by a given worker, it asks again on
new connections, a bounded number of times.
"""

import re

from twisted.internet import reactor
from twisted.internet.defer import Deferred, ensureDeferred, gatherResults
from twisted.internet.task import deferLater
from twisted.web.client import Agent, HTTPConnectionPool
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET

from netproxy.worker_metrics import SNAPSHOT_INTERVAL
from tests.integration.daemon import bounded
from tests.integration.http_client import HttpTestCase, cache_status, fetch, proxy_agent
from tests.integration.http_origin import BODY, MAX_AGE_60, Page, add_page, start_origin
from tests.integration.test_workers import start_workers
from tests.metrics_helpers import samples

# Requests on new connections before each worker has served one.
MAX_TRIES = 200
# Concurrent misses of one URL, and the most rounds of them.
MISSES = 20
ROUNDS = 10
# Requests sent at once, on as many connections, where a test needs a
# given worker to serve one.
AT_ONCE = 4


class _Held(Resource):
    """
    A cacheable page whose answers are held until the test lets them go,
    counting the requests that reached it.
    """

    isLeaf = True

    def __init__(self):
        super().__init__()
        self.requests = []
        self.arrived = None

    def render_GET(self, request):
        request.setHeader(b"cache-control", b"max-age=60")
        request.setHeader(b"content-length", b"%d" % (len(BODY),))
        self.requests.append(request)
        if self.arrived is not None:
            arrived, self.arrived = self.arrived, None
            arrived.callback(None)
        return NOT_DONE_YET

    def release(self):
        for request in self.requests:
            if not request.finished and not request._disconnected:
                request.write(BODY)
                request.finish()


class WorkersCacheTests(HttpTestCase):
    """The cache, through two workers."""

    timeout = 120

    async def start(self, *args):
        proxy = await start_workers(self, "http", "--listen", "tcp:0:interface=127.0.0.1", "--access-log", "-",
                                    "--allow-local", "--cache-dir", self.mktemp(), *args)
        return proxy

    def agent(self, proxy):
        """:returns: an agent that opens a new connection for each request."""
        return proxy_agent(proxy.ports["held"], HTTPConnectionPool(reactor, persistent=False))

    async def get(self, proxy, url, method=b"GET", headers=None):
        """
        :returns: C{(response, body, worker)}: the response, its body and the
            worker that served it, from its access line.
        """
        since = proxy.mark()
        response, received = await fetch(self.agent(proxy), method, url, headers=headers)
        line = await proxy.wait_for(rf'"{method.decode()} {re.escape(url)} HTTP/1\.1" .* worker=(\d+)$', since)
        return response, received, int(line.group(1))

    async def batch(self, proxy, url, method=b"GET", headers=None, agent=None, pattern=None):
        """
        Make L{AT_ONCE} requests at once, each on a new connection: one at a
        time, whichever worker the kernel wakes first may win every time.

        :returns: the C{(response, body)} answers, and the workers that
            served them (in the order of their access lines).
        """
        since = proxy.mark()
        agent = self.agent(proxy) if agent is None else agent
        answers = await gatherResults([ensureDeferred(fetch(agent, method, url, headers=headers))
                                       for _ in range(AT_ONCE)])
        line = re.compile(pattern or rf'"{method.decode()} {re.escape(url)} HTTP/1\.1" .* worker=(\d+)$')
        for _ in range(MAX_TRIES):
            workers = [int(match.group(1)) for text in proxy.output.lines[since:] for match in [line.search(text)]
                       if match]
            if len(workers) >= AT_ONCE:
                return answers, workers
            await _turn()
        self.fail(f"{len(workers)} access lines of {AT_ONCE}")

    async def get_from(self, proxy, url, worker, method=b"GET", headers=None):
        """
        :returns: the answers of the first L{batch} of which C{worker} served one.
        """
        for _ in range(MAX_TRIES // AT_ONCE):
            answers, workers = await self.batch(proxy, url, method, headers)
            if worker in workers:
                return answers
        self.fail(f"worker {worker} served none of {MAX_TRIES} requests")

    async def test_stored_by_one_hit_in_other(self):
        """A response stored through one worker is a hit through the other."""
        origin = start_origin(self)
        page = Page(MAX_AGE_60)
        url = add_page(origin, "shared", page)
        proxy = await self.start()
        response, received, first = await self.get(proxy, url)
        self.assertEqual(cache_status(response), ["fwd=uri-miss", "fwd-status=200", "stored"])
        for response, received in await self.get_from(proxy, url, 1 - first):
            self.assertEqual((cache_status(response)[0], received.body), ("hit", BODY))
        self.assertEqual(len(page.seen), 1)

    async def test_purge_in_one_gone_in_other(self):
        """After a PURGE through one worker, the other, which held the entry in memory, fetches it again."""
        origin = start_origin(self)
        page = Page(MAX_AGE_60)
        url = add_page(origin, "purged", page)
        proxy = await self.start()
        await self.get(proxy, url)
        # Both have served it from the store: each holds it in memory.
        for worker in (0, 1):
            for response, received in await self.get_from(proxy, url, worker):
                self.assertEqual(cache_status(response)[0], "hit")
        response, received, purger = await self.get(proxy, url, method=b"PURGE")
        self.assertEqual(response.code, 200)
        # Only-if-cached: the answer is what the cache holds, and stores nothing.
        for worker in (1 - purger, purger):
            for response, received in await self.get_from(proxy, url, worker,
                                                          headers={b"Cache-Control": [b"only-if-cached"]}):
                self.assertEqual(response.code, 504, "a worker still served it after the PURGE")
        self.assertEqual(len(page.seen), 1)

    async def test_concurrent_misses_reach_origin_once(self):
        """Twenty concurrent misses of one URL, spread over both workers, make one request to the origin."""
        origin = start_origin(self)
        proxy = await self.start()
        # The kernel may hand one burst of connections to one worker: each
        # round takes a new URL, until a round reached both.
        for round_ in range(ROUNDS):
            held = _Held()
            url = add_page(origin, f"held{round_}", held)
            workers = await self.misses(proxy, url, held)
            self.assertEqual(len(held.requests), 1, f"round {round_}: {len(held.requests)} requests reached the origin")
            if set(workers) == {0, 1}:
                return
        self.fail(f"in {ROUNDS} rounds, the misses never reached both workers")

    async def misses(self, proxy, url, held):
        """
        Send L{MISSES} requests for C{url} at once, the first alone until it
        reaches the origin, which holds it until the others were taken in.

        :returns: the worker that served each.
        """
        since = proxy.mark()
        agent = self.agent(proxy)
        held.arrived = Deferred()
        first = ensureDeferred(fetch(agent, b"GET", url))
        await bounded(held.arrived)
        rest = [ensureDeferred(fetch(agent, b"GET", url)) for _ in range(MISSES - 1)]
        for _ in range(MAX_TRIES):
            if _delivered(proxy.ports["held"]) >= MISSES:
                break
            await _turn()
        held.release()
        answers = await gatherResults([first, *rest])
        self.assertEqual([received.body for response, received in answers], [BODY] * MISSES)
        line = re.compile(rf'"GET {re.escape(url)} HTTP/1\.1" 200 .* worker=(\d+)$')
        for _ in range(MAX_TRIES):
            workers = [int(match.group(1)) for text in proxy.output.lines[since:]
                       for match in [line.search(text)] if match]
            if len(workers) >= MISSES:
                return workers
            await _turn()
        self.fail(f"{len(workers)} access lines of {MISSES}")

    async def test_metrics_totals(self):
        """/metrics from either worker counts the requests both served, and each worker's share."""
        origin = start_origin(self)
        url = add_page(origin, "counted", Page(MAX_AGE_60))
        proxy = await self.start()
        await self.get(proxy, url)
        served = []
        for _ in range(MAX_TRIES // AT_ONCE):
            answers, workers = await self.batch(proxy, url)
            served += workers
            if min(served.count(0), served.count(1)) >= 3:
                break
        total = 1 + len(served)
        hits = ("netproxy_cache_requests_total", (("result", "HIT"),))
        page = f"http://127.0.0.1:{proxy.ports['held']}/metrics"
        agent = Agent(reactor, pool=HTTPConnectionPool(reactor, persistent=False))
        for worker in (0, 1):
            # The other worker's counts are at most a second old: ask until
            # they are in, for a few times that long at most.
            for _ in range(MAX_TRIES):
                answers, workers = await self.batch(proxy, page, agent=agent,
                                                    pattern=r'"GET /metrics HTTP/1\.1" 200 .* worker=(\d+)$')
                pages = [samples(received.body) for response, received in answers]
                if worker in workers and all(figures[hits] >= total - 1 for figures in pages):
                    break
                await deferLater(reactor, SNAPSHOT_INTERVAL / 20, lambda: None)
            for figures in pages:
                self.assertEqual(figures[hits], total - 1)
                self.assertEqual(figures[("netproxy_cache_requests_total", (("result", "MISS"),))], 1)
                for index in (0, 1):
                    share = figures[("netproxy_worker_requests_total", (("worker", str(index)),))]
                    self.assertGreaterEqual(share, served.count(index))
                    self.assertIn(("netproxy_worker_resident_memory_bytes", (("worker", str(index)),)), figures)


def _turn():
    """:returns: a L{Deferred} firing on a later turn of the reactor."""
    return deferLater(reactor, 0.001, lambda: None)


def _delivered(port):
    """
    :returns: how many connections to the proxy on C{port} have nothing
        left unread: the proxy's side established with an empty receive
        queue, the client's with an empty send queue (sent and taken in).
    """
    proxy_side, client_side = set(), {}
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with open(table, encoding="ascii") as lines:
            for line in list(lines)[1:]:
                fields = line.split()
                local, remote, state = fields[1], fields[2], fields[3]
                transmit, receive = (int(value, 16) for value in fields[4].split(":"))
                if state != "01":
                    continue
                local_port, remote_port = int(local.rsplit(":", 1)[1], 16), int(remote.rsplit(":", 1)[1], 16)
                if local_port == port and receive == 0:
                    proxy_side.add(remote_port)
                elif remote_port == port and transmit == 0:
                    client_side[local_port] = True
    return len(proxy_side & set(client_side))
