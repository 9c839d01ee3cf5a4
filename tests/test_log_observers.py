"""
Tests for L{netproxy.log_observers}: the JSON-lines and journal observers that
C{twistd --logger} installs.
"""

import io
import json
import sys
from datetime import datetime

from twisted.logger import (
    ILogObserver,
    LegacyLogObserverWrapper,
    Logger,
    LoggingFile,
    LogLevel,
    LogPublisher,
    globalLogPublisher,
)
from twisted.python import log as legacy_log
from twisted.trial.unittest import SynchronousTestCase

import netproxy.log_observers
from netproxy.escaping import Logger as EscapingLogger
from netproxy.log_observers import (
    JournalObserver,
    JSONLineObserver,
    event_record,
    journal_observer,
    json_observer,
)


def strict_loads(line):
    """
    Parse a line as strict JSON (no NaN or Infinity) holding an object.
    """

    def refuse(constant):
        raise ValueError(f"not JSON: {constant}")

    record = json.loads(line, parse_constant=refuse)
    if not isinstance(record, dict):
        raise ValueError(f"not a JSON object: {line!r}")
    return record


class Unrepresentable:
    """
    An object whose repr raises.
    """

    def __repr__(self):
        raise RuntimeError("no repr for you")


class JSONTestCase(SynchronousTestCase):
    """
    A L{JSONLineObserver} on a text stream, behind a L{Logger}.
    """

    def setUp(self):
        self.stream = io.StringIO()
        self.observer = JSONLineObserver(self.stream)
        self.log = Logger(namespace="netproxy.test", observer=self.observer)

    def lines(self):
        """
        :returns: the lines written, each checked to end with a newline.
        """
        text = self.stream.getvalue()
        self.assertTrue(text.endswith("\n"), text)
        return text[:-1].split("\n")

    def records(self):
        """
        :returns: every line written, parsed as strict JSON.
        """
        return [strict_loads(line) for line in self.lines()]

    def record(self):
        """
        :returns: the only record written.
        """
        [record] = self.records()
        return record


