"""
Soak: a mixed load, good and hostile, through one real C{twistd netproxy
http} for a given time, watching its memory and open file descriptors.

Set-up, all on 127.0.0.1 (other loopback addresses as client sources):

  - nginx (Debian nginx-light) as the origin: files of 1 KiB, 64 KiB, 1 MiB
    and 8 MiB, cacheable for an hour at C{/NAME} and C{no-store} at
    C{/nocache/NAME}, and small cacheable pages C{/n/0} ... C{/n/199};
  - a TCP echo server, the target of CONNECT tunnels (in this process);
  - C{twistd netproxy http} with a fresh C{--cache-dir}, an C{--auth-file}
    (alice with a bcrypt hash at cost 10, carol with a SHA-crypt one),
    C{--connect-port} of the echo server, C{--admin 127.0.0.1/32} (for
    PURGE), C{--allow 127.0.0.0/8}, C{--timeout 10} and C{--allow-local}
    when its C{--help} lists it (local destinations are refused without).

The load comes from this process (asyncio), never the proxy's:

  - good clients (C{--good}, from 127.0.0.1), alice and carol in turn, on
    keep-alive connections renewed every 200 requests, in a fixed cycle:
    cache hits (1k, 64k, 1m), misses (no-store pages), GETs of the
    C{/n/} pages, PURGEs of them (so that they are misses again), and a
    CONNECT tunnel on a connection of its own that echoes 3 x 4 KiB. Every
    answer is checked: status (200; 200 or 404 for PURGE), body length and
    SHA-256 against what nginx serves directly, echoed bytes. Anything
    else, a connection error or an exchange over 30 s is a failure;
  - slowloris clients (C{--slowloris}, from 127.0.0.2): a request head
    trickled one byte a second, never finished, reconnecting each time
    the proxy cuts it;
  - wrong passwords (C{--wrong-passwords} clients, from 127.0.0.3): a known
    user with a wrong password or an unknown user, four attempts a second
    each; anything but a 407 is counted, a 2xx is a failure;
  - aborted downloads (C{--aborters}, from 127.0.0.4): the 8 MiB file,
    cacheable and not, closed (half the time with a reset) after between
    16 KiB and 4 MiB of its body.

The hostile clients use addresses of their own so that limits per client
address (connections, failed logins) fall on them and not on the good
clients.

Method. Start-up: the proxy's descriptors are counted; a warm-up runs each
kind of request once (any failure there stops the run: a proxy refusing
local destinations, say); then, with no connection open, the proxy is given
up to 40 s for its pooled upstream connections to expire (idle 30 s) and the
count to return to the start-up figure. That count is the B{baseline}.
The load then runs for C{--minutes}, and the proxy's RSS (VmRSS) and open
descriptors (C{/proc/PID/fd}) are sampled at the start and every
C{--sample-seconds}. At the end the load stops, every client connection is
closed, and the proxy has up to 90 s for its descriptors to fall back to
the baseline; a last sample is taken then. It B{passes} when:

  - RSS: no sample from the first one at or after C{--warmup-seconds}
    (default: one minute) onwards, the last one included, is more than 10%
    above that first one;
  - descriptors: the last sample is at or below the baseline;
  - the good clients had no failed request (and at least one succeeded);
  - no wrong password was let through, and twistd was running throughout.

It prints one row per sample as it goes (cumulative counts), the verdict
with its reasons, and exits with status 0 on PASS, 1 on FAIL. The proxy
runs on CPU 0, nginx and this process on CPU 1 (taskset, when there are two
CPUs). twistd's log is scanned at the end for tracebacks and critical
lines, reported (not judged).

    python bench/soak.py [--minutes 10] [--sample-seconds 60] [--warmup-seconds 60] [--good 8] [--slowloris 20]
                         [--wrong-passwords 2] [--aborters 2] [--log FILE] [--install]

Everything it starts is stopped at the end, on failure and on Ctrl-C or
SIGTERM too; all traffic stays on 127.0.0.0/8; every loop is bounded in
count and time.
"""

