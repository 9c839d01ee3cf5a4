"""
Tests for L{netproxy.http.access_log}: Combined Log Format lines with the
cache status and time taken, on a publisher of their own.
"""

import io

from twisted.trial.unittest import SynchronousTestCase

from netproxy.http.access_log import AccessLog, access_log_observer, format_access_line
from netproxy.http.head import RequestHead

EVENT = {
    "log_time": 1795280920.0, "client": "127.0.0.1", "method": b"GET", "url": b"http://example.com/a?b=1",
    "version": (1, 1), "status": 200, "size": 1234, "referer": b"http://example.com/",
    "user_agent": b'curl/8.0 "quoted"', "cache": "MISS", "seconds": 0.0256,
}


class FormatTests(SynchronousTestCase):
    def test_combined_log_format(self):
        """A line is Combined Log Format followed by cache status and seconds taken."""
        self.assertEqual(
            format_access_line(EVENT),
            '127.0.0.1 - - [21/Nov/2026:17:08:40 +0000] "GET http://example.com/a?b=1 HTTP/1.1" 200 1234 '
            '"http://example.com/" "curl/8.0 \\"quoted\\"" MISS 0.026\n')

    def test_missing_fields_are_dashes(self):
        """No referer, user agent or status is written as '-'."""
        line = format_access_line({**EVENT, "referer": None, "user_agent": None, "status": None})
        self.assertIn('" - 1234 "-" "-" MISS', line)

    def test_control_and_non_ascii_escaped(self):
        """A User-Agent with ESC and 0xff, and a URL with a newline, are written as \\xhh on one line."""
        line = format_access_line({**EVENT, "user_agent": b"evil\x1b[2J\xff", "url": b"http://a/\r\nforged",
                                   "user": "b\xe9b", "referer": b"back\\slash"})
        self.assertIn('"evil\\x1b[2J\\xff"', line)
        self.assertIn('"GET http://a/\\x0d\\x0aforged HTTP/1.1"', line)
        self.assertIn(" - b\\xe9b [", line)
        self.assertIn('"back\\\\slash"', line)
        self.assertEqual(line.count("\n"), 1)
        self.assertTrue(line[:-1].isascii() and line[:-1].isprintable(), line)

    def test_every_byte_escaped(self):
        """No byte a client can send survives unescaped in a quoted field."""
        line = format_access_line({**EVENT, "user_agent": bytes(range(256))})
        self.assertTrue(line[:-1].isascii() and line[:-1].isprintable(), line)
        self.assertIn('\\x1f !\\"#', line)



HEAD = RequestHead(b"GET", b"http://example.com/a?b=1", (1, 1),
                   [(b"Referer", b"http://example.com/"), (b"User-Agent", b'curl/8.0 "quoted"')])


def report(access_log):
    access_log.finished("127.0.0.1", HEAD, 200, 1234, 0.0256, "MISS")


class AccessLogTests(SynchronousTestCase):
    def test_disabled_without_observer(self):
        """With no observer the log is disabled and reporting does nothing."""
        access_log = AccessLog()
        self.assertFalse(access_log.enabled)
        report(access_log)

    def test_lines_written(self):
        """An observer on a stream gets one formatted line per request."""
        stream = io.StringIO()
        access_log = AccessLog()
        access_log.add_observer(access_log_observer(stream))
        report(access_log)
        self.assertRegex(stream.getvalue(), r'^127\.0\.0\.1 - - \[[^]]+\] "GET http://example\.com/a\?b=1 HTTP/1\.1" '
                                            r'200 1234 "http://example\.com/" "curl/8\.0 \\"quoted\\"" MISS 0\.026\n$')
