"""
End-to-end tests of proxy authentication: a real C{twistd netproxy http
--auth-file} in front of an in-process origin, driven by curl and by a
blocking socket; credentials never reach the origin or the logs, and
C{SIGHUP} reloads the file (keeping the old users when the new file is bad).
"""

import base64
import json
import shutil
import signal
import socket

import bcrypt
from twisted.internet.threads import deferToThread
from twisted.python.filepath import FilePath
from twisted.trial.unittest import TestCase

from tests.integration.daemon import (
    LOCALHOST,
    SOCKET_TIMEOUT,
    WAIT_TIMEOUT,
    fresh_directory,
    run_command,
    run_twistd,
)
from tests.integration.http_origin import start_origin
from tests.integration.http_client import access_line, fetch, parse_replies, proxy_agent, start_proxy

# Cost 5: the tests are about the flow, not the cost; the check still runs
# in the proxy's thread pool.
ALICE = "alice:" + bcrypt.hashpw(b"alice's secret", bcrypt.gensalt(5)).decode("ascii").replace("$2b$", "$2y$")
BOB = "bob:" + bcrypt.hashpw(b"bob's secret", bcrypt.gensalt(5)).decode("ascii")
# Drepper's SHA-crypt test vector: "Hello world!".
CAROL = ("carol:$6$saltstring$svn8UoSVapNtMuq1ukKS4tPQd8iKwSMHWjl/O817G3uBnIFNjnQJuesI68u4OTLiBFdcbYEdFCoEOfaS35"
         "inz1")
SECRETS = ("alice's secret", "bob's secret", "Hello world!", "wrong secret")
CHALLENGE = 'Basic realm="netproxy"'


def basic(user, password):
    """
    :returns: a C{Proxy-Authorization} field line with Basic credentials.
    """
    return b"Proxy-Authorization: Basic " + base64.b64encode(f"{user}:{password}".encode()) + b"\r\n"


def encoded_secrets():
    """
    :returns: every password of the tests, and the base64 forms they travel in.
    """
    forms = list(SECRETS)
    for user in ("alice", "bob", "carol"):
        forms += [base64.b64encode(f"{user}:{secret}".encode()).decode() for secret in SECRETS]
    return forms