import argparse
import asyncio
import base64
import hashlib
import os
import signal
import socket
import struct
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import bcrypt

from http_cache import cache_status, read_response
from support import (
    HOST,
    SIZES,
    THIS,
    describe_netproxies,
    free_port,
    install,
    open_fds,
    pin_this_process,
    rss_mib,
    spawn,
    start_nginx,
    stop,
    stop_nginx,
    wait_listening,
    write_files,
)

PACKAGES = [("nginx-light", "nginx")]
#: The large file, downloaded and dropped mid-body.
BIG = 8 * 1024 * 1024
#: How many C{/n/N} pages the good clients GET and PURGE in turn.
ROTATING = 200
GOOD_ADDRESS = "127.0.0.1"
SLOWLORIS_ADDRESS = "127.0.0.2"
WRONG_PASSWORD_ADDRESS = "127.0.0.3"
ABORT_ADDRESS = "127.0.0.4"
#: The good clients' users (user, password); the auth file is written from them.
ALICE = ("alice", "alice's soak secret")
# From Drepper's specification: "Hello world!" with salt "saltstring", 5,000 rounds.
CAROL = ("carol", "Hello world!")
CAROL_HASH = ("$6$saltstring$svn8UoSVapNtMuq1ukKS4tPQd8iKwSMHWjl/O817G3uBnIFNjnQJuesI68u4OTLiBFdcbYEdFCoEOf"
              "aS35inz1")
