"""
Tests for L{netproxy.http.cache.refresh_file}: files of operator freshness
rules, read at start and re-read on C{SIGHUP} without ever leaving a
half-read list in force.
"""

from pathlib import Path

from twisted.internet.testing import EventLoggingObserver
from twisted.logger import LogLevel, globalLogPublisher
from twisted.python.filepath import FilePath
from twisted.trial.unittest import SynchronousTestCase

from netproxy.http.cache.refresh import parse_rule
from netproxy.http.cache.refresh_file import RefreshPatterns, parse_rule_lines, read_rule_file

SHIPPED = Path(__file__).resolve().parents[3] / "contrib" / "refresh-patterns" / "packages.conf"


def texts(rules):
    return [rule.text for rule in rules]


class ParseRuleLinesTests(SynchronousTestCase):
    """
    L{parse_rule_lines} reads one rule a line, skipping blank lines and comments, and names the bad line.
    """

    def test_rules_and_comments(self):
        """Blank lines and comments (alone or after a rule) are skipped; spaces inside a rule are collapsed."""
        lines = ["# package caches", "", "   ", "/pool/   1 20%  60   # pool files", r"-i \.whl$ 1 0% 1 #",
                 "\t# indented"]
        self.assertEqual(texts(parse_rule_lines(lines, "f")), ["/pool/ 1 20% 60", r"-i \.whl$ 1 0% 1"])

    def test_hash_inside_a_word(self):
        """A # inside a word is the word's: it starts no comment, so a rule ending in one is still checked."""
        error = self.assertRaises(ValueError, parse_rule_lines, [r"x 1 20% 60#x"], "f")
        self.assertEqual(str(error), "f line 1: MAX must be a whole number of minutes, got '60#x'")
        [rule] = parse_rule_lines([r"[^#]+\.deb$ 1 20% 60"], "f")
        self.assertEqual(rule.text, r"[^#]+\.deb$ 1 20% 60")

    def test_bad_line(self):
        """The first bad line is refused, with where it is and what is wrong."""
        error = self.assertRaises(ValueError, parse_rule_lines, ["# ok", "x 1 20% 60", "(x 1 20% 60"], "rules.conf")
        self.assertTrue(str(error).startswith("rules.conf line 3: bad regular expression '(x'"), str(error))

    def test_quoted_rule(self):
        """Quotes are not stripped: a rule copied from a shell command line is refused, not half-read."""
        error = self.assertRaises(ValueError, parse_rule_lines, ["'x 1 20% 60'"], "f")
        self.assertEqual(str(error), "f line 1: MAX must be a whole number of minutes, got \"60'\"")

    def test_hostile(self):
        """A line of many words or a huge number is refused naming the line; an empty input has no rules."""
        self.assertEqual(parse_rule_lines([], "f"), ())
        error = self.assertRaises(ValueError, parse_rule_lines, ["", "x " * 10000], "f")
        self.assertTrue(str(error).startswith("f line 2: expected 'REGEX MIN PERCENT MAX'"), str(error)[:80])
        error = self.assertRaises(ValueError, parse_rule_lines, ["x 1 20% " + "9" * 5000], "f")
        self.assertTrue(str(error).startswith("f line 1: MAX must be a whole number of minutes"), str(error)[:80])


