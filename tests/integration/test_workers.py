"""
End-to-end tests of C{--workers 2}: a real C{twistd} main process holding
the listening socket and two worker processes serving on it.

Which worker served a request is read from the access log (C{worker=N}),
or, for a request still in flight, from which process owns the TCP
connection that reached the origin (C{/proc}).
"""

import os
import re
import signal
import socket
import time

from twisted.internet import reactor
from twisted.internet.defer import Deferred, gatherResults
from twisted.internet.threads import deferToThread
from twisted.python.filepath import FilePath
from twisted.trial.unittest import TestCase

from tests.integration.daemon import (
    LISTEN,
    LOCALHOST,
    SOCKET_TIMEOUT,
    connect_client,
    fresh_directory,
    raw_exchange,
    relay_request,
    run_twistd,
    start_daemon,
    start_server,
)
from tests.integration.http_origin import pattern, start_origin
from tests.integration.test_systemd import http_get, notify_socket

# Enough sequential requests that both workers serve some, whoever wins
# each accept; a test fails if they never do within this many.
MAX_TRIES = 200
# Requests sent at once, on as many connections.
AT_ONCE = 4
ACCESS_LINE = r" worker=\d+$"


async def start_workers(testcase, role, *args, env=None):
    """
    Start C{twistd netproxy ROLE --workers 2 ARGS...} and wait until its
    main process says both workers listen.

    :returns: the L{tests.integration.daemon.Daemon}, with C{port} (the
        port held for the workers) and C{pids} (index -> pid) set.
    """
    daemon = await start_daemon(testcase, role, "--workers", "2", *args, env=env, ready=())
    held = await daemon.wait_for(r"holding \S+ \(port (\d+)\) for 2 workers")
    daemon.ports["held"] = int(held.group(1))
    await daemon.wait_for(r"all 2 workers ready")
    daemon.pids = worker_pids(daemon)
    return daemon


def worker_pids(daemon, since=0):
    """
    :returns: index -> pid of the workers the main process last started.
    """
    pids = {}
    for line in daemon.output.lines[since:]:
        match = re.search(r"worker (\d+) started \(pid (\d+)\)", line)
        if match:
            pids[int(match.group(1))] = int(match.group(2))
    return pids


def socket_owner(local_port, pids):
    """
    :returns: which of C{pids} owns the TCP socket bound to C{local_port} on
        loopback, or L{None}.
    """
    owners = {}
    for pid in pids:
        for descriptor in os.listdir(f"/proc/{pid}/fd"):
            try:
                link = os.readlink(f"/proc/{pid}/fd/{descriptor}")
            except OSError:
                continue
            if link.startswith("socket:["):
                owners[link[len("socket:["):-1]] = pid
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with open(table, encoding="ascii") as lines:
            for line in list(lines)[1:]:
                fields = line.split()
                if int(fields[1].rsplit(":", 1)[1], 16) == local_port and fields[9] in owners:
                    return owners[fields[9]]
    return None


def served_by(daemon, since):
    """
    :returns: the set of worker indexes named in access log lines from
        C{since} on.
    """
    return {int(match.group(1)) for line in daemon.output.lines[since:]
            for match in [re.search(r" worker=(\d+)$", line)] if match}


def environment_of(pid):
    """
    :returns: the environment variables of process C{pid}.
    """
    with open(f"/proc/{pid}/environ", "rb") as environ:
        return dict(entry.decode().partition("=")[::2] for entry in environ.read().split(b"\0") if entry)


def _request_loop(port, request, count, kill_after=None, pid=None):
    """
    In a thread: C{count} requests, each on a new connection, one after the
    other; after C{kill_after} of them, C{SIGKILL} to C{pid}.

    :returns: C{(failures, kill time)}: the requests that did not get a
        whole 200 answer, and C{time.monotonic()} when the kill was sent.
    """
    failures, killed = [], None
    for index in range(count):
        if index == kill_after:
            os.kill(pid, signal.SIGKILL)
            killed = time.monotonic()
        try:
            with socket.create_connection((LOCALHOST, port), timeout=SOCKET_TIMEOUT) as sock:
                sock.sendall(request)
                data = b""
                while True:
                    chunk = sock.recv(65536)
                    if not chunk:
                        break
                    data += chunk
        except OSError as error:
            failures.append((index, repr(error)))
            continue
        if not (data.startswith(b"HTTP/1.1 200 ") and data.endswith(b"".join(pattern(100)))):
            failures.append((index, data[:100]))
    return failures, killed