WRONG_CREDENTIALS = [("alice", "not alice's"), ("carol", "Hello world?"), ("mallory", "guess")]
#: The good clients' cycle of requests, and the paths of its hits and misses.
PLAN = ["hit", "hit", "miss", "hit", "rotating", "hit", "miss", "purge", "hit", "tunnel"]
HIT_PATHS = ["/1k", "/64k", "/1k", "/1m", "/1k"]
MISS_PATHS = ["/nocache/1k", "/nocache/64k"]
REQUESTS_PER_CONNECTION = 200
TUNNEL_BLOCK = 4096
TUNNEL_ROUNDS = 3
#: The proxy's --timeout: a request head must be complete within it.
PROXY_TIMEOUT = 10
#: Seconds any one exchange may take.
EXCHANGE_SECONDS = 30
TRICKLE_SECONDS = 1.0
#: Bytes trickled before a slowloris client counts its connection as never cut.
MAX_TRICKLES = int((PROXY_TIMEOUT + 30) / TRICKLE_SECONDS)
WRONG_PASSWORD_PAUSE = 0.25
ABORT_AFTER = (16 * 1024, BIG // 2)
#: netproxy keeps an idle upstream connection this long.
POOL_IDLE_SECONDS = 30
BASELINE_SECONDS = POOL_IDLE_SECONDS + 10
SETTLE_SECONDS = POOL_IDLE_SECONDS + 60
RSS_GROWTH = 0.10
#: A bound for every loop that otherwise runs until told to stop.
MAX_STEPS = 10**9
#: Errors an exchange can end in, other than the answer being wrong.
EXCHANGE_ERRORS = (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, TimeoutError, ValueError,
                   IndexError)


def basic(user, password):
    """
    :returns: a C{Proxy-Authorization} header line.
    """
    token = base64.b64encode(f"{user}:{password}".encode()).decode("ascii")
    return f"Proxy-Authorization: Basic {token}\r\n"


@dataclass
class Context:
    """
    What every client needs to know.

    :ivar port: the proxy's.
    :ivar origin: nginx's C{host:port}.
    :ivar echo_port: the CONNECT target's.
    :ivar expected: C{{path: (length, SHA-256)}} of every path asked for, as
        nginx serves it.
    :ivar stopping: set when the load is to stop.
    """
    port: int
    origin: str
    echo_port: int
    expected: dict = field(default_factory=dict)
    stopping: asyncio.Event | None = None

    def request(self, method, path, authorization=""):
        return (f"{method} http://{self.origin}{path} HTTP/1.1\r\nHost: {self.origin}\r\n{authorization}\r\n"
                .encode())

    async def connect(self, source):
        return await asyncio.wait_for(asyncio.open_connection(HOST, self.port, local_addr=(source, 0)),
                                      EXCHANGE_SECONDS)

    async def pause(self, seconds):
        """
        Wait C{seconds}, or less when the load stops meanwhile.
        """
        try:
            await asyncio.wait_for(self.stopping.wait(), seconds)
        except TimeoutError:
            pass


@dataclass
class Tally:
    """
    Counts of everything the clients did, and the good clients' failures.
    """
    counts: Counter = field(default_factory=Counter)
    failures: list = field(default_factory=list)
    crashes: list = field(default_factory=list)
    slowest_cut: float = 0.0

    def fail(self, what):
        self.counts["good failed"] += 1
        if len(self.failures) < 20:
            self.failures.append(what)


def close(writer, reset=False):
    """
    Close a client connection at once, with a reset when C{reset}.
    """
    if writer is None:
        return
    sock = writer.get_extra_info("socket")
    if reset and sock is not None and not writer.transport.is_closing():
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        except OSError:
            pass
    writer.transport.abort()


class GoodClient:
    """
    A good client: one keep-alive connection to the proxy at a time, a
    user, and the cycle of L{PLAN}, every answer checked.
    """

    def __init__(self, context, number, tally):
        self.context = context
        self.number = number
        self.tally = tally
        self.authorization = basic(*(ALICE, CAROL)[number % 2])
        self.reader = self.writer = None
        self.served = 0

    def close(self):
        close(self.writer)
        self.reader = self.writer = None

    async def run(self):
        try:
            for step in range(MAX_STEPS):
                if self.context.stopping.is_set():
                    return
                await self.step(PLAN[step % len(PLAN)], step)
        finally:
            self.close()

    async def step(self, kind, step):
        """
        Make one request of C{kind} and check its answer.
        """
        if kind == "tunnel":
            await self.tunnel()
            return
        page = f"/n/{(self.number * 7919 + step) % ROTATING}"
        method, path = {"hit": ("GET", HIT_PATHS[step % len(HIT_PATHS)]),
                        "miss": ("GET", MISS_PATHS[step % len(MISS_PATHS)]),
                        "rotating": ("GET", page), "purge": ("PURGE", page)}[kind]
        try:
            if self.writer is None:
                self.reader, self.writer = await self.context.connect(GOOD_ADDRESS)
            self.writer.write(self.context.request(method, path, self.authorization))
            status, headers, body = await asyncio.wait_for(read_response(self.reader), EXCHANGE_SECONDS)
        except EXCHANGE_ERRORS as error:
            self.tally.fail(f"{method} {path}: {error!r}")
            self.close()
            return
        self.served += 1
        if headers.get("connection", "").lower() == "close" or self.served % REQUESTS_PER_CONNECTION == 0:
            self.close()
        if method == "PURGE":
            if status not in (200, 404):
                self.tally.fail(f"PURGE {path}: {status}")
                return
            self.tally.counts["purges"] += 1
            return
        length, digest = self.context.expected[path]
        if status != 200 or len(body) != length or hashlib.sha256(body).hexdigest() != digest:
            wrong_digest = status == 200 and len(body) == length
            self.tally.fail(f"GET {path}: {status}, {len(body)} bytes of {length}{', wrong digest' * wrong_digest}")
            return
        self.tally.counts["good ok"] += 1
        if "hit" in cache_status(headers):
            self.tally.counts["hits"] += 1

    async def tunnel(self):
        """
        CONNECT to the echo server on a connection of its own, and check
        that what goes through comes back.
        """
        target = f"{HOST}:{self.context.echo_port}"
        writer = None
        try:
            reader, writer = await self.context.connect(GOOD_ADDRESS)
            writer.write(f"CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n{self.authorization}\r\n".encode())
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), EXCHANGE_SECONDS)
            if not head.startswith(b"HTTP/1.1 200"):
                first = head.partition(b"\r")[0]
                self.tally.fail(f"CONNECT {target}: {first!r}")
                return
            for _ in range(TUNNEL_ROUNDS):
                block = os.urandom(TUNNEL_BLOCK)
                writer.write(block)
                if await asyncio.wait_for(reader.readexactly(len(block)), EXCHANGE_SECONDS) != block:
                    self.tally.fail(f"CONNECT {target}: the echo differs")
                    return
            self.tally.counts["good ok"] += 1
            self.tally.counts["tunnels"] += 1
        except EXCHANGE_ERRORS as error:
            self.tally.fail(f"CONNECT {target}: {error!r}")
        finally:
            close(writer)


