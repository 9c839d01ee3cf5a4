"""
End-to-end test of the cache's crash safety: a real C{twistd
netproxy http} is killed with C{SIGKILL} while it stores many responses,
restarted on the same C{--cache-dir}, and must then serve only what the
origin sent, byte for byte, keeping every entry it had finished storing.

The origin (L{tests.integration.http_origin}, with L{_Versioned} added)
serves a few hundred cacheable URLs whose bodies, of sizes from 0 bytes to a
few hundred KiB, are pseudo-random bytes derived from the URL's path and the
origin's current I{version}, which each response also names in a header
field.  The version changes at every phase of the test, so a body served
under the wrong record, a body of an older version under a newer record, or
a torn body cannot go unnoticed: the body must be exactly the one its own
header names, and that version must be one the origin served for the path.

Nothing waits on the wall clock.  The origin sends half of each large body
and holds the rest back until the test, having received the response's head
through the proxy, lets it go; once enough responses are complete, the test
kills the proxy at that moment instead, so the kill always lands while a
body is being stored (and, the proxy being busy, often while others are being
put in place).  Every wait is bounded.
"""

import hashlib
import os
import re
import signal
import sqlite3
from collections import defaultdict
from contextlib import closing
from dataclasses import dataclass, field
from random import Random

from twisted.internet import reactor
from twisted.internet.defer import Deferred, gatherResults
from twisted.web.client import HTTPConnectionPool
from twisted.web.http_headers import Headers
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET

from tests.integration.daemon import WAIT_TIMEOUT, bounded
from tests.integration.http_client import Body, CacheTestCase, cache_status, proxy_agent
from tests.integration.http_origin import add_page, start_origin
from tests.integration.test_workers import start_workers, worker_pids

# The store's netproxy.http.cache.entry.CHUNK_SIZE: bodies up to it are checked
# whole and held in memory, larger ones streamed from disk and checked at
# their end.  Sizes on both sides of it are served.
CHUNK = 64 * 1024
# Bodies this large are held half sent by the origin: the kill waits for one.
LARGE = 128 * 1024
URLS = 240
# Requests in flight at once.
WORKERS = 24
# Kill-and-restart cycles on the one cache directory.
CRASHES = 3
SEED = 5
VERSION = b"x-body-version"
LOADED = r"cache \S+ loaded: (\d+) entries, (\d+) bytes"


def size_of(path):
    """
    :returns: the body size of C{path}, C{/crash/<number>-<size>}.
    """
    return int(path.rsplit("-", 1)[1])


def body_of(path, version):
    """
    :returns: the body the origin serves for C{path} at C{version}: as many
        pseudo-random bytes as the path says, the same for the same path and
        version, different for any other.
    """
    return hashlib.shake_256(f"{path} {version}".encode("ascii")).digest(size_of(path))


def crash_paths():
    """
    :returns: the paths the origin serves: sizes around L{CHUNK}, an empty
        body, then mostly small bodies with some of a few KiB and one in ten
        of 128 to 384 KiB, in a fixed pseudo-random order.
    """
    random = Random(SEED)
    sizes = [0, 1, CHUNK - 1, CHUNK, CHUNK + 1, 2 * CHUNK]
    while len(sizes) < URLS:
        kind = len(sizes) % 10
        if kind == 0:
            sizes.append(random.randrange(LARGE, 3 * LARGE))
        elif kind in (3, 7):
            sizes.append(random.randrange(2048, CHUNK))
        else:
            sizes.append(random.randrange(1, 2048))
    paths = [f"/crash/{number}-{size}" for number, size in enumerate(sizes)]
    random.shuffle(paths)
    return paths


class _Slices:
    """
    A pull producer writing the rest of a body to a request a slice at a
    time, so the proxy receives it in many pieces.
    """

    SLICE = 16 * 1024

    def __init__(self, request, rest):
        self.request = request
        self.rest = rest
        self.stopped = False

    def resumeProducing(self):
        if self.stopped:
            return
        if not self.rest:
            self.stopped = True
            self.request.unregisterProducer()
            self.request.finish()
            return
        self.request.write(self.rest[:self.SLICE])
        self.rest = self.rest[self.SLICE:]

    def stopProducing(self):
        self.stopped = True


