"""
Tests for L{netproxy.http.auth}: Basic credentials, the cache of checked
credentials, and the HTTP proxy's 407 answers on a memory reactor.
"""

import base64
import html

from twisted.internet.defer import Deferred, maybeDeferred
from twisted.internet.testing import EventLoggingObserver, MemoryReactorClock
from twisted.internet.address import IPv4Address
from twisted.logger import LogLevel, formatEvent, globalLogPublisher
from twisted.python.filepath import FilePath
from twisted.python.usage import UsageError
from twisted.trial.unittest import SynchronousTestCase

from netproxy import tap
from netproxy.http.service import http_service
from netproxy.http.access_log import format_access_line
from netproxy.errors import TOO_MANY_FAILURES
from netproxy.http.auth import CACHE_SIZE, TARPIT, ProxyAuth, parse_basic
from netproxy.http.login_throttle import BURST, FORGIVE
from netproxy.http.passwords import AuthFile
from netproxy.reload import ReloadOnHangup
from netproxy.testing import UDPMemoryReactor, complete_connection, connect
from tests.http_helpers import CLIENT, get, make_factory, split_response
from tests.password_helpers import ALICE_HASH, CAROL_HASH, USERS

OK = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nhi"
OK_FORWARDED = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nVia: 1.1 netproxy\r\n\r\nhi"


def basic(user, password):
    """
    :returns: a C{Proxy-Authorization} field line with Basic credentials.
    """
    token = base64.b64encode(user + b":" + password)
    return b"Proxy-Authorization: Basic " + token + b"\r\n"


ALICE = basic(b"alice", b"alice's secret")


class ParseBasicTests(SynchronousTestCase):
    """
    Basic credentials are read strictly, and refusals never quote them.
    """

    def test_good(self):
        """The user is before the first colon; the password may hold more."""
        token = base64.b64encode(b"alice:pass:word")
        self.assertEqual(parse_basic(b"Basic " + token), (b"alice", b"pass:word"))
        self.assertEqual(parse_basic(b"bAsIc " + token), (b"alice", b"pass:word"))

    def test_refused(self):
        """Another scheme, bad base64, no colon, too long: each refused with its reason, without the credentials."""
        cases = [
            (b"Bearer abc", "does not use the Basic scheme"),
            (b"Basic", "has no credentials"),
            (b"Basic ", "has no credentials"),
            (b"Basic !!!!", "not valid base64"),
            (b"Basic " + base64.b64encode(b"alice:secret")[:-1], "not valid base64"),
            (b"Basic " + base64.b64encode(b"alicesecret"), "no ':' between user and password"),
            (b"Basic " + base64.b64encode(b"alice:" + b"s" * 600), "password is too long"),
            (b"Basic " + b"A" * 5000, "Proxy-Authorization is too long"),
        ]
        for value, reason in cases:
            error = self.assertRaises(ValueError, parse_basic, value)
            self.assertIn(reason, str(error), value[:40])
            self.assertNotIn("secret", str(error))


class ManualChecks:
    """
    A C{run_blocking} that holds each check until the test runs it.
    """

    def __init__(self):
        self.pending = []

    def __call__(self, function, *args):
        deferred = Deferred()
        self.pending.append((deferred, function, args))
        return deferred

    def run_all(self):
        pending, self.pending = self.pending, []
        for deferred, function, args in pending:
            deferred.callback(function(*args))


class CountingChecks:
    """
    A C{run_blocking} that runs each check at once and counts them.
    """

    def __init__(self):
        self.calls = []

    def __call__(self, function, *args):
        self.calls.append(args[0])
        return maybeDeferred(function, *args)


class RecordingPool:
    """
    A thread pool that records the work it is given and never runs it.
    """

    def __init__(self):
        self.calls = []

    def callInThreadWithCallback(self, on_result, function, *args, **kwargs):
        self.calls.append((function, args))


