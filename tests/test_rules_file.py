"""
Tests for L{netproxy.rules_file}: rules files read from disk and reloaded
without ever leaving a half-read list in force.
"""

from twisted.internet.testing import EventLoggingObserver
from twisted.logger import LogLevel, globalLogPublisher
from twisted.python.filepath import FilePath
from twisted.trial.unittest import SynchronousTestCase

from netproxy.acl import RuleSet
from netproxy.errors import RuleError
from netproxy.rules_file import RulesFile, read_rules_file


class ReadRulesFileTests(SynchronousTestCase):
    """
    Reading rules files.
    """

    def write(self, content):
        path = FilePath(self.mktemp())
        path.setContent(content)
        return path

    def test_read(self):
        """A file's rules are read, from a FilePath or a str path."""
        path = self.write(b"# comment\n10.0.0.0/8\r\n\n*.example.com # web\n")
        expected = RuleSet.from_lines(["10.0.0.0/8", "*.example.com"])
        self.assertEqual(read_rules_file(path), expected)
        self.assertEqual(read_rules_file(path.path), expected)

    def test_byte_order_mark(self):
        """A UTF-8 byte order mark at the start is ignored."""
        self.assertEqual(read_rules_file(self.write(b"\xef\xbb\xbfb\xc3\xbccher.example\n")),
                         RuleSet.from_lines(["xn--bcher-kva.example"]))

    def test_empty_file(self):
        """An empty file is an empty set."""
        self.assertEqual(read_rules_file(self.write(b"")), RuleSet())

    def test_bad_line(self):
        """A bad line names the file and the line number."""
        path = self.write(b"10.0.0.1\n# c\n\n10.0.0.0/33\n")
        error = self.assertRaises(RuleError, read_rules_file, path)
        self.assertTrue(str(error).startswith(f"{path.path} line 4: bad rule '10.0.0.0/33': "), str(error))

    def test_line_numbers_count_newlines_only(self):
        """Form feeds and other Unicode line breaks do not shift line numbers."""
        error = self.assertRaises(RuleError, read_rules_file, self.write(b"a.example\x0c\n\xe2\x80\xa8\nx y\n"))
        self.assertIn(" line 3: ", str(error))

    def test_missing(self):
        """A missing file raises RuleError naming it."""
        path = FilePath(self.mktemp())
        error = self.assertRaises(RuleError, read_rules_file, path)
        self.assertIn(path.path, str(error))
        self.assertIn("cannot read", str(error))

    def test_directory(self):
        """A directory raises RuleError naming it."""
        path = FilePath(self.mktemp())
        path.makedirs()
        error = self.assertRaises(RuleError, read_rules_file, path)
        self.assertIn(path.path, str(error))

    def test_not_utf8(self):
        """Bytes that are not UTF-8 raise RuleError naming the file and line."""
        path = self.write(b"10.0.0.1\nexample.com\n\xff\xfe\n")
        error = self.assertRaises(RuleError, read_rules_file, path)
        self.assertIn(f"{path.path} line 3: not UTF-8", str(error))