class ReadRuleFileTests(SynchronousTestCase):
    """
    L{read_rule_file} reads a file as every operator's file is read.
    """

    def write(self, content):
        path = FilePath(self.mktemp())
        path.setContent(content)
        return path

    def test_read(self):
        """A file's rules are read in order, from a FilePath or a str path, with CRLF or a byte order mark."""
        path = self.write(b"\xef\xbb\xbf# c\r\n/pool/ 1 20% 60\r\n\r\n\\.whl$ 2 0% 2\n")
        self.assertEqual(texts(read_rule_file(path)), ["/pool/ 1 20% 60", r"\.whl$ 2 0% 2"])
        self.assertEqual(texts(read_rule_file(path.path)), ["/pool/ 1 20% 60", r"\.whl$ 2 0% 2"])

    def test_line_numbers_count_newlines_only(self):
        """A form feed does not shift the line numbers from an editor's."""
        path = self.write(b"# a\x0cb\nx 1 2% never\n")
        error = self.assertRaises(ValueError, read_rule_file, path)
        self.assertEqual(str(error), f"{path.path} line 2: MAX must be a whole number of minutes, got 'never'")

    def test_missing(self):
        """A missing file is refused naming it."""
        path = FilePath(self.mktemp())
        error = self.assertRaises(ValueError, read_rule_file, path)
        self.assertTrue(str(error).startswith(f"cannot read refresh patterns file {path.path}: "), str(error))

    def test_not_utf8(self):
        """A file that is not UTF-8 is refused naming the line."""
        path = self.write(b"/pool/ 1 20% 60\n\xff 1 20% 60\n")
        error = self.assertRaises(ValueError, read_rule_file, path)
        self.assertTrue(str(error).startswith(f"{path.path} line 2: not UTF-8 text"), str(error))

    def test_shipped(self):
        """The shipped rules for package caches read: pool files, by-hash files, wheels, then index files."""
        rules = read_rule_file(str(SHIPPED))
        self.assertEqual([rule.minimum for rule in rules], [129600 * 60.0] * 3 + [0.0])
        self.assertTrue(rules[0].pattern.search("http://deb.example/debian/pool/main/h/hello/hello_2.10-3_amd64.deb"))
        self.assertTrue(rules[1].pattern.search("http://deb.example/debian/dists/x/main/by-hash/SHA256/00"))
        self.assertTrue(rules[2].pattern.search("http://pypi.example/packages/attrs-23.2.0-py3-none-any.whl"))
        self.assertTrue(rules[3].pattern.search("http://deb.example/debian/dists/stable/InRelease"))


class RefreshPatternsTests(SynchronousTestCase):
    """
    L{RefreshPatterns}: fixed rules, then a file's, reloaded at once or not at all.
    """

    def setUp(self):
        self.events = EventLoggingObserver.createWithCleanup(self, globalLogPublisher)
        self.path = FilePath(self.mktemp())
        self.fixed = [parse_rule("/fixed/ 1 20% 60")]

    def test_no_file(self):
        """Without a file the fixed rules are in force, and reloading changes nothing and logs nothing."""
        patterns = RefreshPatterns(self.fixed)
        self.assertEqual(texts(patterns.rules), ["/fixed/ 1 20% 60"])
        self.assertTrue(patterns.reload())
        self.assertEqual(texts(patterns.rules), ["/fixed/ 1 20% 60"])
        self.assertEqual((len(self.events), patterns.name), (0, None))
        self.assertEqual(RefreshPatterns().rules, ())

    def test_fixed_first(self):
        """The fixed rules come before the file's."""
        self.path.setContent(b"/file/ 2 0% 2\n")
        self.assertEqual(texts(RefreshPatterns(self.fixed, self.path).rules), ["/fixed/ 1 20% 60", "/file/ 2 0% 2"])

    def test_bad_file_at_start(self):
        """A bad file stops construction, naming the line."""
        self.path.setContent(b"/file/ 2 0%\n")
        error = self.assertRaises(ValueError, RefreshPatterns, self.fixed, self.path.path)
        self.assertTrue(str(error).startswith(f"{self.path.path} line 1: expected"), str(error))

    def test_reload(self):
        """A reload puts the rewritten file's rules in force, and logs how many."""
        self.path.setContent(b"/file/ 2 0% 2\n")
        patterns = RefreshPatterns(self.fixed, self.path.path)
        self.path.setContent(b"/a/ 1 0% 1\n/b/ 1 0% 1\n")
        self.assertTrue(patterns.reload())
        self.assertEqual(texts(patterns.rules), ["/fixed/ 1 20% 60", "/a/ 1 0% 1", "/b/ 1 0% 1"])
        [event] = self.events
        self.assertEqual((event["log_level"], event["count"], event["path"]), (LogLevel.info, 2, self.path.path))

    def test_reload_refuses_bad_file(self):
        """A bad or missing file on reload is logged as an error and the rules in force stay, the very same tuple."""
        self.path.setContent(b"/file/ 2 0% 2\n")
        patterns = RefreshPatterns(self.fixed, self.path)
        before = patterns.rules
        self.path.setContent(b"/ok/ 1 0% 1\n(bad 1 0% 1\n")
        self.assertFalse(patterns.reload())
        self.path.remove()
        self.assertFalse(patterns.reload())
        self.assertIs(patterns.rules, before)
        first, second = self.events
        self.assertEqual((first["log_level"], first["count"]), (LogLevel.error, 2))
        self.assertTrue(first["reason"].startswith(f"{self.path.path} line 2: bad regular expression"),
                        first["reason"])
        self.assertIn("cannot read refresh patterns file", second["reason"])