class CacheTests(SynchronousTestCase):
    """
    Each credential is checked once; the table is bounded and forgotten on
    reload.
    """

    def setUp(self):
        self.path = FilePath(self.mktemp())
        self.path.setContent(USERS.encode())
        self.auth_file = AuthFile(self.path.path)
        self.checks = CountingChecks()
        self.auth = ProxyAuth(self.auth_file, MemoryReactorClock(), self.checks, cache_size=2)

    def verdict(self, user, password):
        """
        :returns: the verdict on credentials C{user:password}.
        """
        headers = [(b"Proxy-Authorization", basic(user, password)[len(b"Proxy-Authorization: "):-2])]
        return self.successResultOf(self.auth.authenticate(headers))

    def test_checked_once(self):
        """Good credentials presented again are not checked again."""
        for _ in range(3):
            self.assertEqual(self.verdict(b"alice", b"alice's secret").user, "alice")
        self.assertEqual(self.checks.calls, ["alice"])

    def test_failures_not_remembered(self):
        """Wrong credentials are checked every time (and never let through)."""
        for _ in range(2):
            self.assertIsNone(self.verdict(b"alice", b"guess").user)
        self.assertEqual(self.checks.calls, ["alice", "alice"])

    def test_eviction(self):
        """With room for two, a third credential evicts the first, which is then checked again."""
        self.path.setContent(USERS.encode() + f"dave:{ALICE_HASH}\n".encode())
        self.auth_file.reload()
        self.verdict(b"alice", b"alice's secret")
        self.verdict(b"carol", b"Hello world!")
        self.verdict(b"dave", b"alice's secret")
        self.verdict(b"carol", b"Hello world!")
        self.verdict(b"alice", b"alice's secret")
        self.assertEqual(self.checks.calls, ["alice", "carol", "dave", "alice"])

    def test_default_size(self):
        """The table holds at most CACHE_SIZE credentials by default."""
        auth = ProxyAuth(self.auth_file, MemoryReactorClock(), self.checks)
        self.assertEqual(auth._cache_size, CACHE_SIZE)

    def test_reload_forgets(self):
        """After a reload, remembered credentials are checked again, against the new file."""
        self.verdict(b"alice", b"alice's secret")
        self.path.setContent(f"alice:{CAROL_HASH}\n".encode())
        self.auth_file.reload()
        self.assertIsNone(self.verdict(b"alice", b"alice's secret").user)
        self.assertEqual(self.verdict(b"alice", b"Hello world!").user, "alice")
        self.assertEqual(self.checks.calls, ["alice", "alice", "alice"])

    def test_check_across_reload_not_remembered(self):
        """A check that ends after a reload lets its request through but is not remembered for the new file."""
        checks = ManualChecks()
        auth = ProxyAuth(self.auth_file, MemoryReactorClock(), checks)
        headers = [(b"Proxy-Authorization", ALICE[len(b"Proxy-Authorization: "):-2])]
        deciding = auth.authenticate(headers)
        self.path.setContent(f"alice:{CAROL_HASH}\n".encode())
        self.auth_file.reload()
        checks.run_all()
        self.assertEqual(self.successResultOf(deciding).user, "alice")
        again = auth.authenticate(headers)
        checks.run_all()
        self.assertIsNone(self.successResultOf(again).user)

    def test_checked_in_thread_pool(self):
        """By default a password is checked in the reactor's thread pool, not on the reactor thread."""
        pool = RecordingPool()
        reactor = MemoryReactorClock()
        reactor.getThreadPool = lambda: pool
        auth = ProxyAuth(self.auth_file, reactor)
        headers = [(b"Proxy-Authorization", ALICE[len(b"Proxy-Authorization: "):-2])]
        deciding = auth.authenticate(headers)
        self.assertNoResult(deciding)
        [(function, args)] = pool.calls
        self.assertEqual((function, args), (self.auth_file.users.verify, ("alice", b"alice's secret")))

    def test_no_password_in_table(self):
        """The table's keys are HMACs, not the credentials."""
        self.verdict(b"alice", b"alice's secret")
        [key] = self.auth._cache
        self.assertNotIn(b"secret", key)
        self.assertEqual(len(key), 32)


