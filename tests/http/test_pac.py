"""
Tests for L{netproxy.http.pac}: the generated PAC file (run by Node.js,
when it is installed, as a browser would run it), the operator's PAC file
and its reload, and C{/proxy.pac} and C{/wpad.dat} asked for through an
in-memory proxy.
"""

import json
import shutil
import subprocess

from twisted.internet.address import IPv4Address, IPv6Address, UNIXAddress
from twisted.internet.testing import StringTransportWithDisconnection
from twisted.logger import globalLogPublisher
from twisted.python.filepath import FilePath
from twisted.trial.unittest import SynchronousTestCase

from netproxy.acl import parse_rule
from netproxy.errors import PacFileError
from netproxy.http.pac import MAX_PAC_SIZE, PacFile, _named_address, generated_pac, javascript_value
from netproxy.testing import connect
from tests.http.test_admin import OUTSIDER, AdminTestCase
from tests.http_helpers import split_response

NODE = shutil.which("node") or shutil.which("nodejs")
PAC = b'function FindProxyForURL(url, host) { return "PROXY 192.0.2.1:3128"; }\n'


def run_pac(pac, cases):
    """
    Run the PAC file C{pac} with Node.js for each C{(url, host)} of C{cases}.

    :returns: what C{FindProxyForURL} returned for each.
    """
    script = (pac.decode("ascii") + "\nvar cases = " + json.dumps(cases) + ";\n"
              "console.log(JSON.stringify(cases.map(function (c) { return FindProxyForURL(c[0], c[1]); })));\n")
    result = subprocess.run([NODE, "-e", script], capture_output=True, text=True, timeout=30, check=True)
    return json.loads(result.stdout)


class GeneratedTests(SynchronousTestCase):
    """
    L{generated_pac}, evaluated.
    """

    def setUp(self):
        if NODE is None:
            raise self.skipTest("Node.js is not installed: the generated JavaScript cannot be run")

    def test_everything_to_the_proxy(self):
        """Without rules, every URL goes to the proxy, but for the browser's own host."""
        pac = generated_pac("192.0.2.1:8080")
        self.assertEqual(run_pac(pac, [["http://example.com/", "example.com"], ["https://10.1.2.3:8443/x", "10.1.2.3"],
                                       ["ftp://[2001:db8::1]/", "2001:db8::1"], ["http://localhost:3000/", "localhost"],
                                       ["http://app.localhost/", "app.localhost"], ["http://127.0.0.5/", "127.0.0.5"],
                                       ["http://[::1]:80/", "::1"], ["http://[::1]/", "[::1]"]]),
                         ["PROXY 192.0.2.1:8080"] * 3 + ["DIRECT"] * 5)

    def test_direct_rules(self):
        """Each form of rule sends what it matches DIRECT, as the proxy's rules match it, and nothing else."""
        rules = [parse_rule(text) for text in ("example.com", "*.corp.example", "10.0.0.0/8", "2001:db8::/32",
                                               "*:8443", "192.0.2.7:8080", "[2001:db9::1]:81")]
        cases = {
            ("http://example.com/", "example.com"): "DIRECT",
            ("http://EXAMPLE.com./", "EXAMPLE.com."): "DIRECT",
            ("http://www.example.com/", "www.example.com"): "PROXY",
            ("http://a.b.corp.example/", "a.b.corp.example"): "DIRECT",
            ("http://corp.example/", "corp.example"): "PROXY",
            ("http://10.200.0.1/", "10.200.0.1"): "DIRECT",
            ("http://11.0.0.1/", "11.0.0.1"): "PROXY",
            ("http://[::ffff:10.0.0.1]/", "::ffff:10.0.0.1"): "DIRECT",
            ("http://[2001:db8:ffff::1]/", "2001:db8:ffff::1"): "DIRECT",
            ("http://[2001:db80::1]/", "2001:db80::1"): "PROXY",
            ("https://anything:8443/", "anything"): "DIRECT",
            ("https://anything/", "anything"): "PROXY",
            ("http://192.0.2.7:8080/", "192.0.2.7"): "DIRECT",
            ("http://192.0.2.7/", "192.0.2.7"): "PROXY",
            ("http://[2001:db9::1]:81/", "2001:db9::1"): "DIRECT",
            ("http://[2001:db9::1]:82/", "2001:db9::1"): "PROXY",
            # Names are not resolved: an address rule matches addresses only.
            ("http://ten.example/", "ten.example"): "PROXY",
        }
        results = run_pac(generated_pac("[2001:db8::2]:3128", rules), [list(case) for case in cases])
        expected = [verdict if verdict == "DIRECT" else "PROXY [2001:db8::2]:3128" for verdict in cases.values()]
        self.assertEqual(dict(zip(cases, results)), dict(zip(cases, expected)))

    def test_hostile_values(self):
        """Whatever text reaches the file stays a JavaScript string: no quote, backslash or tag ends it."""
        proxy = '"; return "DIRECT"; //</script>\\\u2028'
        pac = generated_pac(proxy)
        self.assertNotIn(b"</script>", pac)
        self.assertEqual(run_pac(pac, [["http://example.com/", "example.com"]]), ["PROXY " + proxy])