async def slowloris(context, tally):
    """
    Trickle a request head one byte a second, never finishing it, until the
    proxy cuts the connection; then again.
    """
    for _ in range(MAX_STEPS):
        if context.stopping.is_set():
            return
        writer = None
        try:
            opened = time.monotonic()
            reader, writer = await context.connect(SLOWLORIS_ADDRESS)
            tally.counts["slowloris connections"] += 1
            writer.write(f"GET http://{context.origin}/1k HTTP/1.1\r\nHost: {context.origin}\r\nX-Slow: ".encode())
            answer = b""
            for _ in range(MAX_TRICKLES):
                if context.stopping.is_set():
                    return
                try:
                    data = await asyncio.wait_for(reader.read(4096), TRICKLE_SECONDS)
                except TimeoutError:
                    writer.write(b"a")
                    continue
                if not data:
                    break
                answer += data[:200]
            else:
                tally.counts["slowloris never cut"] += 1
                continue
            tally.counts["slowloris cut"] += 1
            status = answer.split(b" ")[1].decode("ascii", "replace") if answer.startswith(b"HTTP/") else "none"
            tally.counts[f"slowloris answer: {status}"] += 1
            tally.slowest_cut = max(tally.slowest_cut, time.monotonic() - opened)
        except EXCHANGE_ERRORS:
            if not context.stopping.is_set():
                tally.counts["slowloris cut"] += 1
                tally.counts["slowloris answer: reset"] += 1
                await context.pause(TRICKLE_SECONDS)
        finally:
            close(writer)


async def wrong_passwords(context, number, tally):
    """
    Ask with wrong credentials, four times a second, on a keep-alive
    connection while the proxy keeps it.
    """
    reader = writer = None
    try:
        for step in range(MAX_STEPS):
            if context.stopping.is_set():
                return
            try:
                if writer is None:
                    reader, writer = await context.connect(WRONG_PASSWORD_ADDRESS)
                authorization = basic(*WRONG_CREDENTIALS[(number + step) % len(WRONG_CREDENTIALS)])
                writer.write(context.request("GET", "/1k", authorization))
                status, headers, _ = await asyncio.wait_for(read_response(reader), EXCHANGE_SECONDS)
                tally.counts[f"wrong password: {status}"] += 1
                if 200 <= status < 300:
                    tally.counts["wrong password let through"] += 1
                if headers.get("connection", "").lower() == "close":
                    close(writer)
                    writer = None
            except EXCHANGE_ERRORS:
                if context.stopping.is_set():
                    return
                tally.counts["wrong password: connection closed"] += 1
                close(writer)
                writer = None
            await context.pause(WRONG_PASSWORD_PAUSE)
    finally:
        close(writer)