class AuthProxyTestCase(SynchronousTestCase):
    """
    A L{ProxyFactory} requiring the users of L{USERS}, on a memory reactor,
    and one client connected to it.
    """

    def setUp(self):
        self.reactor = MemoryReactorClock()
        self.factory = make_factory(self.reactor, "127.0.0.66")
        self.path = FilePath(self.mktemp())
        self.path.setContent(USERS.encode())
        self.checks = CountingChecks()
        self.factory.auth = ProxyAuth(AuthFile(self.path.path), self.reactor, self.checks)
        self.access = []
        self.factory.access_log.add_observer(self.access.append)
        self.events = EventLoggingObserver.createWithCleanup(self, globalLogPublisher)
        self.protocol, self.transport = connect(self.factory, CLIENT)

    def send(self, data):
        """
        Deliver C{data} from the client.
        """
        self.protocol.dataReceived(data)

    def origin(self, index=-1):
        """
        Let connection attempt C{index} succeed.

        :returns: the origin's transport, where the proxy writes.
        """
        return complete_connection(self.reactor, index)[1]

    def assert407(self, cause, keep=True):
        """
        The client got a 407 page naming C{cause} with the Basic challenge,
        nothing went upstream, and the connection stays open if C{keep}.

        :returns: the page's fields.
        """
        data = self.transport.value()
        status, headers, body = split_response(data)
        self.assertEqual(status, b"HTTP/1.1 407 Proxy Authentication Required", data)
        self.assertIn((b"Proxy-Authenticate", b'Basic realm="netproxy"'), headers)
        self.assertIn((b"Content-Type", b"text/html; charset=utf-8"), headers)
        self.assertIn((b"Content-Length", b"%d" % (len(body),)), headers)
        self.assertIn(html.escape(cause).encode(), body)
        self.assertEqual(((b"Connection", b"close") in headers, self.transport.connected), (not keep, keep))
        self.assertEqual(self.reactor.tcpClients, [])
        self.assertEqual(self.flushLoggedErrors(), [])
        return headers

    def logged_text(self):
        """
        :returns: every main log event and access line, formatted, as one text.
        """
        lines = [formatEvent(event) for event in self.events]
        lines += [format_access_line(event) for event in self.access]
        return "\n".join(lines)


