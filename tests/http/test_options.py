"""
Tests for L{netproxy.http.options}: the HTTP proxy's options.
"""

from twisted.python.filepath import FilePath
from twisted.python.usage import UsageError
from twisted.trial.unittest import SynchronousTestCase

from netproxy.http import options as http_options
from netproxy.http.service import http_service
from tests.test_tap import parse, start


class HttpCacheOptionsTests(SynchronousTestCase):
    """
    The HTTP proxy's cache options.
    """

    def test_cache_dir(self):
        """--cache-dir and --cache-size give the cache its directory and size bound."""
        path = self.mktemp()
        options = parse("http", "--cache-dir", path, "--cache-size", "2M")
        reactor, service = start(http_service, options)
        store = reactor.tcpServers[0][1].cache.store
        self.assertEqual((store.path.path, store.max_size), (FilePath(path).path, 2 * 1024 * 1024))

    def test_systemd_cache_directory(self):
        """Without --cache-dir, the directory systemd names in $CACHE_DIRECTORY is used."""
        self.patch(http_options.os, "environ", {"CACHE_DIRECTORY": "/var/cache/netproxy/http"})
        self.assertEqual(parse("http").subOptions["cache-dir"], "/var/cache/netproxy/http")

    def test_default_cache_dir(self):
        """With neither, the cache is ./netproxy-cache."""
        self.patch(http_options.os, "environ", {})
        self.assertEqual(parse("http").subOptions["cache-dir"], "netproxy-cache")

    def test_no_cache(self):
        """--no-cache builds a proxy without a cache."""
        reactor, service = start(http_service, parse("http", "--no-cache"))
        self.assertIsNone(reactor.tcpServers[0][1].cache)

    def test_admin(self):
        """--admin names the networks allowed to PURGE; loopback by default."""
        reactor, service = start(http_service, parse("http", "--no-cache", "--admin", "10.0.0.0/8"))
        admin = reactor.tcpServers[0][1].admin
        self.assertIsNotNone(admin.match("10.1.2.3"))
        self.assertIsNone(admin.match("127.0.0.1"))
        default = parse("http").subOptions["admin"]
        self.assertIsNotNone(default.match("127.0.0.1"))
        self.assertIsNotNone(default.match("::1"))

    def test_unix_clients_by_default(self):
        """Unix-socket clients (the client "unix") are allowed and admin by default, not once --allow is given."""
        options = parse("http").subOptions
        self.assertIsNotNone(options["allow"].match("unix"))
        self.assertIsNotNone(options["admin"].match("unix"))
        self.assertIsNone(parse("http", "--allow", "127.0.0.1").subOptions["allow"].match("unix"))
        self.assertIsNotNone(parse("http", "--allow", "unix:").subOptions["allow"].match("unix"))

    def test_bad_cache_size(self):
        """A bad --cache-size is refused naming the option."""
        error = self.assertRaises(UsageError, parse, "http", "--cache-size", "lots")
        self.assertEqual(str(error), "--cache-size: expected a size like 512M, got 'lots'")


class HttpLocalOptionsTests(SynchronousTestCase):
    """
    The HTTP proxy refuses destinations on this host unless --allow-local is given.
    """

    def test_local_refused_by_default(self):
        """By default the proxy refuses local destinations, and re-reads this host's addresses on SIGHUP."""
        from netproxy import this_host
        from netproxy.reload import ReloadOnHangup

        reads = []
        self.patch(this_host.LocalDestinations, "reload", lambda local: reads.append(local))
        reactor, service = start(http_service, parse("http", "--no-cache"))
        self.addCleanup(service.stopService)
        local = reactor.tcpServers[0][1].local
        self.assertIsInstance(local, this_host.LocalDestinations)
        [reloader] = [child for child in service if isinstance(child, ReloadOnHangup)]
        reloader.reload()
        self.assertEqual(reads, [local, local])

    def test_allow_local(self):
        """--allow-local lets local destinations through: the proxy checks none."""
        from netproxy.reload import ReloadOnHangup

        reactor, service = start(http_service, parse("http", "--no-cache", "--allow-local"))
        self.addCleanup(service.stopService)
        self.assertIsNone(reactor.tcpServers[0][1].local)
        self.assertEqual([child for child in service if isinstance(child, ReloadOnHangup)], [])

    def test_relay_has_no_allow_local(self):
        """The relay allows local destinations (its peers live there): it has no --allow-local."""
        self.assertRaises(UsageError, parse, "relay", "--allow-local")