class _Versioned(Resource):
    """
    Serves L{body_of}C{(path, version)} for every path below it, cacheable
    for an hour, naming the version in C{X-Body-Version}.

    A body of L{LARGE} bytes or more is sent half at once, then held until
    the test calls L{release}, then streamed; chunked for every other path
    number, with a C{Content-Length} for the rest.  While one is held, the
    proxy that forwarded its head is in the middle of storing it.

    :ivar version: the version served now.
    :ivar served: the versions served so far, by path.
    :ivar renders: how many requests reached it.
    """

    isLeaf = True

    def __init__(self):
        super().__init__()
        self.version = None
        self.served = defaultdict(set)
        self.renders = 0
        self._held = {}

    def render_GET(self, request):
        path = request.path.decode("ascii")
        version = self.version
        self.served[path].add(version)
        self.renders += 1
        body = body_of(path, version)
        request.setHeader(b"cache-control", b"max-age=3600")
        request.setHeader(b"content-type", b"application/octet-stream")
        request.setHeader(VERSION, version.encode("ascii"))
        if len(body) < LARGE:
            return body
        if int(path.split("/")[-1].split("-")[0]) % 2:
            request.setHeader(b"content-length", b"%d" % len(body))
        half = len(body) // 2
        request.write(body[:half])
        self._held[path] = (request, body[half:])
        # The proxy may die holding it: forget it then.
        request.notifyFinish().addErrback(lambda failure: self._held.pop(path, None))
        return NOT_DONE_YET

    def release(self, path):
        """
        Send the rest of the held body of C{path}, if one is held.
        """
        held = self._held.pop(path, None)
        if held is not None:
            request, rest = held
            request.registerProducer(_Slices(request, rest), False)


@dataclass
class Answer:
    """
    One response through the proxy.

    :ivar path: the path asked for.
    :ivar code: the status.
    :ivar hit: whether the proxy's Cache-Status says it came from the cache.
    :ivar stored: whether it says it was stored.
    :ivar version: the version its C{X-Body-Version} names.
    :ivar received: the L{Body}.
    """

    path: str
    code: int
    hit: bool
    stored: bool
    version: str
    received: Body


@dataclass
class Round:
    """
    What became of the requests of a round killed part-way.

    :ivar version: the version the origin served in the round.
    :ivar issued: the paths requested (some answers may never have come).
    :ivar completed: the complete answers, by path.
    :ivar kill_after: complete answers to wait for before the kill.
    :ivar killed: whether the proxy has been killed.
    """

    version: str
    kill_after: int
    issued: set = field(default_factory=set)
    completed: dict = field(default_factory=dict)
    killed: bool = False


def answer_of(path, response, received):
    """
    :returns: the L{Answer} for C{response}, whose body is C{received}.
    """
    status = cache_status(response) or []
    versions = response.headers.getRawHeaders(VERSION, [b""])
    return Answer(path, response.code, status[:1] == ["hit"], "stored" in status, versions[0].decode("ascii"),
                  received)


def damage_warning(url):
    """
    :returns: a regular expression for the proxy's warning that it found
        the entry for C{url} damaged (and discarded it), whether before
        sending anything (the origin is then asked instead) or at the end of
        a large body (the client's connection is then cut short).
    """
    # The URL may be logged as a bytes repr; the wording may change.
    return rf"#warn\] (?=.*\bdamaged\b).*\bb?'?{re.escape(url)}'?\b"


def files_in(directory):
    """
    :returns: the names of every file below C{directory}, relative to it.
    """
    return sorted(os.path.relpath(os.path.join(root, name), directory)
                  for root, _, names in os.walk(directory) for name in names)