class RefusalTests(AuthProxyTestCase):
    """
    Requests without good credentials get 407 with the Basic challenge and
    never go upstream; the connection stays open for the next try.
    """

    def test_no_credentials(self):
        """A request without Proxy-Authorization gets 407, and the connection stays open."""
        self.send(get())
        self.assert407("proxy authentication required")

    def test_retry_on_same_connection(self):
        """After a 407 the client retries with credentials on the same connection and is served."""
        self.send(get())
        self.assert407("proxy authentication required")
        self.transport.clear()
        self.send(get(headers=ALICE))
        origin = self.origin()
        self.assertEqual(origin.value(), b"GET / HTTP/1.1\r\nHost: 127.0.0.1:8000\r\nVia: 1.1 netproxy\r\n\r\n")
        origin.protocol.dataReceived(OK)
        self.assertEqual(self.transport.value(), OK_FORWARDED)
        self.assertTrue(self.transport.connected)

    def test_wrong_password_and_unknown_user_alike(self):
        """A wrong password and an unknown user get the same page; the log tells them apart, naming known users only."""
        self.send(get(headers=basic(b"alice", b"guess")))
        self.assert407("wrong user name or password")
        wrong_password = self.transport.value()
        self.transport.clear()
        self.send(get(headers=basic(b"mallory", b"guess")))
        self.assert407("wrong user name or password")
        self.assertEqual(self.transport.value(), wrong_password)
        logged = self.logged_text()
        self.assertIn("127.0.0.1:40000: 407 wrong password for user alice", logged)
        self.assertIn("127.0.0.1:40000: 407 unknown user", logged)
        self.assertNotIn("mallory", logged)

    def test_malformed_credentials(self):
        """Bad base64, no colon, another scheme, a huge value, a non-UTF-8 name, two fields: each 407, no crash."""
        cases = [
            (b"Proxy-Authorization: Basic %%%%\r\n", "not valid base64"),
            (b"Proxy-Authorization: Basic " + base64.b64encode(b"alice") + b"\r\n", "no &#x27;:&#x27;"),
            (b"Proxy-Authorization: Digest username=\"alice\"\r\n", "does not use the Basic scheme"),
            (b"Proxy-Authorization: Basic " + b"QUFB" * 3000 + b"\r\n", "Proxy-Authorization is too long"),
            (basic(b"\xffalice", b"alice's secret"), "the user name is not UTF-8"),
            (ALICE + ALICE, "more than one Proxy-Authorization field"),
            (b"Proxy-Authorization:\r\n", "does not use the Basic scheme"),
        ]
        for header, cause in cases:
            self.transport.clear()
            self.send(get(headers=header))
            self.assertIn(b"HTTP/1.1 407 ", self.transport.value(), header[:60])
            self.assertIn(cause.encode(), self.transport.value(), header[:60])
            self.assertTrue(self.transport.connected, header[:60])
        self.assertEqual(self.reactor.tcpClients, [])
        self.assertEqual(self.checks.calls, [])
        self.assertEqual(self.flushLoggedErrors(), [])

    def test_connect(self):
        """CONNECT without credentials gets 407 and no tunnel; with them, the tunnel opens."""
        connect_request = b"CONNECT 127.0.0.1:443 HTTP/1.1\r\nHost: 127.0.0.1:443\r\n"
        self.send(connect_request + b"\r\n")
        self.assert407("proxy authentication required")
        self.send(connect_request + ALICE + b"\r\n")
        self.assertEqual(self.reactor.tcpClients[0][:2], ("127.0.0.1", 443))

    def test_http10_closes(self):
        """An HTTP/1.0 client that did not ask to keep the connection has it closed after the 407."""
        self.send(get(version=b"1.0"))
        self.assert407("proxy authentication required", keep=False)

    def test_http10_keep_alive(self):
        """An HTTP/1.0 client that asked for keep-alive keeps its connection, and is told so."""
        self.send(get(version=b"1.0", headers=b"Connection: keep-alive\r\n"))
        headers = self.assert407("proxy authentication required")
        self.assertIn((b"Connection", b"keep-alive"), headers)

    def test_connection_close(self):
        """A client that said Connection: close has its connection closed after the 407."""
        self.send(get(headers=b"Connection: close\r\n"))
        self.assert407("proxy authentication required", keep=False)

    def test_request_with_body_closes(self):
        """A request with a body gets 407 and the connection is closed, its body unread."""
        self.send(get(method=b"POST", headers=b"Content-Length: 5\r\n") + b"hello")
        self.assert407("proxy authentication required", keep=False)

    def test_pipelined_closes(self):
        """Requests pipelined after a refused one are not read: 407 once, then the connection is closed."""
        self.send(get() + get(b"/second"))
        self.assert407("proxy authentication required", keep=False)
        self.assertEqual(self.transport.value().count(b"HTTP/1.1 "), 1)

    def test_head(self):
        """A 407 to HEAD has the page's length but not its body, so the kept connection stays in step."""
        self.send(get(method=b"HEAD"))
        status, headers, body = split_response(self.transport.value())
        self.assertEqual((status, body), (b"HTTP/1.1 407 Proxy Authentication Required", b""))
        self.assertIn((b"Proxy-Authenticate", b'Basic realm="netproxy"'), headers)
        self.assertNotEqual(dict(headers)[b"Content-Length"], b"0")
        self.transport.clear()
        self.send(get(headers=ALICE))
        self.assertEqual(len(self.reactor.tcpClients), 1)
        self.assertEqual(self.transport.value(), b"")

    def test_access_log(self):
        """A 407 is in the access log with its status and page size, and no user."""
        self.send(get())
        [event] = self.access
        self.assertEqual((event["status"], event["size"], event["user"]),
                         (407, len(split_response(self.transport.value())[2]), None))
        self.assertTrue(format_access_line(event).startswith('127.0.0.1 - - ['))

    def test_origin_form_pages(self):
        """The proxy's own pages (origin-form, --admin networks) need no proxy credentials."""
        self.send(b"GET /status HTTP/1.1\r\nHost: 127.0.0.1:8080\r\n\r\n")
        self.assertTrue(self.transport.value().startswith(b"HTTP/1.1 200 OK\r\n"), self.transport.value()[:200])