class JavaScriptValueTests(SynchronousTestCase):
    """
    L{javascript_value}.
    """

    def test_escaped(self):
        """Quotes, backslashes, markup and characters outside ASCII are escaped; the value is JSON."""
        text = javascript_value(['"\\<>&\u2028\u00e9'])
        self.assertTrue(text.isascii())
        for raw in ("<", ">", "&", "\u2028"):
            self.assertNotIn(raw, text)
        self.assertEqual(json.loads(text), ['"\\<>&\u2028\u00e9'])


class NamedAddressTests(SynchronousTestCase):
    """
    L{_named_address}: the address a Host field names, if any.
    """

    def test_forms(self):
        """Addresses with and without a port are read; names and malformed fields are not."""
        cases = {
            b"127.0.0.1:3128": ("127.0.0.1", 3128),
            b"127.0.0.1": ("127.0.0.1", 80),
            b"[::1]:3128": ("::1", 3128),
            b"[::ffff:127.0.0.1]:3128": ("127.0.0.1", 3128),
            b"127.1:3128": ("127.0.0.1", 3128),
            b"proxy.example:3128": None,
            b"[::1]x": None,
            b"[::1": None,
            b"127.0.0.1:0": None,
            b"127.0.0.1:99999": None,
            b"127.0.0.1:1e3": None,
            b"127.0.0.1:\xd9\xa3": None,
            b"": None,
        }
        self.assertEqual({value: _named_address(value) for value in cases}, cases)


class PacFileTests(SynchronousTestCase):
    """
    L{PacFile}: read at start, re-read on reload, the old one kept when the
    new one is bad.
    """

    def setUp(self):
        self.path = FilePath(self.mktemp())
        self.path.setContent(PAC)
        self.events = []
        globalLogPublisher.addObserver(self.events.append)
        self.addCleanup(globalLogPublisher.removeObserver, self.events.append)

    def test_read(self):
        """The file is read as it is."""
        self.assertEqual(PacFile(self.path.path).content, PAC)

    def test_bad_at_start(self):
        """A missing file, one too large or one without FindProxyForURL is refused, the message naming the file."""
        missing = FilePath(self.mktemp())
        large = FilePath(self.mktemp())
        large.setContent(PAC + b" " * MAX_PAC_SIZE)
        other = FilePath(self.mktemp())
        other.setContent(b"<html>not a PAC file</html>")
        for path, reason in ((missing, "cannot read"), (large, "larger than 1024 KiB"), (other, "no FindProxyForURL")):
            error = self.assertRaises(PacFileError, PacFile, path.path)
            self.assertIn(path.path, str(error))
            self.assertIn(reason, str(error))

    def test_reload(self):
        """A reload puts the new file in force."""
        pac = PacFile(self.path.path)
        self.path.setContent(PAC.replace(b"192.0.2.1", b"192.0.2.2"))
        self.assertTrue(pac.reload())
        self.assertIn(b"192.0.2.2", pac.content)

    def test_reload_bad(self):
        """A reload that finds the file gone or broken keeps the old one, and logs why."""
        pac = PacFile(self.path.path)
        self.path.setContent(b"oops")
        self.assertFalse(pac.reload())
        self.path.remove()
        self.assertFalse(pac.reload())
        self.assertEqual(pac.content, PAC)
        errors = [event for event in self.events if "refused to reload the PAC file" in event.get("log_format", "")]
        self.assertEqual(len(errors), 2)