class HttpWorkersTests(TestCase):
    """
    The HTTP proxy with two workers.
    """

    timeout = 120

    async def start(self, *args, env=None):
        self.origin = start_origin(self)
        return await start_workers(self, "http", "--listen", LISTEN, "--access-log", "-", "--allow-local",
                                   "--no-cache", *args, env=env)

    async def serve_until_both(self, proxy, request, expected=b"HTTP/1.1 200 "):
        """
        Send C{request} on new connections, a few at once (one at a time,
        whichever worker the kernel wakes first may win every time), until
        the access log shows both workers served; each answer must start
        with C{expected}.
        """
        since = position = proxy.mark()
        for attempt in range(MAX_TRIES // AT_ONCE):
            replies = await gatherResults([raw_exchange(proxy.ports["held"], request, until_closed=True)
                                           for _ in range(AT_ONCE)])
            for reply in replies:
                self.assertTrue(reply.data.startswith(expected), reply.data[:200])
                # This request's access line (it may come just after the answer).
                await proxy.wait_for(ACCESS_LINE, since=position)
                position = next(index for index in range(position, len(proxy.output.lines))
                                if re.search(ACCESS_LINE, proxy.output.lines[index])) + 1
            if served_by(proxy, since) == {0, 1}:
                return (attempt + 1) * AT_ONCE
        self.fail(f"both workers did not serve within {MAX_TRIES} requests: {served_by(proxy, since)}")

    async def test_both_workers_serve(self):
        """
        Requests on new connections are served by both workers; each access line names its worker.
        """
        proxy = await self.start()
        self.assertEqual(sorted(proxy.pids), [0, 1])
        await self.serve_until_both(proxy, http_get(self.origin.url("/fixed?size=100")))

    async def test_kill_worker_no_failed_request(self):
        """
        kill -9 of a worker while a client loop runs: no request fails, and the worker is started again within 2 s.
        """
        proxy = await self.start()
        victim = proxy.pids[0]
        since = proxy.mark()
        restarted = Deferred()
        restarted_at = []

        def note(match):
            restarted_at.append(time.monotonic())
            return match

        proxy.wait_for(r"worker 0 started \(pid (\d+)\)", since=since).addCallback(note).chainDeferred(restarted)
        failures, killed = await deferToThread(_request_loop, proxy.ports["held"],
                                               http_get(self.origin.url("/fixed?size=100")), 300, 100, victim)
        self.assertEqual(failures, [])
        match = await restarted
        self.assertNotEqual(int(match.group(1)), victim)
        self.assertLess(restarted_at[0] - killed, 2.0)
        await proxy.wait_for(r"worker 0 \(pid \d+\) exited \(killed by signal 9\); starting it again in 0\.1 s",
                             since=since)
        await proxy.wait_for(rf"worker 0 \(pid {match.group(1)}\) ready", since=since)
        await self.serve_until_both(proxy, http_get(self.origin.url("/fixed?size=100")))

    async def test_sighup_reaches_both(self):
        """
        SIGHUP to the main process reloads both workers (each logs it), and the new blocklist is in force in both.
        """
        blocklist = FilePath(fresh_directory(self)).child("blocklist")
        blocklist.setContent(b"# nothing blocked yet\n")
        proxy = await self.start("--blocklist", blocklist.path)
        blocklist.setContent(f"127.0.0.1:{self.origin.port}\n".encode())
        since = proxy.mark()
        proxy.send_signal(signal.SIGHUP)
        for index in (0, 1):
            await proxy.wait_for(rf"worker {index} \(pid {proxy.pids[index]}\) reloaded", since=since)
        await proxy.wait_for(r"2 of 2 workers reloaded", since=since)
        reloads = [line for line in proxy.output.lines[since:] if "SIGHUP received: reloading configuration" in line]
        self.assertEqual(len(reloads), 3, proxy.output.transcript())  # the main process's and each worker's
        await self.serve_until_both(proxy, http_get(self.origin.url("/fixed?size=100")), b"HTTP/1.1 403 ")

    async def test_sigterm_drains_both(self):
        """
        SIGTERM while each worker carries a download: both complete, then the main process exits 0.
        """
        proxy = await self.start()
        carrying, clients = {}, []
        for attempt in range(MAX_TRIES):
            held = self.origin.next_held()
            client = await connect_client(self, proxy.ports["held"], http_get(self.origin.url("/gate?size=2000")))
            kind, request = await held
            owner = socket_owner(request.transport.getPeer().port, proxy.pids.values())
            await client.wait_for_bytes(1000)
            clients.append(client)
            carrying.setdefault(owner, client)
            if set(carrying) == set(proxy.pids.values()):
                break
        self.assertEqual(set(carrying), set(proxy.pids.values()))
        since = proxy.mark()
        proxy.send_signal(signal.SIGTERM)
        await proxy.wait_for(r"stopping 2 workers", since=since)
        for index in (0, 1):
            await proxy.wait_for(rf"worker {index} \(pid \d+\) is stopping", since=since)
        self.assertFalse(any(client.lost.called for client in clients), "a download was cut at SIGTERM")
        self.origin.release()
        for client in clients:
            await client.lost
            self.assertTrue(client.received.endswith(b"".join(pattern(2000))), client.received[-200:])
        self.assertEqual(await proxy.wait_exit(), "exit code 0", proxy.output.transcript())
        for index in (0, 1):
            self.assertIsNotNone(proxy.output.find(rf"worker {index} \(pid \d+\) exited \(exit status 0\)", since))

    async def test_systemd_sees_one_service(self):
        """
        READY=1 comes from the main process once both workers listen, RELOADING=1/READY=1 around a SIGHUP, STOPPING=1 last; workers have no NOTIFY_SOCKET.
        """
        receiver = notify_socket(self)
        proxy = await start_daemon(self, "http", "--workers", "2", "--listen", LISTEN, "--allow-local", "--no-cache",
                                   env={"NOTIFY_SOCKET": receiver.address, "WATCHDOG_USEC": "200000"}, ready=())
        ready = await receiver.wait_for("READY")
        self.assertEqual(ready, 0, receiver.messages)
        # The main process logs each step before it takes the next, on one stream.
        await proxy.wait_for(r"notifying systemd at .*: ready")
        steps = [r"worker 0 \(pid \d+\) ready", r"worker 1 \(pid \d+\) ready", r"all 2 workers ready",
                 r"notifying systemd at .*: ready"]
        lines = [next(index for index, line in enumerate(proxy.output.lines) if re.search(step, line))
                 for step in steps]
        self.assertEqual(lines[2:], sorted(lines[2:]))
        self.assertLess(max(lines[:2]), lines[2], proxy.output.transcript())
        await receiver.wait_for("WATCHDOG", since=ready + 1)
        pids = worker_pids(proxy)
        for pid in pids.values():
            environ = environment_of(pid)
            for name in ("NOTIFY_SOCKET", "WATCHDOG_USEC", "LISTEN_FDS"):
                self.assertNotIn(name, environ)
            self.assertIn("NETPROXY_WORKER", environ)
        since = len(receiver.messages)
        proxy.send_signal(signal.SIGHUP)
        reloading = await receiver.wait_for("RELOADING", since=since)
        await receiver.wait_for("READY", since=reloading + 1)
        proxy.send_signal(signal.SIGTERM)
        await receiver.wait_for("STOPPING")
        self.assertEqual(await proxy.wait_exit(), "exit code 0", proxy.output.transcript())
        names = [name for name in receiver.names() if name != "WATCHDOG=1"]
        self.assertEqual(names, ["READY=1", "RELOADING=1", "READY=1", "STOPPING=1"])

    async def test_socket_activation(self):
        """
        Given a socket as systemd passes it (descriptor 3, LISTEN_FDS), the main process shares it with both workers, which serve on it; they get none of LISTEN_*.
        """
        listening = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.addCleanup(listening.close)
        listening.bind((LOCALHOST, 0))
        listening.listen(16)
        port = listening.getsockname()[1]
        receiver = notify_socket(self)
        self.origin = start_origin(self)
        proxy = await start_daemon(
            self, "http", "--workers", "2", "--allow-local", "--listen", "systemd:domain=INET:index=0", "--no-cache",
            "--access-log", "-",
            env={"NOTIFY_SOCKET": receiver.address, "LISTEN_FDS": "1", "LISTEN_FDNAMES": "netproxy-http.socket"},
            fds={3: listening.fileno()}, wrapper=("/bin/sh", "-c", 'LISTEN_PID=$$ exec "$@"', "sh"), ready=())
        listening.close()
        await receiver.wait_for("READY")
        await proxy.wait_for(rf"holding systemd:domain=INET:index=0 \(port {port}\) for 2 workers")
        proxy.ports["held"] = port
        for pid in worker_pids(proxy).values():
            self.assertFalse({"LISTEN_FDS", "LISTEN_PID", "LISTEN_FDNAMES"} & set(environment_of(pid)))
        await self.serve_until_both(proxy, http_get(self.origin.url("/fixed?size=100")))

    async def test_main_process_killed(self):
        """
        kill -9 of the main process: each worker sees its pipe close and stops instead of serving on unsupervised.
        """
        proxy = await self.start()
        proxy.kill()
        # The workers write to the same output pipe: it closes once they have exited too.
        self.assertEqual(await proxy.wait_exit(), "killed by signal 9")
        stopped = [line for line in proxy.output.lines if "the main process has gone away: this worker stops" in line]
        self.assertEqual(len(stopped), 2, proxy.output.transcript())
        self.assertEqual(len([line for line in proxy.output.lines if "Server Shut Down." in line]), 2)

    async def test_worker_that_cannot_start(self):
        """
        A worker failing at start-up (an access log it cannot open) makes the main process exit 1 instead of looping.
        """
        result = await run_twistd("-n", "--pidfile=", "netproxy", "http", "--workers", "2", "--listen", LISTEN,
                                  "--no-cache", "--access-log", "/nonexistent/dir/access.log", timeout=60)
        self.assertEqual(result.code, 1, str(result))
        self.assertIn("before it was ready: stopping", result.out + result.err)

    async def test_usage_errors(self):
        """
        --workers 0 and --workers with a unix listener stop twistd with usage errors naming the option.
        """
        result = await run_twistd("-n", "--pidfile=", "netproxy", "http", "--workers", "0")
        self.assertNotEqual(result.code, 0)
        self.assertIn("--workers: expected a number of processes from 1 to", result.out + result.err)
        result = await run_twistd("-n", "--pidfile=", "netproxy", "relay", "--workers", "2", "--listen",
                                  "unix:/tmp/netproxy-never.sock")
        self.assertNotEqual(result.code, 0)
        self.assertIn("listeners must be TCP", result.out + result.err)


class RelayWorkersTests(TestCase):
    """
    The relay with two workers.
    """

    timeout = 60

    async def test_relay_workers_serve(self):
        """
        Relay requests are answered, by both workers (the owner of each upstream connection is one of them).
        """
        destination = start_server(self, reply=lambda data: b"DONE", close_after_reply=True)
        relay = await start_workers(self, "relay", "--listen", LISTEN)
        seen = set()
        for attempt in range(MAX_TRIES):
            # Whose connection it is, asked while it is open.
            accepted = destination.next_connection().addCallback(
                lambda connection: socket_owner(connection.transport.getPeer().port, relay.pids.values()))
            reply = await raw_exchange(relay.ports["held"], relay_request(destination.port), expect=len(b"DONE"))
            self.assertEqual(reply.data, b"DONE")
            seen.add(await accepted)
            if seen == set(relay.pids.values()):
                break
        self.assertEqual(seen, set(relay.pids.values()))
