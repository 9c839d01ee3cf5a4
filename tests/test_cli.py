"""
Tests for L{netproxy.cli}: the options of C{netproxy-client
upper|relay|fetch}, what L{run} prints and the exit status it returns, and
L{main}'s usage errors.

The network is replaced by stubs of L{netproxy.cli.upper_tcp},
L{netproxy.cli.upper_udp}, L{netproxy.cli.send_relay_request} and
L{netproxy.http.fetch.fetch_through_proxy}; the real exchanges are tested in
tests.message.test_upper_client, tests.message.test_relay_client and
tests.http.test_fetch.
"""

import io
import re
import sys
import types

from twisted.internet.defer import Deferred
from twisted.internet.testing import MemoryReactorClock
from twisted.python import usage
from twisted.trial.unittest import SynchronousTestCase

from netproxy import cli
from netproxy.http import fetch as fetch_module
from netproxy.cli import ClientOptions, ClientRunService, main, run
from netproxy.errors import ClientError
from netproxy.http.fetch import Fetched


def parse(*argv):
    """
    :returns: L{ClientOptions} parsed from C{argv}.
    """
    options = ClientOptions()
    options.parseOptions(list(argv))
    return options


class UpperOptionsTests(SynchronousTestCase):
    """
    C{netproxy-client upper HOST PORT [--udp] [--timeout SECONDS] [TEXT]}.
    """

    def setUp(self):
        self.patch(sys, "stdin", io.StringIO("from stdin\r\nsecond line\n"))

    def test_positionals(self):
        """HOST, PORT and TEXT are read, PORT as a number; TCP and a 5 s timeout by default."""
        options = parse("upper", "127.0.0.1", "12000", "hello, World! 123")
        self.assertEqual(options.subCommand, "upper")
        sub = options.subOptions
        self.assertEqual((sub["host"], sub["port"], sub["text"]), ("127.0.0.1", 12000, "hello, World! 123"))
        self.assertFalse(sub["udp"])
        self.assertEqual(sub["timeout"], 5.0)

    def test_udp_after_positionals(self):
        """--udp may come between the positionals and the text."""
        sub = parse("upper", "127.0.0.1", "12000", "--udp", "TEXT").subOptions
        self.assertTrue(sub["udp"])
        self.assertEqual((sub["host"], sub["port"], sub["text"]), ("127.0.0.1", 12000, "TEXT"))

    def test_short_udp(self):
        """-u is --udp."""
        self.assertTrue(parse("upper", "127.0.0.1", "12000", "TEXT", "-u").subOptions["udp"])

    def test_timeout_anywhere(self):
        """--timeout 2 is accepted before, between and after the positionals."""
        for argv in [
            ("upper", "--timeout", "2", "127.0.0.1", "12000", "TEXT"),
            ("upper", "127.0.0.1", "--timeout", "2", "12000", "TEXT"),
            ("upper", "127.0.0.1", "12000", "--timeout", "2", "TEXT"),
            ("upper", "127.0.0.1", "12000", "TEXT", "--timeout", "2"),
            ("upper", "127.0.0.1", "12000", "TEXT", "--timeout=2"),
            ("upper", "127.0.0.1", "12000", "TEXT", "-t", "2"),
        ]:
            sub = parse(*argv).subOptions
            self.assertEqual(
                (sub["host"], sub["port"], sub["text"], sub["timeout"]),
                ("127.0.0.1", 12000, "TEXT", 2.0),
                argv,
            )

    def test_fractional_timeout(self):
        """A timeout may be a fraction of a second."""
        self.assertEqual(parse("upper", "h", "1", "x", "--timeout", "0.25").subOptions["timeout"], 0.25)

    def test_dash_text_after_double_dash(self):
        """After --, a text starting with '-' is the text, not an option."""
        sub = parse("upper", "127.0.0.1", "12000", "--udp", "--", "-hello").subOptions
        self.assertEqual(sub["text"], "-hello")
        self.assertTrue(sub["udp"])

    def test_dash_text_without_double_dash(self):
        """Without --, a text starting with '-' is an unknown option: a usage error."""
        self.assertRaises(usage.UsageError, parse, "upper", "127.0.0.1", "12000", "-hello")

    def test_bad_port(self):
        """A port that is not a number from 1 to 65535 is a usage error naming the option and the value."""
        for port in ["http", "0", "65536", "-1", ""]:
            error = self.assertRaises(usage.UsageError, parse, "upper", "127.0.0.1", "--", port, "TEXT")
            self.assertIn("port", str(error))
            self.assertIn(repr(port), str(error))

    def test_bad_timeout(self):
        """A timeout that is not a positive number is a usage error naming --timeout."""
        for timeout in ["soon", "0", "-1", "inf", "nan"]:
            error = self.assertRaises(
                usage.UsageError, parse, "upper", "127.0.0.1", "12000", "TEXT", "--timeout=" + timeout
            )
            self.assertIn("--timeout", str(error))

    def test_missing_port(self):
        """HOST without PORT is a usage error."""
        self.assertRaises(usage.UsageError, parse, "upper", "127.0.0.1")

    def test_too_many_arguments(self):
        """More than one TEXT is a usage error, not a silently dropped word."""
        self.assertRaises(usage.UsageError, parse, "upper", "127.0.0.1", "12000", "hello", "world")

    def test_unknown_option(self):
        """An unknown option is a usage error."""
        self.assertRaises(usage.UsageError, parse, "upper", "127.0.0.1", "12000", "TEXT", "--tcp")

    def test_text_from_stdin(self):
        """Without TEXT, one line of standard input is the text, without its line end."""
        self.assertEqual(parse("upper", "127.0.0.1", "12000").subOptions["text"], "from stdin")

    def test_empty_text_not_from_stdin(self):
        """An empty TEXT argument is the text; standard input is not read."""
        self.assertEqual(parse("upper", "127.0.0.1", "12000", "").subOptions["text"], "")
        self.assertEqual(sys.stdin.readline(), "from stdin\r\n")

    def test_no_client(self):
        """No client name is a usage error."""
        self.assertRaises(usage.UsageError, parse)