class PageTests(AdminTestCase):
    """
    C{GET /proxy.pac} and C{/wpad.dat} through the proxy.
    """

    def pac_request(self, path=b"/proxy.pac", method=b"GET", host=b"127.0.0.1:3128", more=b""):
        """
        :returns: a request for the PAC file at C{path}, with C{more} after
            its Host field (more fields, a body).
        """
        return b"%s %s HTTP/1.1\r\nHost: %s\r\n%s\r\n" % (method, path, host, more)

    def listen(self, host, port):
        """The proxy listens on C{host:port}."""

        class Port:
            def getHost(self):
                return IPv4Address("TCP", host, port)

        self.factory.listening.add(Port())

    def test_any_allowed_client(self):
        """A client of --allow outside --admin gets the PAC file, with its type, on both paths."""
        for path in (b"/proxy.pac", b"/wpad.dat?x=1"):
            transport = self.ask(self.pac_request(path), peer=OUTSIDER)
            status, headers, body = split_response(transport.value())
            self.assertEqual(status, b"HTTP/1.1 200 OK")
            self.assertIn((b"Content-Type", b"application/x-ns-proxy-autoconfig"), headers)
            self.assertIn((b"Content-Length", b"%d" % (len(body),)), headers)
            self.assertIn(b"function FindProxyForURL(url, host)", body)

    def test_address_from_host(self):
        """The generated file names the address of the Host field when the proxy listens there."""
        self.listen("127.0.0.1", 3128)
        transport = self.ask(self.pac_request())
        self.assertIn(b'"PROXY 127.0.0.1:3128"', transport.value())

    def test_address_of_connection(self):
        """A Host field naming anything else (a name, another port) is ignored: the connection's address is named."""
        self.listen("127.0.0.1", 3128)
        for host in (b"127.0.0.1:3129", b"evil.example:3128", b'"</script>'):
            peer = IPv6Address("TCP", "::1", 40000)
            local = IPv6Address("TCP", "::1", 8080)
            _, transport = connect(self.factory, peer, StringTransportWithDisconnection(local, peer))
            transport.protocol.dataReceived(self.pac_request(host=host))
            body = split_response(transport.value())[2]
            self.assertIn(b'"PROXY [::1]:8080"', body)
            self.assertNotIn(b"evil", body)

    def test_unix_socket(self):
        """A client of a Unix socket, with no file given, gets 404: there is no address to name."""
        self.factory.allow = self.factory.allow + self.factory.admin
        peer = UNIXAddress(None)
        _, transport = connect(self.factory, peer, StringTransportWithDisconnection(UNIXAddress(b"/run/p"), peer))
        transport.protocol.dataReceived(self.pac_request())
        self.assertTrue(transport.value().startswith(b"HTTP/1.1 404 "), transport.value())

    def test_file(self):
        """With --pac-file, the file is served, whatever the client's address."""
        path = FilePath(self.mktemp())
        path.setContent(PAC)
        self.factory.pac_file = PacFile(path.path)
        transport = self.ask(self.pac_request(b"/wpad.dat"), peer=OUTSIDER)
        self.assertEqual(split_response(transport.value())[2], PAC)

    def test_head(self):
        """HEAD gets the head of GET's answer and no body."""
        get = split_response(self.ask(self.pac_request()).value())
        head = split_response(self.ask(self.pac_request(method=b"HEAD")).value())
        self.assertEqual((head[0], head[1], head[2]), (get[0], get[1], b""))

    def test_other_methods(self):
        """Other methods get 405."""
        transport = self.ask(self.pac_request(method=b"POST", more=b"Content-Length: 0\r\n"), peer=OUTSIDER)
        self.assertTrue(transport.value().startswith(b"HTTP/1.1 405 "), transport.value())

    def test_body(self):
        """A GET with a body is refused."""
        transport = self.ask(self.pac_request(more=b"Content-Length: 3\r\n\r\nabc"), peer=OUTSIDER)
        self.assertTrue(transport.value().startswith(b"HTTP/1.1 400 "), transport.value())

    def test_loop(self):
        """A PAC request that already passed through netproxy is a loop, refused like every page."""
        transport = self.ask(self.pac_request(more=b"Via: 1.1 netproxy\r\n"))
        self.assertTrue(transport.value().startswith(b"HTTP/1.1 403 "), transport.value())