class CrashTests(CacheTestCase):
    """
    What a proxy serves from a cache directory it was killed writing to.
    """

    timeout = 120
    #: The proxy's --cache-size, or None for its default (room for all).
    cache_size = None
    #: Whether a body file the kill left without its row may outlive the
    #: restart: workers sharing the directory keep those younger than a
    #: minute, which another worker may be about to name.
    young_orphans_kept = False

    async def test_sigkill_while_storing(self):
        """
        Killed with SIGKILL mid-store 3 times, twistd restarts serving only origin bytes and every entry it finished.
        """
        origin = start_origin(self)
        site = _Versioned()
        add_page(origin, "crash", site)
        paths = crash_paths()
        urls = {path: origin.url(path) for path in paths}
        directory = self.cache_dir()
        # The version each entry is known to hold (complete answers), by path.
        known = {}
        previous = None
        for cycle in range(CRASHES + 1):
            size = () if self.cache_size is None else ("--cache-size", str(self.cache_size))
            proxy = await self.cached_proxy(*size, cache_dir=directory)
            loaded = await proxy.wait_for(LOADED)
            if self.cache_size is not None:
                self.assertLessEqual(int(loaded.group(2)), self.cache_size, "the bound was exceeded across the kill")
            if previous is not None:
                self.assert_no_leftovers(directory)
                known = await self.check_all(proxy, site, urls, known, previous, f"check{cycle}")
            if cycle < CRASHES:
                previous = await self.crash(proxy, site, urls, cycle, f"crash{cycle}", directory)
        self.assertEqual(len(known), len(paths))

    def kill(self, proxy):
        """Kill the proxy with C{SIGKILL}."""
        proxy.kill()

    def agent(self, proxy):
        """
        :returns: a L{ProxyAgent} through C{proxy} keeping up to L{WORKERS}
            connections open, closed when the test ends.
        """
        pool = HTTPConnectionPool(reactor)
        pool.maxPersistentPerHost = WORKERS
        # A request cut by the kill must fail, not be sent again.
        pool.retryAutomatically = False
        self.addCleanup(pool.closeCachedConnections)
        return proxy_agent(self.port_of(proxy), pool)

    def port_of(self, proxy):
        """:returns: the port the proxy listens on."""
        return proxy.port

    async def run_workers(self, paths, fetch_one):
        """
        Call C{fetch_one(path)} for each of C{paths}, L{WORKERS} at a time,
        until the paths run out or C{fetch_one} returns L{False}.  When one
        call fails, the others in flight are waited for, no new one starts,
        and the first failure is raised.
        """
        queue = iter(paths)
        failures = []

        async def worker():
            for path in queue:
                if failures or not await fetch_one(path):
                    return

        def failed(failure):
            failures.append(failure)

        workers = [Deferred.fromCoroutine(worker()).addErrback(failed) for _ in range(WORKERS)]
        await bounded(gatherResults(workers), 2 * WAIT_TIMEOUT)
        if failures:
            failures[0].raiseException()

    def assert_origin_bytes(self, answer, site, message):
        """
        C{answer} is complete, 200, and byte-identical to the body the
        origin served for its path at the version it names.
        """
        received = answer.received
        self.assertTrue(received.complete, f"{message}: {answer.path} incomplete: {received.reason}")
        self.assertEqual(answer.code, 200, f"{message}: {answer.path}")
        self.assertIn(answer.version, site.served[answer.path],
                      f"{message}: {answer.path} names a version the origin never served")
        expected = body_of(answer.path, answer.version)
        if received.body != expected:
            self.fail(f"{message}: {answer.path} ({'HIT' if answer.hit else 'MISS'}, version {answer.version}) "
                      f"is {received.size} bytes, sha256 {received.digest.hexdigest()}; the origin's are "
                      f"{len(expected)} bytes, sha256 {hashlib.sha256(expected).hexdigest()}")

    async def crash(self, proxy, site, urls, cycle, version, directory):
        """
        Request every URL, storing the answers (forcing the origin to be
        asked again when the cache already holds them), and kill the proxy
        once enough have completed, when the head of a large body comes
        through while the origin holds its second half back.

        :returns: the L{Round}.
        """
        site.version = version
        paths = list(urls)
        Random(SEED + cycle).shuffle(paths)
        state = Round(version, kill_after=len(paths) * (cycle + 1) // (CRASHES + 2))
        # The first round fills an empty cache; later ones replace entries.
        headers = Headers({b"Cache-Control": [b"no-cache"]} if cycle else {})
        agent = self.agent(proxy)

        def kill_or_release(path):
            # The head of a held body came through: the proxy is storing it.
            if not state.killed and len(state.completed) >= state.kill_after:
                state.killed = True
                self.kill(proxy)
            else:
                site.release(path)

        async def fetch_one(path):
            if state.killed:
                return False
            state.issued.add(path)
            try:
                response = await agent.request(b"GET", urls[path].encode("ascii"), headers).addTimeout(
                    WAIT_TIMEOUT, reactor)
                if size_of(path) >= LARGE:
                    kill_or_release(path)
                received = Body()
                response.deliverBody(received)
                await bounded(received.done)
            except Exception:
                if state.killed:
                    return False
                raise
            answer = answer_of(path, response, received)
            if received.complete:
                self.assert_origin_bytes(answer, site, f"cycle {cycle}, before the kill")
                self.assertEqual((answer.hit, answer.stored, answer.version), (False, True, version), path)
                state.completed[path] = answer
            elif not state.killed:
                self.fail(f"{path} cut short before the kill: {received.reason}\n{proxy.output.transcript()}")
            return not state.killed

        await self.run_workers(paths, fetch_one)
        self.assertTrue(state.killed, f"cycle {cycle}: no large body was in flight after {state.kill_after} "
                                      f"answers, so the proxy was never killed")
        self.assertEqual(await proxy.wait_exit(), "killed by signal 9", proxy.output.transcript())
        # The held body was being stored when the kill came: in memory while
        # the proxy had read up to 64 KiB of it, in a temporary file past
        # that (left behind for the next start to delete), whichever the
        # origin's first half had reached; neither may show after a restart.
        return state

    def assert_no_leftovers(self, directory):
        """
        Once loaded, the cache directory holds no temporary file, every body
        file is named by a row of the index and every row's file exists.
        """
        names = files_in(directory)
        self.assertEqual([name for name in names if name.endswith(".tmp")], [],
                         "temporary files outlived the restart")
        with closing(sqlite3.connect(os.path.join(directory, "index.sqlite"))) as index:
            named = {file for (file,) in index.execute("SELECT file FROM entries WHERE file IS NOT NULL")}
        bodies = {name for name in names if name.startswith("bodies" + os.sep)}
        self.assertLessEqual(named, bodies, "a row without its file outlived the restart")
        if not self.young_orphans_kept:
            self.assertEqual(bodies, named, "a body file without its row outlived the restart")

    async def check_all(self, proxy, site, urls, known, state, version):
        """
        Request every URL from the restarted proxy: each answer is the
        origin's bytes; entries whose storing completed before the kill, or
        that the killed round never touched, are hits with the version they
        held; the others are hits with the old or the new version, or
        misses answered with the origin's current version, an entry known to
        have been stored being lost only when the proxy says it found it
        damaged (its new body under its old record).

        :returns: the version each entry holds afterwards, by path.
        """
        site.version = version
        renders = site.renders
        agent = self.agent(proxy)
        answers = {}
        # Where the proxy's output stood when each path was requested.
        marks = {}
        # Paths whose large body the proxy found damaged while sending it.
        cut = set()

        async def fetch_one(path):
            marks[path] = proxy.mark()
            response = await agent.request(b"GET", urls[path].encode("ascii")).addTimeout(WAIT_TIMEOUT, reactor)
            site.release(path)
            received = Body()
            response.deliverBody(received)
            await bounded(received.done)
            if not received.complete and path not in cut:
                # A large body is checked at its end: a damaged one is cut
                # short, its last chunk held back, and the entry discarded.
                await proxy.wait_for(damage_warning(urls[path]), marks[path])
                cut.add(path)
                return await fetch_one(path)
            answers[path] = answer_of(path, response, received)
            return True

        await self.run_workers(list(urls), fetch_one)
        context = f"after {state.version} was killed"
        for path, answer in sorted(answers.items()):
            self.assert_origin_bytes(answer, site, context)
            if path in cut:
                expected = {(False, version)}
            elif path in state.completed:
                # Stored before its last byte left the proxy.
                expected = {(True, state.version)}
                if self.cache_size is not None:
                    expected.add((False, version))
            elif path in state.issued:
                expected = {(True, state.version), (False, version)}
                if path in known:
                    expected.add((True, known[path]))
            elif path in known:
                expected = {(True, known[path])}
                if self.cache_size is not None:
                    expected.add((False, version))
            else:
                expected = {(False, version)}
            self.assertIn((answer.hit, answer.version), expected, f"{context}: {path}\n{proxy.output.transcript()}")
            if not answer.hit:
                self.assertTrue(answer.stored, f"{context}: {path} not stored")
                if path in known and path not in cut and self.cache_size is None:
                    await proxy.wait_for(damage_warning(urls[path]), marks[path])
        hits = sum(answer.hit for answer in answers.values())
        self.assertGreater(hits, 0, f"{context}: no entry survived")
        if self.cache_size is not None:
            evicted = [path for path, answer in answers.items() if not answer.hit and path in state.completed]
            self.assertTrue(evicted, f"{context}: nothing was evicted: the bound is too loose for this test")
        # Every miss, and nothing else, reached the origin.
        self.assertEqual(site.renders - renders, len(answers) - hits, context)
        return {path: answer.version for path, answer in answers.items()}


class EvictingCrashTests(CrashTests):
    """
    The same kills, with a --cache-size of about a quarter of what the
    origin serves, so that entries are evicted while others are stored and
    when the proxy is killed: an evicted entry is a miss, never wrong
    bytes, and the bound holds across every restart.
    """

    cache_size = sum(size_of(path) for path in crash_paths()) // 4


class WorkersCrashTests(CrashTests):
    """
    The same kills through C{--workers 2} sharing the cache directory: each
    worker and the main process get C{SIGKILL} at once, a worker being in
    the middle of storing a body, and a new main process and its workers
    start on the directory.
    """

    young_orphans_kept = True

    async def cached_proxy(self, *args, cache_dir=None):
        return await start_workers(self, "http", "--listen", "tcp:0:interface=127.0.0.1", "--access-log", "-",
                                   "--allow-local", "--cache-dir", cache_dir or self.cache_dir(), *args)

    def port_of(self, proxy):
        return proxy.ports["held"]

    def kill(self, proxy):
        for pid in worker_pids(proxy).values():
            os.kill(pid, signal.SIGKILL)
        proxy.kill()