class RelayOptionsTests(SynchronousTestCase):
    """
    C{netproxy-client relay --proxy HOST:PORT --to IP:PORT [TEXT]}.
    """

    def test_defaults(self):
        """The relay is 127.0.0.1:6000 and the timeout 10 s unless told otherwise."""
        sub = parse("relay", "--to", "127.0.0.1:8888", "tgmr").subOptions
        self.assertEqual(sub["proxy"], ("127.0.0.1", 6000))
        self.assertEqual(sub["to"], ("127.0.0.1", 8888))
        self.assertEqual(sub["text"], "tgmr")
        self.assertEqual(sub["timeout"], 10.0)

    def test_proxy(self):
        """--proxy and -p name the relay."""
        self.assertEqual(parse("relay", "--proxy", "10.0.0.1:7000", "--to", "1.2.3.4:5").subOptions["proxy"],
                         ("10.0.0.1", 7000))
        self.assertEqual(parse("relay", "-p", "[::1]:7000", "--to", "1.2.3.4:5").subOptions["proxy"], ("::1", 7000))

    def test_options_after_text(self):
        """Options may follow the text."""
        sub = parse("relay", "tgmr", "--to", "127.0.0.1:8888", "--timeout", "2").subOptions
        self.assertEqual((sub["text"], sub["to"], sub["timeout"]), ("tgmr", ("127.0.0.1", 8888), 2.0))

    def test_to_required(self):
        """Without --to, a usage error names --to."""
        error = self.assertRaises(usage.UsageError, parse, "relay", "tgmr")
        self.assertIn("--to", str(error))

    def test_bad_to(self):
        """A --to without a valid port is a usage error naming --to."""
        for to in ["127.0.0.1", "127.0.0.1:port", "127.0.0.1:0", ":8888"]:
            error = self.assertRaises(usage.UsageError, parse, "relay", "--to", to)
            self.assertIn("--to", str(error))

    def test_bad_proxy(self):
        """A bad --proxy is a usage error naming --proxy."""
        error = self.assertRaises(usage.UsageError, parse, "relay", "--to", "1.2.3.4:5", "--proxy", "relay:x")
        self.assertIn("--proxy", str(error))

    def test_random_text(self):
        """Without TEXT, the text is a random 4-letter word."""
        self.assertRegex(parse("relay", "--to", "127.0.0.1:8888").subOptions["text"], r"\A[a-z]{4}\Z")

    def test_dash_text(self):
        """After --, a text starting with '-' is the text."""
        self.assertEqual(parse("relay", "--to", "127.0.0.1:8888", "--", "-x").subOptions["text"], "-x")