async def aborted_downloads(context, number, tally):
    """
    Download the large file, cacheable and not, and drop the connection
    mid-body, half the time with a reset.
    """
    authorization = basic(*ALICE)
    low, high = ABORT_AFTER
    for step in range(MAX_STEPS):
        if context.stopping.is_set():
            return
        path = "/big" if step % 2 == 0 else "/nocache/big"
        keep = low + (number * 7919 + step * 104729) % (high - low)
        writer, stage = None, "connect"
        try:
            reader, writer = await context.connect(ABORT_ADDRESS)
            stage = "head"
            writer.write(context.request("GET", path, authorization))
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), EXCHANGE_SECONDS)
            status = int(head.split()[1])
            if status != 200:
                tally.counts[f"aborted download: {status}"] += 1
                continue
            got, stage = 0, "body"
            for _ in range(keep // 1024 + 1):
                if got >= keep:
                    break
                data = await asyncio.wait_for(reader.read(65536), EXCHANGE_SECONDS)
                if not data:
                    break
                got += len(data)
            tally.counts["aborted downloads"] += 1
        except EXCHANGE_ERRORS as error:
            if context.stopping.is_set():
                return
            tally.counts[f"aborted download: {type(error).__name__} ({stage})"] += 1
        finally:
            close(writer, reset=step % 4 < 2)


async def echo(reader, writer):
    """
    The CONNECT target: send back what comes, until the end.
    """
    try:
        for _ in range(MAX_STEPS):
            data = await reader.read(65536)
            if not data:
                break
            writer.write(data)
            await writer.drain()
    except OSError:
        pass
    finally:
        writer.transport.abort()


async def expected_bodies(origin_port):
    """
    Ask nginx directly for every path the good clients check.

    :returns: C{{path: (length, SHA-256)}}.
    """
    paths = ([f"/{name}" for name in SIZES] + [f"/nocache/{name}" for name in SIZES]
             + [f"/n/{number}" for number in range(ROTATING)])
    expected = {}
    reader, writer = await asyncio.open_connection(HOST, origin_port)
    try:
        for path in paths:
            writer.write(f"GET {path} HTTP/1.1\r\nHost: {HOST}:{origin_port}\r\n\r\n".encode())
            status, _, body = await asyncio.wait_for(read_response(reader), EXCHANGE_SECONDS)
            if status != 200:
                raise RuntimeError(f"nginx answers {status} for {path}")
            expected[path] = (len(body), hashlib.sha256(body).hexdigest())
    finally:
        writer.close()
    return expected


@dataclass
class Sample:
    label: str
    seconds: float
    rss: float
    fds: int
    counts: Counter


def sample(label, seconds, process, tally):
    """
    :returns: a L{Sample} of twistd now, or C{None} when it is gone.
    """
    if process.poll() is not None:
        return None
    try:
        return Sample(label, seconds, rss_mib(process.pid), open_fds(process.pid), Counter(tally.counts))
    except (OSError, AttributeError):
        return None


COLUMNS = ("| time | RSS MiB | fds | good ok | good failed | good req/s | hits | tunnels | purges | slowloris cut "
           "| wrong pw answers | aborted |")


def print_row(row, previous):
    counts = row.counts
    rate = "-"
    if previous is not None and row.seconds > previous.seconds:
        rate = f"{(counts['good ok'] - previous.counts['good ok']) / (row.seconds - previous.seconds):.0f}"
    wrong = sum(n for key, n in counts.items() if key.startswith("wrong password: "))
    print(f"| {row.label} | {row.rss:.1f} | {row.fds} | {counts['good ok']} | {counts['good failed']} | {rate} | "
          f"{counts['hits']} | {counts['tunnels']} | {counts['purges']} | {counts['slowloris cut']} | {wrong} | "
          f"{counts['aborted downloads']} |", flush=True)


async def settle(process, target, seconds):
    """
    Wait up to C{seconds} for twistd's descriptors to fall to C{target}.

    :returns: the count it got to, and the seconds it took.
    """
    started = time.monotonic()
    fds = open_fds(process.pid)
    for _ in range(int(seconds / 0.5) + 1):
        if fds <= target or time.monotonic() - started > seconds:
            break
        await asyncio.sleep(0.5)
        fds = open_fds(process.pid)
    return fds, time.monotonic() - started


async def warm_up(context, tally):
    """
    Make one request of each kind, good and hostile.

    :raises RuntimeError: when a good one fails, or a wrong password does
        not get 407.
    """
    client = GoodClient(context, 0, tally)
    try:
        for step, kind in enumerate(["hit", "hit", "miss", "rotating", "purge", "tunnel"]):
            await client.step(kind, step)
    finally:
        client.close()
    client = GoodClient(context, 1, tally)
    try:
        await client.step("hit", 0)
    finally:
        client.close()
    if tally.failures:
        raise RuntimeError("the warm-up failed:\n  " + "\n  ".join(tally.failures))
    reader, writer = await context.connect(WRONG_PASSWORD_ADDRESS)
    try:
        writer.write(context.request("GET", "/1k", basic(*WRONG_CREDENTIALS[0])))
        status, _, _ = await asyncio.wait_for(read_response(reader), EXCHANGE_SECONDS)
    finally:
        close(writer)
    if status != 407:
        raise RuntimeError(f"the warm-up failed: a wrong password got {status}, not 407")


async def interruptible(work):
    """
    Run the coroutine C{work}, cancelled (so that its clean-up runs) on
    SIGINT or SIGTERM.

    :returns: what C{work} returns.
    :raises KeyboardInterrupt: when it was interrupted.
    """
    loop = asyncio.get_running_loop()
    interrupted = asyncio.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, interrupted.set)
    task, waiter = asyncio.create_task(work), asyncio.create_task(interrupted.wait())
    await asyncio.wait([task, waiter], return_when=asyncio.FIRST_COMPLETED)
    waiter.cancel()
    if not task.done():
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        raise KeyboardInterrupt
    return task.result()


