"""
Tests for L{netproxy.http.access_log}: Combined Log Format lines with the
cache status and time taken, on a publisher of their own.
"""

import io
import os
import shutil
import tempfile

from twisted.trial.unittest import SynchronousTestCase

from netproxy import appending_file
from netproxy.http.access_log import AccessLog, AppendingFile, access_log_observer, format_access_line, open_access_log
from netproxy.http.head import RequestHead
from netproxy.worker_options import Worker

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


class WorkerFieldTests(SynchronousTestCase):
    """
    With several workers each line names the one that served.
    """

    def lines(self, worker):
        stream = io.StringIO()
        access_log = AccessLog()
        access_log.worker = worker
        access_log.add_observer(access_log_observer(stream))
        report(access_log)
        return stream.getvalue()

    def test_worker_named(self):
        """
        Worker 1 of 2 ends its lines with worker=1.
        """
        worker = Worker(1, 2, ((4, "INET"),), (0, 3), "/run/netproxy-workers-test")
        self.assertTrue(self.lines(worker).endswith(" MISS 0.026 worker=1\n"))

    def test_one_process_unchanged(self):
        """
        No worker (or a worker alone) writes the line as one process always did.
        """
        self.assertTrue(self.lines(None).endswith(" MISS 0.026\n"))
        worker = Worker(0, 1, ((4, "INET"),), (0, 3), "/run/netproxy-workers-test")
        self.assertTrue(self.lines(worker).endswith(" MISS 0.026\n"))


class AppendingFileTests(SynchronousTestCase):
    """
    The access log file is appended one whole line per write.
    """

    def setUp(self):
        directory = tempfile.mkdtemp()
        self.addCleanup(shutil.rmtree, directory)
        self.path = os.path.join(directory, "access.log")

    def test_two_writers_append(self):
        """
        Two processes' files on one path (two descriptors) both append: no line overwrites another.
        """
        first, second = AppendingFile(self.path), AppendingFile(self.path)
        self.addCleanup(first.close)
        self.addCleanup(second.close)
        first.write("one\n")
        second.write("two\n")
        first.write("three\n")
        with open(self.path, encoding="utf-8") as log:
            self.assertEqual(log.read(), "one\ntwo\nthree\n")

    def test_one_write_per_line(self):
        """
        A line is one os.write call; one cut short is finished by another.
        """
        calls = []
        real_write = os.write

        def short_write(descriptor, data):
            calls.append(bytes(data))
            return real_write(descriptor, data[:max(1, len(data) // 2)] if len(calls) == 2 else data)

        appending = AppendingFile(self.path)
        self.addCleanup(appending.close)
        self.patch(appending_file.os, "write", short_write)
        appending.write("first line\n")
        appending.write("second\n")
        self.assertEqual(calls, [b"first line\n", b"second\n", b"ond\n"])
        with open(self.path, encoding="utf-8") as log:
            self.assertEqual(log.read(), "first line\nsecond\n")

    def test_open_access_log(self):
        """
        open_access_log on a path writes lines there through an AppendingFile.
        """
        observer = open_access_log(self.path)
        access_log = AccessLog()
        access_log.add_observer(observer)
        report(access_log)
        with open(self.path, encoding="utf-8") as log:
            self.assertIn('"GET http://example.com/a?b=1 HTTP/1.1" 200', log.read())

    def test_unopenable(self):
        """
        A path that cannot be opened raises OSError, as before.
        """
        self.assertRaises(OSError, AppendingFile, os.path.join(self.path, "no", "such"))