class ShapeTests(JSONTestCase):
    """
    Each event is one JSON object with a fixed set of keys in a fixed order.
    """

    def test_info(self):
        """An info event gives time, level, namespace, message, format and fields, in that order."""
        self.log.info("received {text!r} from {peer}", text="tgmr", peer="127.0.0.1:53211", size=4)
        record = self.record()
        self.assertEqual(list(record), ["time", "level", "namespace", "message", "format", "fields"])
        self.assertEqual(record["level"], "info")
        self.assertEqual(record["namespace"], "netproxy.test")
        self.assertEqual(record["message"], "received 'tgmr' from 127.0.0.1:53211")
        self.assertEqual(record["format"], "received {text!r} from {peer}")
        self.assertEqual(record["fields"], {"text": "tgmr", "peer": "127.0.0.1:53211", "size": 4})

    def test_field_order(self):
        """Fields keep the order in which they were given to the log call."""
        self.log.info("x", zulu=1, alpha=2, mike=3)
        self.assertEqual(list(self.record()["fields"]), ["zulu", "alpha", "mike"])

    def test_levels(self):
        """Every level is written under Twisted's name for it."""
        self.log.debug("d")
        self.log.info("i")
        self.log.warn("w")
        self.log.error("e")
        self.log.critical("c")
        self.assertEqual([r["level"] for r in self.records()], ["debug", "info", "warn", "error", "critical"])

    def test_warn_and_error_fields(self):
        """Warnings and errors carry their fields like info events do."""
        self.log.warn("bad message from {peer}: {reason}", peer="127.0.0.1:1", reason="not JSON")
        self.log.error("could not connect to {destination}", destination="127.0.0.1:9")
        warn, error = self.records()
        self.assertEqual((warn["level"], warn["fields"]), ("warn", {"peer": "127.0.0.1:1", "reason": "not JSON"}))
        self.assertEqual((error["level"], error["fields"]), ("error", {"destination": "127.0.0.1:9"}))
        self.assertEqual(error["message"], "could not connect to 127.0.0.1:9")

    def test_no_twisted_keys_in_fields(self):
        """Twisted's own log_* keys (logger, source, level, time...) are not reported as fields."""
        self.log.info("x {a}", a=1)
        self.assertEqual(self.record()["fields"], {"a": 1})

    def test_time(self):
        """The time is the event's, in ISO 8601 UTC to the microsecond."""
        self.observer({"log_time": 1700000000.25, "log_level": LogLevel.info, "log_format": "x",
                       "log_namespace": "n"})
        self.assertEqual(self.record()["time"], "2023-11-14T22:13:20.250000Z")

    def test_time_is_now_by_default(self):
        """An event without a usable time is stamped with the time it is written."""
        before = datetime.now().astimezone()
        self.observer({"log_time": "yesterday", "log_format": "x"})
        stamp = datetime.fromisoformat(self.record()["time"])
        self.assertLessEqual(abs((stamp - before).total_seconds()), 60)

    def test_time_out_of_range(self):
        """A time beyond what datetime can show is replaced by the time of writing, the event kept."""
        self.observer({"log_time": 1e300, "log_level": LogLevel.info, "log_format": "x {a}", "a": 1})
        record = self.record()
        self.assertEqual((record["message"], record["fields"]), ("x 1", {"a": 1}))
        stamp = datetime.fromisoformat(record["time"])
        self.assertLessEqual(abs((stamp - datetime.now().astimezone()).total_seconds()), 60)

    def test_one_line_per_event(self):
        """Newlines in messages and fields are escaped: N events make exactly N lines."""
        self.log.info("first {text}", text="two\nlines")
        self.log.info("second\nevent")
        self.log.info("third\r\n")
        records = self.records()
        self.assertEqual([r["message"] for r in records], ["first two\nlines", "second\nevent", "third\r\n"])
        self.assertEqual(records[0]["fields"], {"text": "two\nlines"})

    def test_flushed(self):
        """Each line is flushed as it is written, so a pipe reader sees it at once."""
        flushes = []
        self.patch(self.stream, "flush", lambda: flushes.append(self.stream.getvalue().count("\n")))
        self.log.info("one")
        self.log.info("two")
        self.assertEqual(flushes, [1, 2])

    def test_no_format(self):
        """An event with no format has an empty message and a null format."""
        self.observer({"log_time": 0.0, "log_level": LogLevel.info, "a": 1})
        record = self.record()
        self.assertEqual((record["message"], record["format"], record["fields"]), ("", None, {"a": 1}))

    def test_key_named_like_ours(self):
        """A field named like one of the record's keys stays apart, under fields."""
        self.log.info("{time} {text}", time="soon", text="t", namespace="n", fields="f")
        record = self.record()
        self.assertEqual((record["namespace"], record["message"]), ("netproxy.test", "soon t"))
        self.assertRegex(record["time"], r"^\d{4}-")
        self.assertEqual(record["fields"], {"time": "soon", "text": "t", "namespace": "n", "fields": "f"})