async def soak(args, context, process):
    """
    Warm up, take the baseline, run the load, stop it and let the proxy
    settle, printing a row per sample.

    :returns: C{(samples, baseline, tally, settle seconds)}.
    """
    context.stopping = asyncio.Event()
    context.expected = await expected_bodies(int(context.origin.rpartition(":")[2]))
    server = await asyncio.start_server(echo, HOST, context.echo_port)
    try:
        started_fds = open_fds(process.pid)
        tally = Tally()
        await warm_up(context, tally)
        baseline, waited = await settle(process, started_fds, BASELINE_SECONDS)
        print(f"Descriptors: {started_fds} at start-up; baseline {baseline}, {waited:.1f} s after the warm-up "
              f"(its pooled upstream connections expire after {POOL_IDLE_SECONDS} s idle). "
              f"RSS after the warm-up {rss_mib(process.pid):.1f} MiB.\n", flush=True)
        tally = Tally()
        total = args.minutes * 60
        ticks = [float(t) for t in range(0, int(total) + 1, args.sample_seconds)]
        if ticks[-1] < total:
            ticks.append(total)
        tasks = [asyncio.create_task(GoodClient(context, number, tally).run()) for number in range(args.good)]
        tasks += [asyncio.create_task(slowloris(context, tally)) for _ in range(args.slowloris)]
        tasks += [asyncio.create_task(wrong_passwords(context, n, tally)) for n in range(args.wrong_passwords)]
        tasks += [asyncio.create_task(aborted_downloads(context, n, tally)) for n in range(args.aborters)]
        samples = []
        print(COLUMNS)
        print("|---|" + "---:|" * (COLUMNS.count("|") - 2))
        started = time.monotonic()
        try:
            for tick in ticks:
                await asyncio.sleep(max(0.0, started + tick - time.monotonic()))
                row = sample(f"{tick / 60:.2f} min", tick, process, tally)
                if row is None:
                    break
                print_row(row, samples[-1] if samples else None)
                samples.append(row)
        finally:
            context.stopping.set()
            stopped = time.monotonic()
            _, pending = await asyncio.wait(tasks, timeout=EXCHANGE_SECONDS + 5)
            for task in pending:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
        for task in tasks:
            if not task.cancelled() and task.exception() is not None:
                tally.counts["crashed clients"] += 1
                tally.crashes.append(repr(task.exception()))
        if process.poll() is not None:
            return samples, baseline, tally, None
        await settle(process, baseline, SETTLE_SECONDS - (time.monotonic() - stopped))
        waited = time.monotonic() - stopped
        row = sample(f"stopped +{waited:.0f} s", time.monotonic() - started, process, tally)
        if row is not None:
            print_row(row, None)
            samples.append(row)
        return samples, baseline, tally, waited
    finally:
        server.close()