class AdmittedTests(AuthProxyTestCase):
    """
    Requests with good credentials go through as usual; the credentials go
    no further, and only the user name is logged.
    """

    def test_forwarded_without_credentials(self):
        """A request with good credentials is forwarded without Proxy-Authorization."""
        self.send(get(headers=b"Accept: */*\r\n" + ALICE))
        self.assertEqual(self.origin().value(), b"GET / HTTP/1.1\r\nHost: 127.0.0.1:8000\r\nAccept: */*\r\n"
                                                b"Via: 1.1 netproxy\r\n\r\n")

    def test_sha_crypt_user(self):
        """A user with a SHA-crypt hash is let through with its password."""
        self.send(get(headers=basic(b"carol", b"Hello world!")))
        self.assertEqual(len(self.reactor.tcpClients), 1)

    def test_user_in_access_log(self):
        """The access line's user field names the authenticated user; the next unauthenticated request has none."""
        self.send(get(headers=ALICE))
        self.origin().protocol.dataReceived(OK)
        self.send(get())
        first, second = self.access
        self.assertEqual((first["user"], second["user"]), ("alice", None))
        self.assertTrue(format_access_line(first).startswith("127.0.0.1 - alice ["), format_access_line(first))
        self.assertTrue(format_access_line(second).startswith("127.0.0.1 - - ["), format_access_line(second))

    def test_tunnel_logs_user(self):
        """A CONNECT tunnel's access line names its user."""
        self.send(b"CONNECT 127.0.0.1:443 HTTP/1.1\r\n" + ALICE + b"\r\n")
        destination = self.origin()
        destination.loseConnection()
        [event] = self.access
        self.assertEqual((event["method"], event["user"]), (b"CONNECT", "alice"))

    def test_checked_once_per_connection_and_across(self):
        """Good credentials are checked once, however many requests and connections carry them."""
        self.send(get(headers=ALICE))
        origin = self.origin()
        origin.protocol.dataReceived(OK)
        self.send(get(b"/second", headers=ALICE))
        self.assertIn(b"GET /second HTTP/1.1\r\n", origin.value())
        protocol, _ = connect(self.factory, CLIENT)
        protocol.dataReceived(get(b"/third", headers=ALICE))
        self.assertIn(b"GET /third HTTP/1.1\r\n", self.origin().value())
        self.assertEqual(self.checks.calls, ["alice"])

    def test_credentials_never_logged(self):
        """Neither the password nor the encoded credentials appear in any log, refused or admitted."""
        self.send(get(headers=basic(b"alice", b"guessed secret")))
        self.send(get(headers=ALICE))
        self.origin().protocol.dataReceived(OK)
        logged = self.logged_text()
        self.assertIn("alice", logged)
        for secret in ("alice's secret", "guessed secret", base64.b64encode(b"alice:alice's secret").decode(),
                       base64.b64encode(b"alice:guessed secret").decode()):
            self.assertNotIn(secret, logged)