class ValueTests(JSONTestCase):
    """
    Field values become JSON values: bytes as latin-1 text, anything else
    that JSON has no value for as its repr.
    """

    def test_bytes(self):
        """Bytes are decoded as latin-1, so every byte is one character and none is lost."""
        self.log.info("x", data=b"\xe9t\xe9 \x00\xff", buffer=bytearray(b"ab"), view=memoryview(b"cd"))
        fields = self.record()["fields"]
        self.assertEqual(fields, {"data": "\xe9t\xe9 \x00\xff", "buffer": "ab", "view": "cd"})
        self.assertEqual(fields["data"].encode("latin-1"), b"\xe9t\xe9 \x00\xff")

    def test_bytes_in_message(self):
        """The message is formatted from the original values, as twistd's text log shows it."""
        self.log.info("received {data!r}", data=b"tgmr")
        self.assertEqual(self.record()["message"], "received b'tgmr'")

    def test_json_values(self):
        """Numbers, booleans, None, lists and objects are written as themselves."""
        self.log.info("x", n=3, f=0.25, t=True, none=None, items=[1, "a"], mapping={"k": [1, 2]})
        self.assertEqual(self.record()["fields"],
                         {"n": 3, "f": 0.25, "t": True, "none": None, "items": [1, "a"], "mapping": {"k": [1, 2]}})

    def test_nested(self):
        """Tuples become lists, and bytes inside containers are decoded too."""
        self.log.info("x", peer=("127.0.0.1", 53211), headers={b"Host": [b"example.com"]})
        self.assertEqual(self.record()["fields"],
                         {"peer": ["127.0.0.1", 53211], "headers": {"Host": ["example.com"]}})

    def test_sets(self):
        """Sets become sorted lists."""
        self.log.info("x", ports={443, 80, 8080})
        self.assertEqual(self.record()["fields"], {"ports": [80, 443, 8080]})

    def test_unserialisable(self):
        """An object JSON cannot hold is written as its repr."""

        class Server:
            def __repr__(self):
                return "<Server 100>"

        self.log.info("x", server=Server(), error=ValueError("bad"))
        self.assertEqual(self.record()["fields"], {"server": "<Server 100>", "error": "ValueError('bad')"})

    def test_repr_raises(self):
        """An object whose repr raises is described instead, and the event is still written."""
        self.log.info("x {a}", a=1, odd=Unrepresentable())
        record = self.record()
        self.assertEqual(record["fields"]["a"], 1)
        self.assertEqual(record["fields"]["odd"], "<unrepresentable Unrepresentable: repr raised RuntimeError>")

    def test_non_finite_floats(self):
        """NaN and infinities, which strict JSON has no value for, are written as text."""
        self.log.info("x", nan=float("nan"), inf=float("inf"), ninf=-float("inf"))
        self.assertEqual(self.record()["fields"], {"nan": "nan", "inf": "inf", "ninf": "-inf"})

    def test_non_text_keys(self):
        """Mapping keys JSON cannot hold become text: bytes decoded, others by repr."""
        self.log.info("x", mapping={b"k": 1, ("a", 1): 2, 3: 4})
        self.assertEqual(self.record()["fields"], {"mapping": {"k": 1, "('a', 1)": 2, "3": 4}})

    def test_circular(self):
        """A structure holding itself ends in its repr instead of recursing for ever."""
        loop = []
        loop.append(loop)
        self.log.info("x", loop=loop)
        value = self.record()["fields"]["loop"]
        for _ in range(netproxy.log_observers.MAX_DEPTH):
            self.assertIsInstance(value, list)
            value = value[0]
        self.assertEqual(value, "[[...]]")

    def test_unicode(self):
        """Text outside ASCII is written as UTF-8 text, readable, not as escapes."""
        self.log.info("x {name}", name="\u00e9t\u00e9 \u2713")
        self.assertIn('"name": "\u00e9t\u00e9 \u2713"', self.stream.getvalue())
        self.assertEqual(self.record()["fields"], {"name": "\u00e9t\u00e9 \u2713"})


    def test_line_separators_escaped(self):
        """NEL, U+2028, U+2029, DEL and C1 controls are written as JSON escapes, so no reader splits the line."""
        self.log.info("x {text}", text="a\x85b\u2028c\u2029d\x7fe\x9bf\n")
        [line] = self.lines()
        self.assertTrue(all(c not in line for c in "\x85\u2028\u2029\x7f\x9b\n"), line)
        self.assertIn("a\\u0085b\\u2028c\\u2029d\\u007fe\\u009bf\\n", line)
        self.assertEqual(self.record()["fields"]["text"], "a\x85b\u2028c\u2029d\x7fe\x9bf\n")


class FailureTests(JSONTestCase):
    """
    Failures logged with C{log.failure} carry their traceback as text.
    """

    def test_traceback(self):
        """log.failure gives a critical record with the message, its fields and the traceback text."""
        try:
            1 / 0
        except ZeroDivisionError:
            self.log.failure("relaying for {peer} failed", peer="127.0.0.1:1")
        record = self.record()
        self.assertEqual(list(record), ["time", "level", "namespace", "message", "format", "fields", "traceback"])
        self.assertEqual(record["level"], "critical")
        self.assertEqual(record["message"], "relaying for 127.0.0.1:1 failed")
        self.assertEqual(record["fields"], {"peer": "127.0.0.1:1"})
        self.assertTrue(record["traceback"].startswith("Traceback (most recent call last):\n"), record["traceback"])
        self.assertIn("ZeroDivisionError: division by zero", record["traceback"])
        self.assertIn("test_traceback", record["traceback"])

    def test_failure_level(self):
        """log.failure at another level keeps that level."""
        try:
            raise KeyError("k")
        except KeyError:
            self.log.failure("lookup", level=LogLevel.error)
        record = self.record()
        self.assertEqual(record["level"], "error")
        self.assertIn("KeyError", record["traceback"])

    def test_one_line(self):
        """A failure's multi-line traceback is still one line of output."""
        try:
            1 / 0
        except ZeroDivisionError:
            self.log.failure("boom")
        self.log.info("after")
        self.assertEqual([r["message"] for r in self.records()], ["boom", "after"])

    def test_not_a_failure(self):
        """A log_failure that is not a Failure is reported by its repr."""
        self.observer({"log_time": 0.0, "log_level": LogLevel.critical, "log_format": "x", "log_failure": "oops"})
        self.assertEqual(self.record()["traceback"], "'oops'")