def verdict(args, samples, baseline, tally, died):
    """
    :returns: the reasons the soak failed, and the lines saying what was
        measured.
    """
    reasons, lines = [], []
    if died:
        reasons.append("twistd exited during the run")
    under_load = [row for row in samples if not row.label.startswith("stopped")]
    reference = next((row for row in under_load if row.seconds >= args.warmup_seconds), None)
    if reference is None:
        reasons.append(f"no sample at or after {args.warmup_seconds} s: no RSS reference (run longer)")
    else:
        later = samples[samples.index(reference):]
        peak = max(later, key=lambda row: row.rss)
        growth = peak.rss / reference.rss - 1
        lines.append(f"RSS: {reference.rss:.1f} MiB at {reference.label}, at most {peak.rss:.1f} MiB after "
                     f"({peak.label}): {growth:+.1%} (limit +{RSS_GROWTH:.0%})")
        if growth > RSS_GROWTH:
            reasons.append(f"RSS grew by {growth:.1%} after {reference.label}")
    last = samples[-1] if samples else None
    if last is not None and last.label.startswith("stopped"):
        lines.append(f"Descriptors: {last.fds} after the load ({last.label}), baseline {baseline}")
        if last.fds > baseline:
            reasons.append(f"{last.fds} descriptors open {SETTLE_SECONDS} s after the load stopped, baseline "
                           f"{baseline}")
    else:
        reasons.append("no sample after the load stopped")
    counts = tally.counts
    lines.append(f"Good clients: {counts['good ok']} answers checked ({counts['hits']} cache hits, "
                 f"{counts['tunnels']} tunnels) and {counts['purges']} PURGEs, {counts['good failed']} failed")
    if counts["good failed"]:
        reasons.append(f"{counts['good failed']} failed requests from the good clients")
    if not counts["good ok"]:
        reasons.append("no good request succeeded")
    if tally.crashes:
        reasons.append(f"{len(tally.crashes)} clients crashed (a bug of this script): {tally.crashes[0]}")
    if counts["wrong password let through"]:
        reasons.append(f"{counts['wrong password let through']} requests with wrong passwords were let through")
    hostile = sorted((key, n) for key, n in counts.items() if key.startswith(("slowloris", "wrong", "aborted")))
    lines.append("Hostile clients: " + ", ".join(f"{key} {n}" for key, n in hostile))
    lines.append(f"Slowest slowloris connection to be cut: {tally.slowest_cut:.1f} s (--timeout {PROXY_TIMEOUT})")
    return reasons, lines


def log_notes(log):
    """
    :returns: how many lines of twistd's log (and its rotated files) are
        warnings, errors, critical or tracebacks, and the first few of the
        last three kinds.
    """
    kinds, first = Counter(), []
    for path in sorted(log.parent.glob(log.name + "*")):
        with open(path, encoding="utf-8", errors="replace") as lines:
            for line in lines:
                kind = next((k for k in ("#critical", "#error", "#warn", "Traceback") if k in line), None)
                if kind is None:
                    continue
                kinds[kind.lstrip("#")] += 1
                if kind != "#warn" and len(first) < 5:
                    first.append(line.rstrip()[:300])
    return kinds, first


def nginx_servers(root, port):
    return f"""
  server {{ listen {HOST}:{port}; root {root};
    add_header Cache-Control "max-age=3600" always;
    location /n/ {{ return 200 "entry $uri\\n"; }}
    location /nocache/ {{ alias {root}/; add_header Cache-Control "no-store" always; }} }}"""


def proxy_arguments(work, echo_port):
    """
    :returns: the arguments of C{twistd netproxy http} after those
        L{support.Netproxy.http} gives it (C{--listen}, C{--max-connections},
        and C{--allow-local} when this netproxy has it).
    """
    users = work / "users"
    alice = bcrypt.hashpw(ALICE[1].encode(), bcrypt.gensalt(10)).decode("ascii")
    users.write_text(f"# soak users\n{ALICE[0]}:{alice}\n{CAROL[0]}:{CAROL_HASH}\n")
    return ["--cache-dir", str(work / "cache"), "--auth-file", str(users), "--connect-port", str(echo_port),
            "--admin", f"{GOOD_ADDRESS}/32", "--allow", "127.0.0.0/8", "--timeout", str(PROXY_TIMEOUT)]