class FetchOptionsTests(SynchronousTestCase):
    """
    C{netproxy-client fetch URL [--proxy HOST:PORT] [--timeout SECONDS]}.
    """

    def test_defaults(self):
        """The proxy is 127.0.0.1:8080 (the HTTP proxy's default) and the timeout 10 s unless told otherwise."""
        sub = parse("fetch", "http://example.com/page?q=1").subOptions
        self.assertEqual((sub["url"], sub["proxy"], sub["timeout"]),
                         ("http://example.com/page?q=1", ("127.0.0.1", 8080), 10.0))

    def test_options_anywhere(self):
        """--proxy/-p and --timeout/-t may come before or after the URL."""
        for argv in [
            ("fetch", "--proxy", "10.0.0.1:3128", "--timeout", "2", "http://example.com/"),
            ("fetch", "http://example.com/", "-p", "10.0.0.1:3128", "-t", "2"),
            ("fetch", "-p", "10.0.0.1:3128", "http://example.com/", "--timeout=2"),
        ]:
            sub = parse(*argv).subOptions
            self.assertEqual((sub["url"], sub["proxy"], sub["timeout"]),
                             ("http://example.com/", ("10.0.0.1", 3128), 2.0), argv)

    def test_ipv6_proxy(self):
        """An IPv6 proxy is given in brackets."""
        self.assertEqual(parse("fetch", "http://[::1]:8000/", "-p", "[::1]:3128").subOptions["proxy"], ("::1", 3128))

    def test_url_required(self):
        """Without a URL, fetch is a usage error."""
        self.assertRaises(usage.UsageError, parse, "fetch")

    def test_bad_url(self):
        """Anything but an absolute http:// URL with a host is a usage error naming the URL."""
        for url in ["example.com/page", "/page", "https://example.com/", "ftp://example.com/", "http://",
                    "http:///page", "http://example.com:port/", "http://example.com:0/", "http://exa mple.com/",
                    "http://example.com/caf\u00e9"]:
            error = self.assertRaises(usage.UsageError, parse, "fetch", url)
            self.assertIn("URL", str(error))
            self.assertIn(repr(url), str(error))

    def test_upper_case_scheme(self):
        """The scheme is case-insensitive, as URLs' are."""
        self.assertEqual(parse("fetch", "HTTP://example.com/").subOptions["url"], "HTTP://example.com/")

    def test_bad_proxy(self):
        """A bad --proxy is a usage error naming --proxy."""
        for proxy in ["proxy", "proxy:http", "proxy:0", ":3128"]:
            error = self.assertRaises(usage.UsageError, parse, "fetch", "http://example.com/", "--proxy", proxy)
            self.assertIn("--proxy", str(error))

    def test_bad_timeout(self):
        """A timeout that is not a positive number is a usage error naming --timeout."""
        error = self.assertRaises(usage.UsageError, parse, "fetch", "http://example.com/", "--timeout", "0")
        self.assertIn("--timeout", str(error))

    def test_listed(self):
        """The client list in the help and in the missing-client error names fetch."""
        self.assertIn("fetch", str(ClientOptions()))
        self.assertIn("fetch", str(self.assertRaises(usage.UsageError, parse)))


class _Stub:
    """
    An async stand-in for a client function: records its arguments and
    returns (or raises) C{outcome}.
    """

    def __init__(self, outcome):
        self.outcome = outcome
        self.calls = []

    async def __call__(self, *args):
        self.calls.append(args)
        if isinstance(self.outcome, BaseException):
            raise self.outcome
        return self.outcome