class HttpParentOptionsTests(SynchronousTestCase):
    """
    --parent, --direct and --via-name.
    """

    def test_parents(self):
        """--parent may be repeated; each is read with its credentials."""
        options = parse("http", "--parent", "http://u:p@a.example:3128", "--parent", "http://[::1]:8080").subOptions
        self.assertEqual([(parent.name, parent.authorization) for parent in options["parent"]],
                         [("a.example:3128", b"Basic dTpw"), ("[::1]:8080", None)])

    def test_bad_parent(self):
        """A malformed --parent stops start-up with a message naming the option and what is wrong."""
        for value, expected in [("a.example:3128", "expected http://"), ("http://a.example", "port"),
                                ("socks4://a.example:1080", "only http:// and socks5://")]:
            with self.assertRaises(UsageError) as raised:
                parse("http", "--parent", value)
            self.assertTrue(str(raised.exception).startswith("--parent: "), raised.exception)
            self.assertIn(expected, str(raised.exception))

    def test_parent_twice(self):
        """One parent given twice is a mistake."""
        with self.assertRaises(UsageError) as raised:
            parse("http", "--parent", "http://a:1", "--parent", "http://u:p@A:1/")
        self.assertEqual(str(raised.exception), "--parent: a:1 is given twice")

    def test_direct(self):
        """--direct takes rules in the syntax of --block; a bad one names the option."""
        options = parse("http", "--parent", "http://a:1", "--direct", "*.internal", "--direct", "10.0.0.0/8")
        self.assertEqual([str(rule) for rule in options.subOptions["direct"]], ["*.internal", "10.0.0.0/8"])
        with self.assertRaises(UsageError) as raised:
            parse("http", "--direct", "10.0.0.0/99")
        self.assertTrue(str(raised.exception).startswith("--direct: "), raised.exception)

    def test_via_name_default(self):
        """Without parents the Via name is netproxy; with parents it is netproxy- and a hash of host and --listen."""
        self.assertEqual(parse("http").subOptions["via-name"], b"netproxy")
        first = parse("http", "--parent", "http://a:1", "--listen", "3128").subOptions["via-name"]
        again = parse("http", "--parent", "http://b:1", "--listen", "3128").subOptions["via-name"]
        other = parse("http", "--parent", "http://a:1", "--listen", "3129").subOptions["via-name"]
        self.assertRegex(first.decode("ascii"), r"^netproxy-[0-9a-f]{8}$")
        self.assertEqual(first, again)
        self.assertNotEqual(first, other)

    def test_via_name(self):
        """--via-name sets the name; one that is not an HTTP token is refused."""
        self.assertEqual(parse("http", "--via-name", "cache-1.example").subOptions["via-name"], b"cache-1.example")
        for bad in ("two words", "a,b", "", "x" * 65, "caf\u00e9"):
            with self.assertRaises(UsageError) as raised:
                parse("http", "--via-name", bad)
            self.assertTrue(str(raised.exception).startswith("--via-name: "), raised.exception)