def _read_response(sock, data):
    # Read one response with a Content-Length (all the proxy's and the
    # origin's here have one) after the bytes in data.
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            raise AssertionError(f"connection closed mid-head after {data!r}")
        data += chunk
    head, _, rest = data.partition(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    while len(rest) < length:
        chunk = sock.recv(65536)
        if not chunk:
            raise AssertionError(f"connection closed mid-body after {data + rest!r}")
        rest += chunk
    return head + b"\r\n\r\n" + rest[:length], rest[length:]


def _conversation(port, requests):
    # One connection: each request is sent once the previous answer is in.
    replies = []
    with socket.create_connection((LOCALHOST, port), timeout=SOCKET_TIMEOUT) as sock:
        extra = b""
        for request in requests:
            sock.sendall(request)
            response, extra = _read_response(sock, extra)
            [reply] = parse_replies(response)
            replies.append(reply)
    return replies


def conversation(port, *requests):
    """
    Send C{requests} one after another on one connection, reading each
    answer (with a C{Content-Length}) whole before sending the next, with a
    blocking socket in a thread.

    :returns: a L{Deferred} firing with the L{tests.integration.test_http.Reply} list.
    """
    return deferToThread(_conversation, port, requests)


class ProxyAuthTests(TestCase):
    """
    A proxy with C{--auth-file}: 407 until good credentials come, which go
    no further than the proxy.
    """

    timeout = 60

    async def proxy_and_origin(self, *users):
        """
        Start an origin, and a proxy requiring the C{users} lines.

        :returns: C{(proxy, origin, auth_file)}.
        """
        auth_file = FilePath(fresh_directory(self)).child("users")
        auth_file.setContent(("# test users\n" + "\n".join(users) + "\n").encode())
        origin = start_origin(self)
        proxy = await start_proxy(self, "--no-cache", "--auth-file", auth_file.path)
        return proxy, origin, auth_file

    def assertNoSecrets(self, proxy):
        """
        No password, plain or encoded, is in the proxy's output (main log
        and access log).
        """
        output = "\n".join(proxy.output.lines)
        for secret in encoded_secrets():
            self.assertNotIn(secret, output)

    def assert407(self, reply):
        """
        C{reply} is a 407 with the Basic challenge and a short HTML page.
        """
        self.assertEqual(reply.status, 407, reply)
        self.assertEqual(reply.header("proxy-authenticate"), [CHALLENGE])
        self.assertTrue(reply.header("content-type")[0].startswith("text/html"), reply.headers)
        self.assertIn(b"407 Proxy Authentication Required", reply.body)

    async def test_curl(self):
        """
        curl gets 407 without credentials or with a wrong password, 200 with good ones (sent at once, or after a 407
        on the same connection with --proxy-anyauth); the origin never sees Proxy-Authorization.
        """
        curl = shutil.which("curl")
        if curl is None:
            self.skipTest("curl is not installed: the raw socket test covers the same flow")
        proxy, origin, _ = await self.proxy_and_origin(ALICE, CAROL)
        url = origin.url("/echo?curl")
        since = proxy.mark()

        def run_curl(*args, user=None):
            address = f"{LOCALHOST}:{proxy.port}" if user is None else f"{user}@{LOCALHOST}:{proxy.port}"
            return run_command([curl, "--silent", "--show-error", "--noproxy", "", "--max-time", str(WAIT_TIMEOUT),
                                "--proxy", f"http://{address}", "--write-out", "\n%{http_code}", *args, url])

        result = await run_curl()
        self.assertEqual((result.code, result.out.rpartition("\n")[2]), (0, "407"), result)
        self.assertIn("407 Proxy Authentication Required", result.out)
        result = await run_curl(user="alice:wrong%20secret")
        self.assertEqual(result.out.rpartition("\n")[2], "407", result)
        self.assertIn("wrong user name or password", result.out)
        self.assertEqual(origin.requests, [])

        result = await run_curl(user="alice:alice%27s%20secret")
        body, _, status = result.out.rpartition("\n")
        self.assertEqual((result.code, status), (0, "200"), result)
        self.assertEqual(json.loads(body)["uri"], "/echo?curl")
        # curl sends the credentials only after the proxy asked, on the same connection.
        result = await run_curl("--verbose", "--proxy-anyauth", user="carol:Hello%20world!")
        self.assertEqual(result.out.rpartition("\n")[2], "200", result)
        self.assertIn("< HTTP/1.1 407 Proxy Authentication Required", result.err)
        self.assertIn("Re-using existing connection", result.err)
        self.assertEqual(result.err.count("Connected to"), 1, result.err)

        self.assertEqual(len(origin.requests), 2)
        for seen in origin.requests:
            self.assertEqual(seen.header("proxy-authorization"), [])
        await proxy.wait_for(r"127\.0\.0\.1:\d+: 407 proxy authentication required", since)
        await proxy.wait_for(r"127\.0\.0\.1:\d+: 407 wrong password for user alice", since)
        await proxy.wait_for(access_line("GET", url, 407).replace(r"- \S+ \[", r"- - \["), since)
        await proxy.wait_for(access_line("GET", url, 200).replace(r"- \S+ \[", r"- alice \["), since)
        await proxy.wait_for(access_line("GET", url, 200).replace(r"- \S+ \[", r"- carol \["), since)
        self.assertNoSecrets(proxy)

    async def test_raw_socket(self):
        """
        A raw client gets 407, retries on the same connection with credentials and is served without them reaching
        the origin; CONNECT without credentials gets 407 too.
        """
        proxy, origin, _ = await self.proxy_and_origin(ALICE, CAROL)
        url = origin.url("/echo?raw").encode()
        request = b"GET " + url + b" HTTP/1.1\r\nHost: x\r\n"
        as_carol = request + basic("carol", "Hello world!") + b"\r\n"
        refused, served, again = await conversation(proxy.port, request + b"\r\n", as_carol, as_carol)
        self.assert407(refused)
        self.assertEqual(refused.header("connection"), [])
        self.assertEqual((served.status, again.status), (200, 200))
        self.assertEqual(json.loads(served.body)["uri"], "/echo?raw")
        self.assertEqual([seen.header("proxy-authorization") for seen in origin.requests], [[], []])
        [refused] = await conversation(proxy.port, b"CONNECT 127.0.0.1:443 HTTP/1.1\r\nHost: 127.0.0.1:443\r\n\r\n")
        self.assert407(refused)
        [refused] = await conversation(proxy.port, request + b"Proxy-Authorization: Basic %%%\r\n\r\n")
        self.assert407(refused)
        self.assertIn(b"not valid base64", refused.body)
        await proxy.wait_for(r"127\.0\.0\.1:\d+: 407 Proxy-Authorization credentials are not valid base64")
        self.assertNoSecrets(proxy)

    async def test_sighup(self):
        """
        SIGHUP puts a rewritten auth file in force; a broken one is refused with a logged error and the users stay.
        """
        proxy, origin, auth_file = await self.proxy_and_origin(ALICE)
        request = b"GET " + origin.url("/echo?reload").encode() + b" HTTP/1.1\r\nHost: x\r\n"
        as_alice = request + basic("alice", "alice's secret") + b"\r\n"
        as_bob = request + basic("bob", "bob's secret") + b"\r\n"

        async def statuses():
            return [(await conversation(proxy.port, as_user))[0].status for as_user in (as_alice, as_bob)]

        self.assertEqual(await statuses(), [200, 407])
        auth_file.setContent(f"{BOB}\n".encode())
        since = proxy.mark()
        proxy.send_signal(signal.SIGHUP)
        await proxy.wait_for(r"reloaded 1 users from", since)
        self.assertEqual(await statuses(), [407, 200])

        auth_file.setContent(f"{ALICE}\nnot a user line\n".encode())
        since = proxy.mark()
        proxy.send_signal(signal.SIGHUP)
        await proxy.wait_for(r"refused to reload .*users: .*users line 2: expected user:hash; keeping the 1 users",
                             since)
        self.assertEqual(await statuses(), [407, 200])
        self.assertNoSecrets(proxy)

    async def test_treq_client(self):
        """
        A treq client through ProxyAgent gets 407 without credentials, 407 with a wrong password, and the origin's
        answer with good ones, which the origin never sees.
        """
        proxy, origin, _ = await self.proxy_and_origin(ALICE, CAROL)
        url = origin.url("/echo?treq")
        agent = proxy_agent(proxy.port)
        statuses = []
        for password in (None, "wrong secret", "Hello world!"):
            credentials = base64.b64encode(f"carol:{password}".encode())
            headers = None if password is None else {b"Proxy-Authorization": [b"Basic " + credentials]}
            response, received = await fetch(agent, b"GET", url, headers=headers)
            statuses.append(response.code)
            if response.code == 407:
                self.assertEqual(response.headers.getRawHeaders(b"proxy-authenticate"), [CHALLENGE.encode()])
                self.assertIn(b"407 Proxy Authentication Required", received.body)
        self.assertEqual(statuses, [407, 407, 200])
        self.assertEqual(json.loads(received.body)["uri"], "/echo?treq")
        [seen] = origin.requests
        self.assertEqual(seen.header("proxy-authorization"), [])
        await proxy.wait_for(access_line("GET", url, 200).replace(r"- \S+ \[", r"- carol \["))
        self.assertNoSecrets(proxy)

    async def test_bad_file_at_start(self):
        """
        A bad auth file stops start-up with a message naming the option, the file and the line.
        """
        auth_file = FilePath(fresh_directory(self)).child("users")
        auth_file.setContent(b"alice:$apr1$salt$0123456789012345678901\n")
        result = await run_twistd("-n", "--pidfile=", "netproxy", "http", "--listen", "tcp:0:interface=127.0.0.1",
                                  "--no-cache", "--auth-file", auth_file.path, directory=fresh_directory(self))
        self.assertNotEqual(result.code, 0, result)
        self.assertIn(f"--auth-file: {auth_file.path} line 1: user 'alice': Apache MD5", result.out + result.err)