class PendingCheckTests(AuthProxyTestCase):
    """
    While a password is checked off the reactor thread, the connection is
    not read from; the request goes on when the check ends, unless the
    client has gone.
    """

    def setUp(self):
        super().setUp()
        self.manual = ManualChecks()
        self.factory.auth = ProxyAuth(AuthFile(self.path.path), self.reactor, self.manual)

    def test_paused_then_forwarded(self):
        """The client's connection is paused during the check and resumed, forwarded, after it."""
        self.send(get(headers=ALICE))
        self.assertEqual((self.transport.producerState, self.reactor.tcpClients), ("paused", []))
        self.manual.run_all()
        self.assertEqual(self.origin().value(), b"GET / HTTP/1.1\r\nHost: 127.0.0.1:8000\r\nVia: 1.1 netproxy\r\n\r\n")

    def test_paused_then_refused(self):
        """A wrong password found after the pause gets 407, and reading resumes for the next try."""
        self.send(get(headers=basic(b"alice", b"guess")))
        self.assertEqual(self.transport.value(), b"")
        self.manual.run_all()
        self.assert407("wrong user name or password")
        self.assertEqual(self.transport.producerState, "producing")

    def test_client_gone(self):
        """A client that leaves during the check starts nothing."""
        self.send(get(headers=ALICE))
        self.transport.loseConnection()
        self.manual.run_all()
        self.assertEqual((self.reactor.tcpClients, self.protocol.exchange), ([], None))
        self.assertEqual(self.flushLoggedErrors(), [])

    def test_body_kept(self):
        """Bytes that came with the head (a body) are forwarded once the check passes."""
        self.send(get(method=b"POST", headers=ALICE + b"Content-Length: 5\r\n") + b"hello")
        self.manual.run_all()
        self.assertTrue(self.origin().value().endswith(b"\r\n\r\nhello"))

    def test_check_fails(self):
        """A check that raises (a bug) is logged and answered 500, not left hanging."""
        self.send(get(headers=ALICE))
        [(deferred, _, _)] = self.manual.pending
        deferred.errback(RuntimeError("boom"))
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)
        self.assertTrue(self.transport.value().startswith(b"HTTP/1.1 500 "))
        self.assertFalse(self.transport.connected)