class LegacyTests(JSONTestCase):
    """
    Events of Twisted's legacy log (twisted.python.log), which twistd and
    Twisted's ports still use.
    """

    def setUp(self):
        super().setUp()
        globalLogPublisher.addObserver(self.observer)
        self.addCleanup(globalLogPublisher.removeObserver, self.observer)

    def test_msg(self):
        """log.msg gives its text as message, no format, and its keyword arguments as fields."""
        legacy_log.msg("RelayFactory starting on 6000", port=6000)
        record = self.record()
        self.assertEqual(record["namespace"], "log_legacy")
        self.assertEqual(record["level"], "info")
        self.assertEqual(record["message"], "RelayFactory starting on 6000")
        self.assertIsNone(record["format"])
        self.assertEqual(record["fields"], {"port": 6000})
        self.assertNotIn("system", record)

    def test_system(self):
        """A legacy event's system (the connection it happened in) is reported."""
        legacy_log.callWithContext({"system": "AckProtocol,0,127.0.0.1"}, legacy_log.msg, "hello")
        record = self.record()
        self.assertEqual(list(record), ["time", "level", "namespace", "message", "format", "fields", "system"])
        self.assertEqual(record["system"], "AckProtocol,0,127.0.0.1")

    def test_err(self):
        """log.err gives its reason as message and the traceback in its own key."""
        try:
            1 / 0
        except ZeroDivisionError:
            legacy_log.err(None, "Unhandled error in Deferred")
        self.flushLoggedErrors(ZeroDivisionError)
        record = self.record()
        self.assertEqual(record["level"], "critical")
        self.assertEqual(record["message"], "Unhandled error in Deferred")
        self.assertEqual(record["fields"], {})
        self.assertIn("ZeroDivisionError", record["traceback"])

    def test_err_without_reason(self):
        """log.err with no reason says "Unhandled Error", as twistd's text log does."""
        try:
            1 / 0
        except ZeroDivisionError:
            legacy_log.err()
        self.flushLoggedErrors(ZeroDivisionError)
        self.assertEqual(self.record()["message"], "Unhandled Error")

    def test_adapted_event(self):
        """Keys a legacy observer adds to an event in place are not reported as fields."""
        publisher = LogPublisher(LegacyLogObserverWrapper(lambda event: None), self.observer)
        log = Logger(namespace="netproxy.test", observer=publisher)
        try:
            1 / 0
        except ZeroDivisionError:
            log.failure("forwarding for {peer} failed", peer="127.0.0.1:1")
        record = self.record()
        self.assertEqual(record["fields"], {"peer": "127.0.0.1:1"})
        self.assertEqual(record["message"], "forwarding for 127.0.0.1:1 failed")
        self.assertEqual(record["format"], "forwarding for {peer} failed")
        self.assertIn("ZeroDivisionError", record["traceback"])


    def test_adapted_event_keeps_fields(self):
        """Fields a log call gave under legacy names are kept when a legacy observer saw the event first."""
        publisher = LogPublisher(LegacyLogObserverWrapper(lambda event: None), self.observer)
        Logger(namespace="n", observer=publisher).info("{time}", time="soon", system="cache")
        self.assertEqual(self.record()["fields"], {"time": "soon", "system": "cache"})


