"""
Tests for L{netproxy.escaping}: wire bytes escaped as C{\\xhh} before they
reach a log, and the L{Logger} that escapes every field of its events.
"""

import ast
from pathlib import Path

from twisted.internet.testing import EventLoggingObserver
from twisted.logger import LogLevel, LogPublisher, formatEvent
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase

import netproxy
from netproxy.escaping import Logger, escape, escape_field


class EscapeTests(SynchronousTestCase):
    """
    L{escape} writes control characters and non-ASCII bytes as C{\\xhh}.
    """

    def test_printable_ascii_unchanged(self):
        """Printable ASCII text comes back as the same object."""
        text = 'GET http://example.com/?a=1 "curl/8.0"'
        self.assertIs(escape(text), text)

    def test_control_characters(self):
        """ESC, NUL, CR, LF, TAB and DEL become \\xhh."""
        self.assertEqual(escape("a\x1b[31mb\x00\r\n\t\x7f"), "a\\x1b[31mb\\x00\\x0d\\x0a\\x09\\x7f")

    def test_bytes(self):
        """Bytes are escaped byte by byte: 0xff is \\xff, UTF-8 shows its bytes."""
        self.assertEqual(escape(b"\xff\x1bok"), "\\xff\\x1bok")
        self.assertEqual(escape("reçu".encode()), "re\\xc3\\xa7u")

    def test_bytearray_and_memoryview(self):
        """Byte buffers of other kinds are escaped as bytes are."""
        self.assertEqual(escape(bytearray(b"a\xff")), "a\\xff")
        self.assertEqual(escape(memoryview(b"a\n")), "a\\x0a")

    def test_latin1_text(self):
        """Text decoded as latin-1 (one character per wire byte) gives each byte back as \\xhh."""
        self.assertEqual(escape(b"\x85\xa0\xff".decode("latin-1")), "\\x85\\xa0\\xff")

    def test_wide_characters(self):
        """Characters above U+00FF become \\uhhhh or \\Uhhhhhhhh."""
        self.assertEqual(escape("\u2028x\U0001f600"), "\\u2028x\\U0001f600")

    def test_backslash_doubled(self):
        """A peer's own backslash is doubled, so its text '\\x1b' cannot pass for an escape."""
        self.assertEqual(escape("\\x1b"), "\\\\x1b")
        self.assertNotEqual(escape("\\x1b"), escape("\x1b"))

    def test_result_is_printable_ascii(self):
        """Whatever comes in, what goes out is printable ASCII on one line."""
        every = bytes(range(256))
        for value in (every, every.decode("latin-1"), "\ud800\U0010ffff\u0085"):
            result = escape(value)
            self.assertTrue(result.isascii() and result.isprintable(), result)


class EscapeFieldTests(SynchronousTestCase):
    """
    L{escape_field} escapes what may carry a peer's text and leaves the rest.
    """

    def test_text_and_bytes(self):
        """Text and bytes are escaped."""
        self.assertEqual(escape_field("a\nb"), "a\\x0ab")
        self.assertEqual(escape_field(b"\xff"), "\\xff")

    def test_exception(self):
        """An exception becomes its escaped message."""
        self.assertEqual(escape_field(ValueError("bad \x1b")), "bad \\x1b")

    def test_other_values_kept(self):
        """Numbers, None and other objects are kept as they are."""
        marker = object()
        for value in (1, 2.5, None, True, marker, (1, 2)):
            self.assertIs(escape_field(value), value)


class LoggerTests(SynchronousTestCase):
    """
    L{Logger} escapes the fields of every event it emits.
    """

    def setUp(self):
        self.publisher = LogPublisher()
        self.events = EventLoggingObserver()
        self.publisher.addObserver(self.events)
        self.log = Logger(namespace="netproxy.test", observer=self.publisher)

    def test_fields_escaped(self):
        """A payload with ESC, a newline and 0xff is logged escaped, on one line."""
        self.log.info("payload: {payload} from {peer}", payload=b"x\x1b[2J\n\xff", peer="127.0.0.1:1")
        [event] = self.events
        self.assertEqual(formatEvent(event), "payload: x\\x1b[2J\\x0a\\xff from 127.0.0.1:1")
        self.assertEqual(event["payload"], "x\\x1b[2J\\x0a\\xff")

    def test_numbers_kept(self):
        """Numeric fields stay numbers."""
        self.log.warn("{size} bytes", size=12)
        self.assertEqual(self.events[0]["size"], 12)
        self.assertEqual(self.events[0]["log_level"], LogLevel.warn)

    def test_failure_kept(self):
        """log.failure still carries the Failure, and its fields are escaped."""
        try:
            1 / 0
        except ZeroDivisionError:
            self.log.failure("relaying for {peer} failed", peer="a\nb")
        [event] = self.events
        self.assertIsInstance(event["log_failure"], Failure)
        self.assertEqual(event["peer"], "a\\x0ab")

    def test_event_as_twisted_builds_it(self):
        """The event carries what Twisted's Logger puts in one: logger, level, namespace, source, format, time."""
        self.log.info("x {n}", n=1)
        [event] = self.events
        self.assertEqual({key: event[key] for key in ("log_logger", "log_level", "log_namespace", "log_source",
                                                        "log_format", "n")},
                         {"log_logger": self.log, "log_level": LogLevel.info, "log_namespace": "netproxy.test",
                          "log_source": None, "log_format": "x {n}", "n": 1})
        self.assertIsInstance(event["log_time"], float)

    def test_clean_text_kept(self):
        """Printable ASCII fields are passed as they are; a backslash is still doubled."""
        text = "127.0.0.1:5555 PP_1"
        self.log.info("{a} {b}", a=text, b="a\\b")
        self.assertIs(self.events[0]["a"], text)
        self.assertEqual(self.events[0]["b"], "a\\\\b")

    def test_text_subclass_escaped(self):
        """A str subclass with a control character is escaped too."""

        class Text(str):
            pass

        self.log.info("{a}", a=Text("x\x1b"))
        self.assertEqual(self.events[0]["a"], "x\\x1b")

    def test_invalid_level(self):
        """An unknown level is reported as Twisted reports it, as a critical failure event."""
        self.log.emit("loud", "x {a}", a="b")
        [event] = self.events
        self.assertEqual(event["log_level"], LogLevel.critical)
        self.assertEqual(event["invalidLevel"], "loud")
        self.flushLoggedErrors()

    def test_trace(self):
        """log_trace records this logger and its observer, as Twisted's does."""
        trace = []
        self.log.info("x", log_trace=trace)
        self.assertEqual(trace[0], (self.log, self.publisher))

    def test_namespace_from_class(self):
        """As a class attribute it takes the class's namespace, as Twisted's Logger does."""

        class Role:
            log = Logger(observer=self.publisher)

        Role().log.info("x")
        self.assertEqual(self.events[0]["log_namespace"], f"{__name__}.Role")
        self.assertIsInstance(Role.log, Logger)


class EveryModuleTests(SynchronousTestCase):
    """
    netproxy's modules log through L{netproxy.escaping.Logger}.
    """

    def test_no_twisted_logger(self):
        """No module but netproxy.escaping imports twisted.logger's Logger (the access logs escape their own)."""
        root = Path(netproxy.__file__).parent
        exempt = {root / "escaping.py", root / "access_events.py"}
        offenders = []
        for path in sorted(root.rglob("*.py")):
            if path in exempt:
                continue
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
                if isinstance(node, ast.ImportFrom) and node.module == "twisted.logger":
                    if any(alias.name == "Logger" for alias in node.names):
                        offenders.append(str(path.relative_to(root)))
        self.assertEqual(offenders, [])