class HttpRefreshPatternOptionsTests(SynchronousTestCase):
    """
    --refresh-pattern gives the cache the operator's freshness rules, in order.
    """

    def test_rules_reach_the_cache(self):
        """Each rule given is parsed and handed to the cache, first one first."""
        options = parse("http", "--cache-dir", self.mktemp(), "--refresh-pattern", r"/pool/.*\.deb$ 129600 100% 129600",
                        "--refresh-pattern", r"-i \.whl$ 10 20% 60")
        reactor, service = start(http_service, options)
        rules = reactor.tcpServers[0][1].cache.rules
        self.assertEqual([rule.text for rule in rules], [r"/pool/.*\.deb$ 129600 100% 129600", r"-i \.whl$ 10 20% 60"])

    def test_none_by_default(self):
        """Without the option the cache has no rules."""
        self.assertEqual(parse("http").subOptions["refresh-pattern"], [])

    def test_bad_rules(self):
        """A bad expression or number is refused naming the option."""
        error = self.assertRaises(UsageError, parse, "http", "--refresh-pattern", "(x 1 20% 2")
        self.assertTrue(str(error).startswith("--refresh-pattern: bad regular expression '(x'"), str(error))
        error = self.assertRaises(UsageError, parse, "http", "--refresh-pattern", "x 1 20% never")
        self.assertEqual(str(error), "--refresh-pattern: MAX must be a whole number of minutes, got 'never'")


class HttpRefreshPatternsFileTests(SynchronousTestCase):
    """
    --refresh-patterns reads a file of rules, after those of --refresh-pattern, and re-reads it on SIGHUP.
    """

    def rules_file(self, content):
        path = FilePath(self.mktemp())
        path.setContent(content)
        return path

    def test_rules_reach_the_cache(self):
        """The file's rules reach the cache after those given one by one."""
        path = self.rules_file(b"# package caches\n/pool/ 129600 100% 129600\n\n\\.whl$ 1 0% 1 # wheels\n")
        options = parse("http", "--cache-dir", self.mktemp(), "--refresh-patterns", path.path,
                        "--refresh-pattern", "/first/ 1 0% 1")
        reactor, service = start(http_service, options)
        rules = reactor.tcpServers[0][1].cache.rules
        self.assertEqual([rule.text for rule in rules],
                         ["/first/ 1 0% 1", "/pool/ 129600 100% 129600", r"\.whl$ 1 0% 1"])

    def test_none_by_default(self):
        """Without the option there is no file and no rule."""
        refresh = parse("http").subOptions["refresh"]
        self.assertEqual((refresh.name, refresh.rules), (None, ()))

    def test_bad_file(self):
        """A bad line or a missing file stops start-up naming the option, the file and the line."""
        path = self.rules_file(b"/pool/ 1 0% 1\n# fine\n/pool/ 1 0% soon\n")
        error = self.assertRaises(UsageError, parse, "http", "--refresh-patterns", path.path)
        self.assertEqual(str(error), f"--refresh-patterns: {path.path} line 3: MAX must be a whole number of "
                                     f"minutes, got 'soon'")
        missing = self.mktemp()
        error = self.assertRaises(UsageError, parse, "http", "--refresh-patterns", missing)
        self.assertTrue(str(error).startswith(f"--refresh-patterns: cannot read refresh patterns file "), str(error))

    def test_reloaded_on_hangup(self):
        """SIGHUP hands the cache the rewritten file's rules; a bad file leaves the rules in force."""
        from netproxy.reload import ReloadOnHangup

        path = self.rules_file(b"/a/ 1 0% 1\n")
        options = parse("http", "--cache-dir", self.mktemp(), "--refresh-pattern", "/first/ 1 0% 1",
                        "--refresh-patterns", path.path, "--allow-local")
        reactor, service = start(http_service, options)
        self.addCleanup(service.stopService)
        cache = reactor.tcpServers[0][1].cache
        [reloader] = [child for child in service if isinstance(child, ReloadOnHangup)]
        path.setContent(b"/b/ 1 0% 1\n/c/ 1 0% 1\n")
        reloader.reload()
        self.assertEqual([rule.text for rule in cache.rules], ["/first/ 1 0% 1", "/b/ 1 0% 1", "/c/ 1 0% 1"])
        before = cache.rules
        path.setContent(b"/d/ 1 0%\n")
        reloader.reload()
        self.assertEqual(cache.rules, before)

    def test_no_reload_without_file(self):
        """Without --refresh-patterns, nothing is reloaded on SIGHUP for the rules."""
        from netproxy.reload import ReloadOnHangup

        options = parse("http", "--cache-dir", self.mktemp(), "--refresh-pattern", "/first/ 1 0% 1", "--allow-local")
        reactor, service = start(http_service, options)
        self.assertEqual([child for child in service if isinstance(child, ReloadOnHangup)], [])