class RunTests(SynchronousTestCase):
    """
    L{run} prints the reply or the error and returns the exit status.
    """

    def setUp(self):
        self.reactor = MemoryReactorClock()
        self.out = io.StringIO()

    def run_client(self, *argv):
        """
        :returns: the exit status of L{run} for C{argv}.
        """
        d = Deferred.fromCoroutine(run(self.reactor, parse(*argv), self.out))
        return self.successResultOf(d)

    def stub(self, name, outcome, module=cli):
        """
        Replace C{NAME} in C{module} (L{netproxy.cli} by default) by a
        L{_Stub} with C{outcome}.
        """
        stub = _Stub(outcome)
        self.patch(module, name, stub)
        return stub

    def test_upper_tcp(self):
        """The upper client prints 'HOST > REPLY' and returns 0."""
        tcp = self.stub("upper_tcp", b"HELLO, WORLD! 123")
        udp = self.stub("upper_udp", ClientError("not this one"))
        status = self.run_client("upper", "127.0.0.1", "12000", "hello, World! 123")
        self.assertEqual(status, 0)
        self.assertEqual(self.out.getvalue(), "127.0.0.1 > HELLO, WORLD! 123\n")
        self.assertEqual(tcp.calls, [(self.reactor, "127.0.0.1", 12000, b"hello, World! 123", 5.0)])
        self.assertEqual(udp.calls, [])

    def test_upper_udp(self):
        """--udp sends with the UDP client."""
        tcp = self.stub("upper_tcp", ClientError("not this one"))
        udp = self.stub("upper_udp", b"HI")
        self.assertEqual(self.run_client("upper", "127.0.0.1", "12000", "--udp", "hi", "--timeout", "2"), 0)
        self.assertEqual(self.out.getvalue(), "127.0.0.1 > HI\n")
        self.assertEqual(udp.calls, [(self.reactor, "127.0.0.1", 12000, b"hi", 2.0)])
        self.assertEqual(tcp.calls, [])

    def test_upper_utf8(self):
        """The text is sent as UTF-8 and the reply printed as text."""
        tcp = self.stub("upper_tcp", "É".encode())
        self.run_client("upper", "127.0.0.1", "12000", "é")
        self.assertEqual(tcp.calls[0][3], "é".encode())
        self.assertEqual(self.out.getvalue(), "127.0.0.1 > É\n")

    def test_upper_undecodable_reply(self):
        """A reply that is not UTF-8 is printed with replacement characters, not a crash."""
        self.stub("upper_tcp", b"\xffOK")
        self.assertEqual(self.run_client("upper", "127.0.0.1", "12000", "x"), 0)
        self.assertEqual(self.out.getvalue(), "127.0.0.1 > \ufffdOK\n")

    def test_upper_error(self):
        """A ClientError prints 'error: ...' and returns 1."""
        self.stub("upper_tcp", ClientError("could not connect to 127.0.0.1:12000: connection refused"))
        self.assertEqual(self.run_client("upper", "127.0.0.1", "12000", "x"), 1)
        self.assertEqual(self.out.getvalue(), "error: could not connect to 127.0.0.1:12000: connection refused\n")

    def test_upper_udp_error(self):
        """A UDP reply that never comes prints 'error: ...' and returns 1."""
        self.stub("upper_udp", ClientError("no reply from 127.0.0.1:12000 within 5 seconds"))
        self.assertEqual(self.run_client("upper", "127.0.0.1", "12000", "x", "--udp"), 1)
        self.assertEqual(self.out.getvalue(), "error: no reply from 127.0.0.1:12000 within 5 seconds\n")

    def test_relay(self):
        """The relay client prints the reply and returns 0."""
        send = self.stub("send_relay_request", b"DONE")
        self.assertEqual(self.run_client("relay", "--proxy", "127.0.0.1:6001", "--to", "127.0.0.1:8888", "tgmr"), 0)
        self.assertEqual(self.out.getvalue(), "DONE\n")
        self.assertEqual(send.calls, [(self.reactor, ("127.0.0.1", 6001), ("127.0.0.1", 8888), "tgmr", 10.0)])

    def test_relay_error_reply(self):
        """A relay reply starting with 'Error,' is printed and returns 1."""
        self.stub("send_relay_request", b"Error, not allowed address")
        self.assertEqual(self.run_client("relay", "--to", "127.0.0.1:8888", "tgmr"), 1)
        self.assertEqual(self.out.getvalue(), "Error, not allowed address\n")

    def test_relay_empty_reply(self):
        """An empty relay reply returns 1."""
        self.stub("send_relay_request", b"")
        self.assertEqual(self.run_client("relay", "--to", "127.0.0.1:8888", "tgmr"), 1)

    def test_relay_client_error(self):
        """A relay that cannot be reached prints 'error: ...' and returns 1."""
        self.stub("send_relay_request", ClientError("could not connect to 127.0.0.1:6000: connection refused"))
        self.assertEqual(self.run_client("relay", "--to", "127.0.0.1:8888"), 1)
        self.assertEqual(self.out.getvalue(), "error: could not connect to 127.0.0.1:6000: connection refused\n")


    def test_fetch(self):
        """The fetch client prints its report and returns 0, whatever the status."""
        fetched = Fetched(503, "Service Unavailable", "netproxy; fwd=uri-miss; fwd-status=503", None, 0.5, 10)
        fetch = self.stub("fetch_through_proxy", fetched, fetch_module)
        self.assertEqual(self.run_client("fetch", "http://example.com/", "--proxy", "127.0.0.1:3128", "-t", "3"), 0)
        self.assertEqual(self.out.getvalue(), fetched.report())
        self.assertEqual(fetch.calls, [(self.reactor, "http://example.com/", ("127.0.0.1", 3128), 3.0)])

    def test_fetch_error(self):
        """A fetch that gets no answer prints 'error: ...' and returns 1."""
        refused = "could not connect to the proxy 127.0.0.1:8080: connection refused"
        self.stub("fetch_through_proxy", ClientError(refused), fetch_module)
        self.assertEqual(self.run_client("fetch", "http://example.com/"), 1)
        self.assertEqual(self.out.getvalue(), f"error: {refused}\n")