def interrupt(signum, frame):
    raise KeyboardInterrupt


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=10, help="minutes of load (default: 10)")
    parser.add_argument("--sample-seconds", type=int, default=60,
                        help="seconds between two samples of RSS and descriptors (default: 60)")
    parser.add_argument("--warmup-seconds", type=int, default=60,
                        help="RSS is judged against the first sample at or after this many seconds of load "
                             "(default: 60)")
    parser.add_argument("--good", type=int, default=8, help="good clients (default: 8)")
    parser.add_argument("--slowloris", type=int, default=20, help="slowloris connections (default: 20)")
    parser.add_argument("--wrong-passwords", type=int, default=2,
                        help="clients sending wrong passwords, 4 a second each (default: 2)")
    parser.add_argument("--aborters", type=int, default=2, help="clients aborting downloads (default: 2)")
    parser.add_argument("--log", metavar="FILE", help="keep twistd's log in FILE (default: a temporary file)")
    parser.add_argument("--install", action="store_true", help="install nginx-light")
    args = parser.parse_args()
    if args.minutes <= 0 or args.sample_seconds <= 0:
        parser.error("--minutes and --sample-seconds must be positive")
    if args.install:
        install(PACKAGES)
    signal.signal(signal.SIGTERM, interrupt)
    pin_this_process(1)
    print(f"{time.strftime('%Y-%m-%d %H:%M')}, {os.cpu_count()} CPUs; {args.minutes:g} min of load, a sample every "
          f"{args.sample_seconds} s; {args.good} good clients, {args.slowloris} slowloris, {args.wrong_passwords} "
          f"wrong-password, {args.aborters} aborting downloads\n")
    print(describe_netproxies([THIS]) + "\n", flush=True)
    process = nginx = None
    died = False
    with tempfile.TemporaryDirectory(prefix="netproxy-soak-") as tmp:
        work = Path(tmp)
        log = Path(args.log).resolve() if args.log else work / "twistd.log"
        try:
            root = work / "www"
            write_files(root)
            (root / "big").write_bytes(os.urandom(BIG))
            (root / "big").chmod(0o644)
            origin_port, echo_port, port = free_port(), free_port(), free_port()
            nginx = start_nginx(work, nginx_servers(root, origin_port))
            wait_listening(origin_port)
            arguments = proxy_arguments(work, echo_port)
            print(f"twistd netproxy http {' '.join([*THIS.allow_local(), *arguments])}\n", flush=True)
            process = spawn(THIS.http(port, *arguments, logfile=str(log)), work)
            wait_listening(port)
            context = Context(port, f"{HOST}:{origin_port}", echo_port)
            result = asyncio.run(interruptible(soak(args, context, process)))
        except KeyboardInterrupt:
            print("\ninterrupted: stopping everything", flush=True)
            return 1
        except RuntimeError as error:
            print(f"\nFAIL: {error}", flush=True)
            return 1
        finally:
            # Stopping what was started is bounded: let nothing cut it short.
            signal.signal(signal.SIGINT, signal.SIG_IGN)
            signal.signal(signal.SIGTERM, signal.SIG_IGN)
            if process is not None:
                died = process.poll() is not None
                stop(process)
            if nginx is not None:
                stop_nginx(nginx)
            kinds, first = log_notes(log)
        samples, baseline, tally, _ = result
        reasons, lines = verdict(args, samples, baseline, tally, died)
    print()
    print("\n".join(lines))
    print(f"twistd's log: {', '.join(f'{n} {kind}' for kind, n in sorted(kinds.items())) or 'no warnings'}")
    for line in first:
        print(f"  {line}")
    if tally.failures:
        print("First failures of the good clients:")
        for failure in tally.failures:
            print(f"  {failure}")
    print()
    if reasons:
        print("FAIL: " + "; ".join(reasons))
        return 1
    print("PASS")
    return 0


if __name__ == "__main__":
    sys.exit(main())