class HttpRangeOffsetLimitTests(SynchronousTestCase):
    """
    --range-offset-limit gives the cache its range offset limit: a size, 0 or none.
    """

    def limit(self, *args):
        """:returns: the limit the cache gets from C{args}."""
        reactor, service = start(http_service, parse("http", "--cache-dir", self.mktemp(), *args))
        return reactor.tcpServers[0][1].cache.range_offset_limit

    def test_values(self):
        """16M by default; a size; 0 for never; none for no limit."""
        self.assertEqual(self.limit(), 16 * 1024 * 1024)
        self.assertEqual(self.limit("--range-offset-limit", "64K"), 64 * 1024)
        self.assertEqual(self.limit("--range-offset-limit", "0"), 0)
        self.assertIsNone(self.limit("--range-offset-limit", "none"))

    def test_bad(self):
        """Anything else is refused naming the option."""
        for value in ("lots", "-1", ""):
            error = self.assertRaises(UsageError, parse, "http", "--range-offset-limit", value)
            self.assertEqual(str(error), f"--range-offset-limit: expected a size like 16M, 0 or none, got {value!r}")


class HttpPacAndRateOptionsTests(SynchronousTestCase):
    """
    C{--pac-file}, C{--rate-limit} and C{--max-requests-rate}.
    """

    def test_defaults(self):
        """By default there is no PAC file (one is generated) and no rate limit."""
        options = parse("http").subOptions
        self.assertEqual((options["pac"], options["rate-limit"], options["max-requests-rate"]), (None, None, None))

    def test_pac_file(self):
        """--pac-file is read at start."""
        path = FilePath(self.mktemp())
        path.setContent(b"function FindProxyForURL(url, host) { return 'DIRECT'; }")
        self.assertEqual(parse("http", "--pac-file", path.path).subOptions["pac"].content, path.getContent())

    def test_pac_file_unreadable(self):
        """A PAC file that cannot be read, or is none, stops start-up with a message naming the option."""
        missing = self.mktemp()
        error = self.assertRaises(UsageError, parse, "http", "--pac-file", missing)
        self.assertTrue(str(error).startswith(f"--pac-file: cannot read {FilePath(missing).path}: "), str(error))
        other = FilePath(self.mktemp())
        other.setContent(b"# rules")
        error = self.assertRaises(UsageError, parse, "http", "--pac-file", other.path)
        self.assertEqual(str(error), f"--pac-file: {other.path} defines no FindProxyForURL function: not a PAC file")

    def test_rates(self):
        """--rate-limit takes a size per second, --max-requests-rate a number, fractions allowed."""
        options = parse("http", "--rate-limit", "512K", "--max-requests-rate", "0.5").subOptions
        self.assertEqual((options["rate-limit"], options["max-requests-rate"]), (512 * 1024, 0.5))

    def test_bad_rates(self):
        """Bad rates are refused naming the option."""
        for option, value in (("rate-limit", "fast"), ("rate-limit", "0"), ("max-requests-rate", "0"),
                              ("max-requests-rate", "-1"), ("max-requests-rate", "inf"), ("max-requests-rate", "many")):
            error = self.assertRaises(UsageError, parse, "http", f"--{option}", value)
            self.assertTrue(str(error).startswith(f"--{option}: expected "), str(error))
            self.assertIn(repr(value), str(error))

    def test_not_with_workers(self):
        """The limits are kept in one process: with --workers above 1 they are refused."""
        for option, value in (("rate-limit", "1M"), ("max-requests-rate", "10")):
            error = self.assertRaises(UsageError, parse, "http", "--workers", "2", f"--{option}", value)
            self.assertTrue(str(error).startswith(f"--{option}: not available with --workers above 1"), str(error))