class ThrottleTests(AuthProxyTestCase):
    """
    Failed logins are limited per client address: past the burst, tries
    from that address get 407 at once without a check, while other
    addresses, and credentials already checked, still pass.
    """

    def fail_burst(self, client=CLIENT):
        """
        Send C{BURST} wrong passwords from C{client}, one after another on
        one connection, each refused after its check.
        """
        protocol, transport = connect(self.factory, client)
        for index in range(BURST):
            transport.clear()
            protocol.dataReceived(get(headers=basic(b"alice", b"guess %d" % (index,))))
            self.assertIn(b"wrong user name or password", transport.value())
        return protocol, transport

    def test_refused_without_check(self):
        """Past BURST failures a try is held TARPIT seconds, then 407 with Retry-After; its password is not checked."""
        self.fail_burst()
        self.assertEqual(len(self.checks.calls), BURST)
        for password in (b"guess", b"alice's secret"):
            self.transport.clear()
            self.send(get(headers=basic(b"alice", password)))
            self.reactor.advance(TARPIT - 0.01)
            self.assertEqual((self.transport.value(), self.transport.producerState), (b"", "paused"))
            self.reactor.advance(0.01)
            headers = self.assert407(TOO_MANY_FAILURES)
            self.assertEqual(self.transport.producerState, "producing")
            self.assertIn((b"Retry-After", b"6"), headers)
        self.assertEqual(len(self.checks.calls), BURST)
        warnings = [formatEvent(event) for event in self.events if event["log_level"] == LogLevel.warn]
        self.assertEqual(warnings[BURST:], ["127.0.0.1: too many failed logins (10 recent, 0 being checked); its "
                                            "further tries are refused without a check, one more allowed every 6.0 s"])
        self.assertEqual([event["status"] for event in self.access][BURST:], [407, 407])

    def test_client_gone_during_tarpit(self):
        """A client that leaves while its try is held gets nothing written and leaves no error."""
        self.fail_burst()
        self.send(get(headers=ALICE))
        self.transport.loseConnection()
        self.reactor.advance(TARPIT)
        self.assertEqual(self.transport.value(), b"")
        self.assertEqual(self.flushLoggedErrors(), [])

    def test_forgiven(self):
        """One failure is forgiven every FORGIVE seconds of the reactor's clock: then one more check."""
        self.fail_burst()
        self.reactor.advance(FORGIVE)
        self.send(get(headers=ALICE))
        self.origin()
        self.assertEqual(len(self.checks.calls), BURST + 1)

    def test_other_address_served(self):
        """A limited address does not keep a client at another address from logging in."""
        self.fail_burst()
        protocol, transport = connect(self.factory, IPv4Address("TCP", "127.0.0.2", 40000))
        protocol.dataReceived(get(headers=ALICE))
        self.assertEqual(self.checks.calls[-1], "alice")
        self.origin()

    def test_remembered_credentials_pass(self):
        """Credentials checked before pass from a limited address: they need no check."""
        self.send(get(headers=ALICE))
        origin = self.origin()
        origin.protocol.dataReceived(OK)
        self.fail_burst()
        self.transport.clear()
        self.send(get(headers=ALICE))
        # Forwarded on the origin connection the first request left open.
        self.assertEqual(origin.value().count(b"GET / HTTP/1.1\r\n"), 2)
        self.assertEqual(len(self.checks.calls), BURST + 1)


class ConcurrentCheckTests(AuthProxyTestCase):
    """
    Checks under way: an address has one at a time, counted against its
    budget, and the same credentials on several connections share one.
    """

    def setUp(self):
        super().setUp()
        self.manual = ManualChecks()
        self.factory.auth = ProxyAuth(AuthFile(self.path.path), self.reactor, self.manual)

    def test_attacker_does_not_hold_up_others(self):
        """Many connections guessing at once from one address have one check under way; another address's starts."""
        attempts = [connect(self.factory, CLIENT) for _ in range(2 * BURST)]
        for index, (protocol, _) in enumerate(attempts):
            protocol.dataReceived(get(headers=basic(b"alice", b"guess %d" % (index,))))
        # Past the burst (checks waiting count as failures) refused without a check.
        self.reactor.advance(TARPIT)
        refused = [transport for _, transport in attempts if transport.value()]
        self.assertEqual(len(refused), BURST)
        self.assertIn(html.escape(TOO_MANY_FAILURES).encode(), refused[0].value())
        self.assertEqual(len(self.manual.pending), 1)
        protocol, transport = connect(self.factory, IPv4Address("TCP", "127.0.0.2", 40000))
        protocol.dataReceived(get(headers=ALICE))
        self.assertEqual([args for _, _, args in self.manual.pending][1], ("alice", b"alice's secret"))
        self.manual.run_all()
        self.origin()
        self.assertEqual(transport.producerState, "producing")

    def test_departed_clients_not_checked(self):
        """A waiting check whose client has gone is dropped when its turn comes: the queue holds live clients only."""
        attempts = [connect(self.factory, CLIENT) for _ in range(3)]
        for index, (protocol, _) in enumerate(attempts):
            protocol.dataReceived(get(headers=basic(b"alice", b"guess %d" % (index,))))
        attempts[1][1].loseConnection()
        self.manual.run_all()
        self.assertEqual([args for _, _, args in self.manual.pending], [("alice", b"guess 2")])
        self.manual.run_all()
        self.assertIn(b"wrong user name or password", attempts[2][1].value())
        self.assertEqual(self.factory.auth.throttle._idle["127.0.0.1"].debt, 2)
        self.assertEqual(self.flushLoggedErrors(), [])

    def test_same_credentials_checked_once(self):
        """The same credentials on several connections at once (a browser's) are checked once, for all of them."""
        connections = [connect(self.factory, CLIENT) for _ in range(3)]
        for protocol, _ in connections:
            protocol.dataReceived(get(headers=ALICE))
        self.assertEqual(len(self.manual.pending), 1)
        self.manual.run_all()
        self.assertEqual(len(self.reactor.tcpClients), 3)

    def test_same_wrong_credentials(self):
        """A shared check that fails refuses every connection that waited for it, each a failure of its address."""
        connections = [connect(self.factory, CLIENT) for _ in range(3)]
        for protocol, _ in connections:
            protocol.dataReceived(get(headers=basic(b"alice", b"guess")))
        self.manual.run_all()
        for _, transport in connections:
            self.assertIn(b"wrong user name or password", transport.value())
        self.assertEqual(self.factory.auth.throttle._idle["127.0.0.1"].debt, 3)

    def test_shared_check_fails(self):
        """A shared check that raises (a bug) answers 500 on every connection that waited for it."""
        connections = [connect(self.factory, CLIENT) for _ in range(2)]
        for protocol, _ in connections:
            protocol.dataReceived(get(headers=ALICE))
        [(deferred, _, _)] = self.manual.pending
        deferred.errback(RuntimeError("boom"))
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 2)
        for _, transport in connections:
            self.assertTrue(transport.value().startswith(b"HTTP/1.1 500 "))