class RulesFileTests(SynchronousTestCase):
    """
    Fixed rules plus a reloadable file.
    """

    def setUp(self):
        self.events = EventLoggingObserver.createWithCleanup(self, globalLogPublisher)
        self.path = FilePath(self.mktemp())
        self.fixed = RuleSet.from_lines(["*:25"])

    def texts(self, rules_file):
        return [str(rule) for rule in rules_file.rules]

    def test_no_file(self):
        """Without a file the fixed rules are in force and reload does nothing."""
        rules_file = RulesFile(self.fixed)
        self.assertEqual(rules_file.rules, self.fixed)
        self.assertTrue(rules_file.reload())
        self.assertEqual(rules_file.rules, self.fixed)
        self.assertEqual(len(self.events), 0)

    def test_defaults(self):
        """With no arguments there are no rules and nothing matches."""
        rules_file = RulesFile()
        self.assertFalse(rules_file.rules)
        self.assertIsNone(rules_file.match("10.0.0.1", 80))

    def test_reads_at_construction(self):
        """The file is read at construction, after the fixed rules."""
        self.path.setContent(b"10.0.0.0/8\n")
        rules_file = RulesFile(self.fixed, self.path.path)
        self.assertEqual(self.texts(rules_file), ["*:25", "10.0.0.0/8"])
        self.assertEqual(str(rules_file.match("10.1.1.1", 25)), "*:25")
        self.assertEqual(str(rules_file.match("10.1.1.1", 80)), "10.0.0.0/8")
        self.assertIsNone(rules_file.match("11.1.1.1", 80))

    def test_bad_file_at_construction(self):
        """A bad or missing file at construction raises RuleError."""
        self.assertRaises(RuleError, RulesFile, self.fixed, self.path)
        self.path.setContent(b"*:0\n")
        error = self.assertRaises(RuleError, RulesFile, self.fixed, self.path)
        self.assertIn(f"{self.path.path} line 1", str(error))

    def test_reload_picks_up_change(self):
        """A good file is reloaded, logged at info, and the new rules are in force."""
        self.path.setContent(b"10.0.0.0/8\n")
        rules_file = RulesFile(self.fixed, self.path)
        self.path.setContent(b"# new\nexample.com\n*.example.com\n")
        self.assertTrue(rules_file.reload())
        self.assertEqual(self.texts(rules_file), ["*:25", "example.com", "*.example.com"])
        self.assertIsNone(rules_file.match("10.0.0.1", 80))
        self.assertEqual(str(rules_file.match("www.example.com", 80)), "*.example.com")
        [event] = self.events
        self.assertEqual(event["log_level"], LogLevel.info)
        self.assertEqual(event["log_format"], "reloaded {count} rules from {path}")
        self.assertEqual((event["count"], event["path"]), (2, self.path.path))
        self.assertEqual(event["log_namespace"], "netproxy.rules_file.RulesFile")

    def test_reload_refuses_bad_file(self):
        """A bad file is refused with a logged error and the old rules stay in force."""
        self.path.setContent(b"10.0.0.0/8\n")
        rules_file = RulesFile(self.fixed, self.path)
        before = rules_file.rules
        self.path.setContent(b"example.com\n*:70000\n")
        self.assertFalse(rules_file.reload())
        self.assertIs(rules_file.rules, before)
        self.assertEqual(str(rules_file.match("10.0.0.1", 80)), "10.0.0.0/8")
        [event] = self.events
        self.assertEqual(event["log_level"], LogLevel.error)
        self.assertEqual(
            event["log_format"], "refused to reload {path}: {reason}; keeping the {count} rules in force"
        )
        self.assertEqual((event["path"], event["count"]), (self.path.path, 2))
        self.assertIn(f"{self.path.path} line 2: bad rule '*:70000'", event["reason"])

    def test_reload_refuses_missing_file(self):
        """A file gone at reload time is refused and the old rules stay in force."""
        self.path.setContent(b"10.0.0.0/8\n")
        rules_file = RulesFile(self.fixed, self.path)
        self.path.remove()
        self.assertFalse(rules_file.reload())
        self.assertEqual(self.texts(rules_file), ["*:25", "10.0.0.0/8"])
        [event] = self.events
        self.assertEqual(event["log_level"], LogLevel.error)
        self.assertIn("cannot read", event["reason"])

    def test_fixed_rules_kept(self):
        """The fixed rules stay first through good, bad and empty reloads."""
        self.path.setContent(b"a.example\n")
        rules_file = RulesFile(self.fixed, self.path)
        for content, ok in [(b"b.example\n", True), (b"bad rule\n", False), (b"", True)]:
            self.path.setContent(content)
            self.assertEqual(rules_file.reload(), ok)
            self.assertEqual(list(rules_file.rules)[:1], list(self.fixed))
        self.assertEqual(rules_file.rules, self.fixed)
        self.assertEqual(str(rules_file.match("anything.example", 25)), "*:25")