class RobustnessTests(JSONTestCase):
    """
    A bad event, or a bad stream, never raises out of the observer.
    """

    def test_unformattable(self):
        """A format naming a missing field still gives a record, saying so in its message."""
        self.log.info("hello {missing}", present=1)
        record = self.record()
        self.assertIn("Unable to format event", record["message"])
        self.assertEqual(record["fields"], {"present": 1})

    def test_repr_raising_in_format(self):
        """A field whose repr raises while the message is formatted does not stop the event."""
        self.log.info("x {odd!r}", odd=Unrepresentable())
        record = self.record()
        self.assertEqual(record["level"], "info")
        self.assertIn("odd", record["fields"])

    def test_broken_event(self):
        """An event whose keys cannot be described is written as a critical record with its repr."""

        class BrokenEvent(dict):
            def items(self):
                raise RuntimeError("broken")

        self.observer(BrokenEvent({"k": 1, "log_namespace": "netproxy.test", "log_format": "x"}))
        record = self.record()
        self.assertEqual(record["level"], "critical")
        self.assertEqual(record["namespace"], "netproxy.test")
        self.assertIn("unable to describe a log event", record["message"])
        self.assertIn("'k': 1", record["fields"]["event"])

    def test_not_a_mapping(self):
        """Something that is not an event at all is written as a critical record."""
        self.observer(None)
        record = self.record()
        self.assertEqual(record["level"], "critical")
        self.assertEqual(record["fields"], {"event": "None"})

    def test_uncomparable_value(self):
        """A value that cannot be compared (as legacy keys are checked) is still reported."""

        class Uncomparable:
            def __eq__(self, other):
                raise RuntimeError("no comparing")

            __hash__ = object.__hash__

            def __repr__(self):
                return "<Uncomparable>"

        self.log.info("x", time=Uncomparable(), a=1)
        self.assertEqual(self.record()["fields"], {"time": "<Uncomparable>", "a": 1})

    def test_later_events(self):
        """After a bad event, the next ones are written as usual."""
        self.observer(None)
        self.log.info("fine {a}", a=1)
        self.assertEqual([r["message"] for r in self.records()][1], "fine 1")

    def test_stream_fails(self):
        """A write that fails (a closed pipe) loses that line only: the observer does not raise."""
        written = []

        class Pipe:
            def write(self, text):
                if not written:
                    written.append(None)
                    raise BrokenPipeError(32, "Broken pipe")
                written.append(text)

            def flush(self):
                pass

        log = Logger(namespace="n", observer=JSONLineObserver(Pipe()))
        log.info("lost")
        log.info("kept")
        self.assertEqual([strict_loads(text)["message"] for text in written[1:]], ["kept"])

    def test_surrogates(self):
        """Text the stream cannot encode (a lone surrogate) is written as a JSON escape."""
        raw = io.BytesIO()
        stream = io.TextIOWrapper(raw, encoding="utf-8")
        Logger(namespace="n", observer=JSONLineObserver(stream)).info("x {name}", name="bad\udcff")
        record = strict_loads(raw.getvalue().decode("utf-8"))
        self.assertEqual(record["fields"], {"name": "bad\udcff"})
        self.assertIn(b"\\udcff", raw.getvalue())

    def test_ascii_stream(self):
        """On an ASCII stream, text beyond ASCII is escaped and the line still written."""
        raw = io.BytesIO()
        stream = io.TextIOWrapper(raw, encoding="ascii")
        Logger(namespace="n", observer=JSONLineObserver(stream)).info("x {name}", name="\u00e9t\u00e9")
        self.assertEqual(strict_loads(raw.getvalue().decode("ascii"))["fields"], {"name": "\u00e9t\u00e9"})

    def test_binary_stream(self):
        """A binary stream gets the line encoded as UTF-8."""
        stream = io.BytesIO()
        Logger(namespace="n", observer=JSONLineObserver(stream)).info("x {name}", name="\u00e9")
        self.assertTrue(stream.getvalue().endswith(b"\n"))
        self.assertEqual(strict_loads(stream.getvalue().decode("utf-8"))["fields"], {"name": "\u00e9"})


class EventRecordTests(SynchronousTestCase):
    """
    L{event_record} on its own.
    """

    def test_json_able(self):
        """Its result survives a strict JSON round trip unchanged."""
        record = event_record({"log_time": 0.0, "log_level": LogLevel.warn, "log_namespace": "n",
                               "log_format": "{a}", "a": b"\x80", "b": object(), "c": float("nan")})
        self.assertEqual(strict_loads(json.dumps(record, allow_nan=False)), record)
        self.assertEqual(record["time"], "1970-01-01T00:00:00.000000Z")
        self.assertEqual(record["fields"]["a"], "\x80")