class MainTests(SynchronousTestCase):
    """
    L{main} is the C{netproxy-client} command.
    """

    def setUp(self):
        self.stderr = io.StringIO()
        self.patch(sys, "stderr", self.stderr)
        self.reactor = MemoryReactorClock()
        self.reacted = []

        def react(main_function):
            self.reacted.append(main_function(self.reactor))

        self.patch(cli, "task", types.SimpleNamespace(react=react))

    def test_usage_error(self):
        """A usage error exits with status 2 and says what was wrong on stderr."""
        error = self.assertRaises(SystemExit, main, ["upper", "127.0.0.1", "http", "x"])
        self.assertEqual(error.code, 2)
        self.assertIn("port", self.stderr.getvalue())
        self.assertIn("'http'", self.stderr.getvalue())
        self.assertTrue(self.stderr.getvalue().startswith("netproxy-client: "))
        self.assertEqual(self.reacted, [])

    def test_missing_to(self):
        """A relay without --to exits with status 2 naming --to."""
        error = self.assertRaises(SystemExit, main, ["relay", "tgmr"])
        self.assertEqual(error.code, 2)
        self.assertIn("--to", self.stderr.getvalue())

    def test_no_client(self):
        """No client name exits with status 2."""
        self.assertEqual(self.assertRaises(SystemExit, main, []).code, 2)

    def test_fetch_bad_url(self):
        """A fetch of something that is not an http:// URL exits with status 2 naming the URL, before any request."""
        error = self.assertRaises(SystemExit, main, ["fetch", "example.com"])
        self.assertEqual(error.code, 2)
        self.assertIn("URL", self.stderr.getvalue())
        self.assertIn("'example.com'", self.stderr.getvalue())
        self.assertEqual(self.reacted, [])

    def test_argv_default(self):
        """Without argv, the command line is sys.argv[1:]."""
        self.patch(sys, "argv", ["netproxy-client", "relay"])
        self.assertEqual(self.assertRaises(SystemExit, main).code, 2)
        self.assertIn("--to", self.stderr.getvalue())

    def test_exit_status(self):
        """The reactor's exit status is run's: 0 after a reply, printed to out."""
        self.patch(cli, "upper_tcp", _Stub(b"HI"))
        out = io.StringIO()
        main(["upper", "127.0.0.1", "12000", "hi"], out)
        [d] = self.reacted
        self.assertEqual(self.failureResultOf(d, SystemExit).value.code, 0)
        self.assertEqual(out.getvalue(), "127.0.0.1 > HI\n")

    def test_failure_status(self):
        """A failed exchange makes the command exit with status 1."""
        self.patch(cli, "upper_tcp", _Stub(ClientError("could not connect to h:1: connection refused")))
        out = io.StringIO()
        main(["upper", "h", "1", "hi"], out)
        [d] = self.reacted
        self.assertEqual(self.failureResultOf(d, SystemExit).value.code, 1)
        self.assertTrue(re.match(r"error: ", out.getvalue()))