class TapTests(SynchronousTestCase):
    """
    C{--auth-file} is checked at start-up and reloaded on SIGHUP.
    """

    def parse(self, *argv):
        options = tap.Options()
        options.parseOptions(["http", "--no-cache", *argv])
        return options.subOptions

    def test_auth_file(self):
        """--auth-file puts a gate on the proxy's factory and its reload on SIGHUP."""
        path = FilePath(self.mktemp())
        path.setContent(USERS.encode())
        options = self.parse("--auth-file", path.path)
        reactor = UDPMemoryReactor()
        service = http_service(options, reactor)
        service.privilegedStartService()
        service.startService()
        self.addCleanup(service.stopService)
        [(_, factory, _, _)] = reactor.tcpServers
        self.assertIsInstance(factory.auth, ProxyAuth)
        self.assertIs(factory.auth.auth_file, options["auth"])
        [reloader] = [child for child in service if isinstance(child, ReloadOnHangup)]
        path.setContent(f"bob:{ALICE_HASH}\n".encode())
        reloader.reload()
        self.assertIn("bob", factory.auth.auth_file.users)

    def test_no_auth_file(self):
        """Without --auth-file the proxy asks for no credentials."""
        reactor = UDPMemoryReactor()
        # --allow-local: otherwise SIGHUP re-reads this host's addresses.
        service = http_service(self.parse("--allow-local"), reactor)
        service.startService()
        self.addCleanup(service.stopService)
        [(_, factory, _, _)] = reactor.tcpServers
        self.assertIsNone(getattr(factory, "auth", None))
        self.assertEqual([child for child in service if isinstance(child, ReloadOnHangup)], [])

    def test_bad_auth_file(self):
        """A bad auth file stops start-up with a message naming the option, the file and the line."""
        path = FilePath(self.mktemp())
        path.setContent(b"alice:$apr1$salt$0123456789012345678901\n")
        error = self.assertRaises(UsageError, self.parse, "--auth-file", path.path)
        self.assertTrue(str(error).startswith(f"--auth-file: {path.path} line 1: user 'alice': "), str(error))

    def test_missing_auth_file(self):
        """A missing auth file stops start-up naming the option."""
        error = self.assertRaises(UsageError, self.parse, "--auth-file", self.mktemp())
        self.assertTrue(str(error).startswith("--auth-file: cannot read auth file"), str(error))