class JournalTests(SynchronousTestCase):
    """
    L{JournalObserver}: twistd's text lines without timestamps, each with
    its syslog priority first.
    """

    def setUp(self):
        self.stream = io.StringIO()
        self.log = Logger(namespace="netproxy.test", observer=JournalObserver(self.stream))

    def test_info(self):
        """An info event is one line with priority 6, its namespace and level, and no timestamp."""
        self.log.info("received {text!r} from {peer}", text="tgmr", peer="127.0.0.1:53211")
        self.assertEqual(self.stream.getvalue(), "<6>[netproxy.test#info] received 'tgmr' from 127.0.0.1:53211\n")

    def test_priorities(self):
        """Each level gets its syslog priority."""
        for emit in (self.log.debug, self.log.info, self.log.warn, self.log.error, self.log.critical):
            emit("x")
        self.assertEqual([line[:3] for line in self.stream.getvalue().splitlines()],
                         ["<7>", "<6>", "<4>", "<3>", "<2>"])

    def test_every_line_prefixed(self):
        """A failure's traceback lines each carry the event's priority."""
        try:
            1 / 0
        except ZeroDivisionError:
            self.log.failure("relaying for {peer} failed", level=LogLevel.error, peer="127.0.0.1:1")
        lines = self.stream.getvalue().splitlines()
        self.assertEqual(lines[0], "<3>[netproxy.test#error] relaying for 127.0.0.1:1 failed")
        self.assertEqual(lines[1], "<3>Traceback (most recent call last):")
        self.assertEqual(lines[-1], "<3>builtins.ZeroDivisionError: division by zero")
        self.assertTrue(all(line.startswith("<3>") for line in lines), lines)

    def test_multi_line_message(self):
        """A message with newlines is split into prefixed lines."""
        self.log.warn("a\nb")
        self.assertEqual(self.stream.getvalue(), "<4>[netproxy.test#warn] a\n<4>b\n")

    def test_field_cannot_break_line(self):
        """A field with a newline, ESC or NEL stays on its event's line, escaped as \\xhh."""
        self.log.info("payload: {payload}", payload="x\n<2>forged\x1b[2J\x85")
        self.assertEqual(self.stream.getvalue(),
                         "<6>[netproxy.test#info] payload: x\\x0a<2>forged\\x1b[2J\\x85\n")

    def test_escaped_field_not_escaped_again(self):
        """A field netproxy's Logger escaped already is written as it is, its backslashes single."""
        log = EscapingLogger(namespace="netproxy.test", observer=JournalObserver(self.stream))
        log.info("payload: {payload}", payload=b"a\\b\n")
        self.assertEqual(self.stream.getvalue(), "<6>[netproxy.test#info] payload: a\\\\b\\x0a\n")

    def test_never_raises(self):
        """A bad event or a closed stream does not make the observer raise."""
        observer = JournalObserver(self.stream)
        observer(None)
        self.assertIn("<2>unable to format a log event", self.stream.getvalue())
        self.stream.close()
        observer({"log_format": "x", "log_level": LogLevel.info})


class FactoryTests(SynchronousTestCase):
    """
    The zero-argument factories twistd's --logger calls.
    """

    def test_json_observer(self):
        """json_observer() makes an ILogObserver writing JSON lines to standard output."""
        stdout = io.StringIO()
        self.patch(sys, "stdout", stdout)
        observer = json_observer()
        self.assertTrue(ILogObserver.providedBy(observer))
        Logger(namespace="n", observer=observer).info("hello {who}", who="world")
        self.assertEqual(strict_loads(stdout.getvalue())["message"], "hello world")

    def test_journal_observer(self):
        """journal_observer() makes an ILogObserver writing prefixed lines to standard output."""
        stdout = io.StringIO()
        self.patch(sys, "stdout", stdout)
        observer = journal_observer()
        self.assertTrue(ILogObserver.providedBy(observer))
        Logger(namespace="n", observer=observer).info("hello")
        self.assertEqual(stdout.getvalue(), "<6>[n#info] hello\n")

    def test_redirected_stdout(self):
        """When twistd has turned sys.stdout into a log stream, the real standard output is used."""
        real = io.StringIO()
        self.patch(sys, "__stdout__", real)
        self.patch(sys, "stdout", LoggingFile(Logger(observer=lambda event: None)))
        Logger(namespace="n", observer=json_observer()).info("hello")
        self.assertEqual(strict_loads(real.getvalue())["message"], "hello")

    def test_twistd_resolves_name(self):
        """twistd's --logger option accepts netproxy.log_observers.json_observer and calls it with no argument."""
        from twisted.scripts.twistd import ServerOptions

        stdout = io.StringIO()
        self.patch(sys, "stdout", stdout)
        options = ServerOptions()
        options.parseOptions(["--logger", "netproxy.log_observers.json_observer", "-n"])
        self.assertIs(options["logger"], json_observer)
        self.assertIsInstance(options["logger"](), JSONLineObserver)


class ImportTests(SynchronousTestCase):
    """
    The module's name does not hide the standard library's.
    """

    def test_stdlib_logging(self):
        """import logging still gives the standard library's module."""
        import logging

        self.assertTrue(hasattr(logging, "getLogger"))
        self.assertNotEqual(logging.__name__, netproxy.log_observers.__name__)
        self.assertEqual(logging.__name__, "logging")