class ClientRunServiceTests(SynchronousTestCase):
    """
    L{ClientRunService} runs one exchange under twistd, then stops the reactor.
    """

    def start(self, *argv):
        self.reactor = MemoryReactorClock()
        self.out = io.StringIO()
        self.exits = []
        service = ClientRunService(self.reactor, parse(*argv), self.out, set_exit_status=self.exits.append)
        service.startService()
        self.reactor.run()
        return service

    def test_waits_for_reactor(self):
        """Nothing is sent before the reactor runs."""
        stub = _Stub(b"HI")
        self.patch(cli, "upper_tcp", stub)
        ClientRunService(MemoryReactorClock(), parse("upper", "127.0.0.1", "12000", "hi")).startService()
        self.assertEqual(stub.calls, [])

    def test_runs_and_stops(self):
        """Once the reactor runs, the exchange happens, its status is kept and the reactor stops."""
        self.patch(cli, "upper_tcp", _Stub(b"HI"))
        service = self.start("upper", "127.0.0.1", "12000", "hi")
        self.assertEqual(service.status, 0)
        self.assertEqual(self.out.getvalue(), "127.0.0.1 > HI\n")
        self.assertTrue(self.reactor.hasStopped)
        self.assertEqual(self.exits, [])

    def test_failure_exit_status(self):
        """A failed exchange prints its error, stops the reactor and sets exit status 1."""
        self.patch(cli, "upper_tcp", _Stub(ClientError("could not connect to 127.0.0.1:12000: connection refused")))
        service = self.start("upper", "127.0.0.1", "12000", "hi")
        self.assertEqual(service.status, 1)
        self.assertEqual(self.out.getvalue(), "error: could not connect to 127.0.0.1:12000: connection refused\n")
        self.assertTrue(self.reactor.hasStopped)
        self.assertEqual(self.exits, [1])

    def test_unexpected_error(self):
        """An unexpected exception is logged, sets exit status 1 and still stops the reactor."""
        self.patch(cli, "upper_tcp", _Stub(RuntimeError("bug")))
        service = self.start("upper", "127.0.0.1", "12000", "hi")
        self.assertEqual(service.status, 1)
        self.assertTrue(self.reactor.hasStopped)
        self.assertEqual(self.exits, [1])
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)


class ExitAfterTwistdTests(SynchronousTestCase):
    """
    L{cli.exit_after_twistd} makes the process exit with a status once the
    interpreter shuts down.
    """

    def test_exit_handler(self):
        """An exit handler is registered that flushes output and exits with the status."""
        handlers, exits = [], []
        self.patch(cli, "atexit", types.SimpleNamespace(register=handlers.append))
        self.patch(cli, "os", types.SimpleNamespace(_exit=exits.append))
        cli.exit_after_twistd(1)
        self.assertEqual(exits, [])
        [handler] = handlers
        handler()
        self.assertEqual(exits, [1])
