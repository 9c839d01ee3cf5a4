# -*- test-case-name: tests.test_log_observers,tests.integration.test_logging -*-
"""
Log observers for C{twistd --logger}: one JSON object per line for log
shippers, and readable lines with syslog priorities for the journal.

twistd imports the callable named by C{--logger} and calls it with no
arguments before logging begins::

    twistd --logger netproxy.log_observers.json_observer -n --pidfile= netproxy relay
    twistd --logger netproxy.log_observers.journal_observer -n --pidfile= netproxy relay

Both write to the process's standard output.  C{--logger} replaces twistd's
own observer, so C{--logfile} and C{--syslog} have no effect with it.

A JSON line holds, in this order::

    {"time": "2026-11-21T17:08:40.123456Z", "level": "warn",
     "namespace": "netproxy.message.relay.RelayProtocol",
     "message": "blocked request from 127.0.0.1:40956 to 127.0.0.1:7777 by rule 127.0.0.1:7777",
     "format": "blocked request from {peer} to {destination} by rule {rule}",
     "fields": {"peer": "127.0.0.1:40956", "destination": "127.0.0.1:7777", "rule": "127.0.0.1:7777"}}

followed by C{"system"} for events of Twisted's legacy log that name one,
and C{"traceback"} for failures.  The event's own fields go under
C{"fields"}, not beside the others, so that a field called C{text} or
C{time} never collides with them.  Twisted's L{eventAsJSON} is not used: it
is meant to be read back by Twisted (an RS character before each record,
float times, level objects, C{unpersistable} placeholders, no formatted
text, failures as pickle-like dicts), not by people and log shippers.

This module is C{netproxy.log_observers}; netproxy's modules import absolutely, so
C{import logging} anywhere still means the standard library's.
"""

import json
import math
import sys
from datetime import datetime, timezone
from time import time as now
from typing import IO, Any

from twisted.logger import ILogObserver, LogEvent, LoggingFile, LogLevel, eventAsText, formatEvent
from twisted.python.compat import ioType
from twisted.python.failure import Failure
from zope.interface import implementer

from netproxy.escaping import escape_field

# Keys that Twisted's legacy log system (twisted.python.log) puts into its
# events, and adds to new-style events in place when a legacy observer is
# attached: bookkeeping, not fields (see _bookkeeping).
LEGACY_KEYS = frozenset({"message", "time", "system", "format", "isError", "failure", "why", "printed"})

# Containers nested deeper than this are reported by their repr: it bounds
# the work, and ends self-referencing structures.
MAX_DEPTH = 8

# Twisted's levels are constants, not instances of LogLevel.
LEVELS = tuple(LogLevel.iterconstants())

# What json.dumps leaves as it is that a reader may take for a line break or
# a terminal may act on: NEL, U+2028, U+2029, DEL, the C1 controls.
JSON_ESCAPES = {code: f"\\u{code:04x}" for code in (*range(0x7F, 0xA0), 0x2028, 0x2029)}

# journald reads a "<N>" prefix on a line of a service's standard output as
# its syslog priority (SyslogLevelPrefix=, on by default).
SYSLOG_PRIORITIES = {
    LogLevel.debug: 7,
    LogLevel.info: 6,
    LogLevel.warn: 4,
    LogLevel.error: 3,
    LogLevel.critical: 2,
}


def _repr(value: object) -> str:
    """
    :returns: C{repr(value)}, or a short description if that raises.
    """
    try:
        return repr(value)
    except Exception as e:
        try:
            name = type(value).__qualname__
            problem = type(e).__qualname__
        except Exception:
            name, problem = "object", "exception"
        return f"<unrepresentable {name}: repr raised {problem}>"


def _key(key: object) -> str:
    if isinstance(key, str):
        return key
    if isinstance(key, (bytes, bytearray)):
        return bytes(key).decode("latin-1")
    return _repr(key)


def jsonable(value: object, depth: int = 0) -> Any:
    """
    Turn a field's value into something L{json.dumps} writes as it is.

    Text, integers, booleans and L{None} stay; bytes become text decoded as
    latin-1 (each byte one character, so nothing is lost); lists, tuples and
    sets become lists and mappings objects, converted in turn; non-finite
    floats become their repr (C{"nan"}, C{"inf"}), which strict JSON
    readers accept; anything else becomes its repr.

    :returns: a JSON-able value.
    """
    if value is None or isinstance(value, (str, bool, int)):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else repr(value)
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value).decode("latin-1")
    if depth >= MAX_DEPTH:
        return _repr(value)
    if isinstance(value, dict):
        return {_key(key): jsonable(item, depth + 1) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(item, depth + 1) for item in value]
    if isinstance(value, (set, frozenset)):
        items = list(value)
        try:
            items.sort()
        except TypeError:
            pass
        return [jsonable(item, depth + 1) for item in items]
    return _repr(value)


def _field(value: object) -> Any:
    try:
        return jsonable(value)
    except Exception:
        # A container that changed while being read, a __len__ that raises:
        # the repr, or a note, still tells the reader something.
        return _repr(value)


def format_time(when: float) -> str:
    """
    :param when: a POSIX timestamp.
    :returns: it in ISO 8601, UTC, to the microsecond:
        C{2026-11-21T17:08:40.123456Z}.
    """
    stamp = datetime.fromtimestamp(when, timezone.utc).isoformat(timespec="microseconds")
    return stamp.replace("+00:00", "Z")


def _is_legacy(event: LogEvent) -> bool:
    # Events from twisted.python.log.msg/err (twistd's "... starting on
    # 8080", "Unhandled Error") carry their text pre-formatted.
    return event.get("log_namespace") == "log_legacy" and event.get("log_format") == "{log_text}"


def _bookkeeping(key: object, value: object, event: LogEvent, legacy: bool, message: str) -> bool:
    """
    :returns: whether C{key} was put in C{event} by the logging system
        rather than given to the log call as a field.
    """
    if not isinstance(key, str):
        return False
    if key.startswith("log_"):
        return True
    if key not in LEGACY_KEYS:
        return False
    if legacy:
        return True
    # A new-style event that went through a LegacyLogObserverWrapper first
    # has these added, each only where the log call gave no such field.
    if key == "message":
        return value == ()
    if key == "time":
        return value == event.get("log_time")
    if key == "system":
        return value == event.get("log_system", "-")
    if key == "format":
        return value == "%(log_legacy)s"
    if key == "failure":
        return value is event.get("log_failure")
    if key == "why":
        return "log_failure" in event and value == message
    return True


def _fields(event: LogEvent, legacy: bool, message: str) -> dict[str, Any]:
    fields = {}
    for key, value in event.items():
        try:
            skip = _bookkeeping(key, value, event, legacy, message)
        except Exception:
            # A value that cannot even be compared is still a field.
            skip = False
        if not skip:
            fields[_key(key)] = _field(value)
    return fields


def _traceback(failure: Failure) -> str:
    try:
        return failure.getTraceback()
    except Exception as e:
        return f"(traceback unavailable: {_repr(e)}) {_repr(failure)}"


def event_record(event: LogEvent) -> dict[str, Any]:
    """
    Describe a log event as a JSON-able dict: see the module docstring for
    its keys.

    :param event: a L{twisted.logger} event.
    :returns: a dict whose values are all JSON-able.
    """
    # Any value at all: format_time raises for what is not a usable time.
    when: Any = event.get("log_time")
    try:
        stamp = format_time(when)
    except (TypeError, ValueError, OverflowError, OSError):
        # Missing, not a number, or beyond the years datetime can show.
        stamp = format_time(now())
    level: Any = event.get("log_level")
    legacy = _is_legacy(event)
    failure = event.get("log_failure")
    if failure is None and legacy and isinstance(event.get("failure"), Failure):
        failure = event["failure"]
    if legacy and failure is not None:
        # log.err(): the legacy text holds the traceback too; keep it apart.
        message = str(event.get("why") or "Unhandled Error")
    else:
        message = formatEvent(event)
    record = {
        "time": stamp,
        "level": level.name if level in LEVELS else None,
        "namespace": _field(event.get("log_namespace")),
        "message": message,
        "format": None if legacy else _field(event.get("log_format")),
        "fields": _fields(event, legacy, message),
    }
    system = event.get("log_system")
    if system is not None and system != "-":
        record["system"] = _field(system)
    if failure is not None:
        record["traceback"] = _traceback(failure) if isinstance(failure, Failure) else _repr(failure)
    return record


def _fallback_record(event: LogEvent, error: Exception) -> dict[str, Any]:
    """
    The record of an event that L{event_record} could not describe.
    """
    try:
        namespace = event.get("log_namespace")
        namespace = namespace if isinstance(namespace, str) else None
    except Exception:
        namespace = None
    return {
        "time": format_time(now()),
        "level": "critical",
        "namespace": namespace,
        "message": f"unable to describe a log event: {_repr(error)}",
        "format": None,
        "fields": {"event": _repr(event)},
    }


def _stdout() -> IO[Any]:
    """
    :returns: the process's standard output, even once twistd has turned
        C{sys.stdout} into a stream that logs what is written to it (writing
        log lines there would log them again, for ever).
    """
    # Either may be None in a process without one; writing then fails, and
    # the observers drop what they cannot write.
    stream: Any = sys.stdout
    if stream is None or isinstance(stream, LoggingFile):
        stream = sys.__stdout__
    return stream


class _LineObserver:
    """
    Writes one text line per event to a stream, and never raises: a line
    that cannot be written is dropped (there is nowhere left to report it).
    """

    def __init__(self, stream: IO[Any]) -> None:
        self._stream = stream
        self._binary = ioType(stream) is bytes
        self._encoding = "utf-8" if self._binary else (getattr(stream, "encoding", None) or "utf-8")

    def _write(self, text: str) -> None:
        try:
            data = text.encode(self._encoding) if self._binary else text
            self._stream.write(data)
            self._stream.flush()
        except Exception:
            pass

    def _encodable(self, text: str) -> bool:
        try:
            text.encode(self._encoding)
            return True
        except (UnicodeError, LookupError):
            return False


@implementer(ILogObserver)
class JSONLineObserver(_LineObserver):
    """
    Writes every event as one JSON object on a line of its own (the newlines
    of messages and tracebacks are escaped), flushed at once.

    Text that the stream's encoding cannot hold (a lone surrogate from a
    mis-decoded file name, anything but ASCII on an ASCII stream) is written
    as JSON C{\\u} escapes instead, and so are the characters that a reader
    may take for a line break (NEL, U+2028, U+2029) or a terminal may act
    on (DEL and the C1 controls; JSON escapes the C0 controls itself).

    :param stream: a text or binary stream; binary streams get UTF-8.
    """

    def __call__(self, event: LogEvent) -> None:
        try:
            try:
                record = event_record(event)
                text = json.dumps(record, ensure_ascii=False, allow_nan=False)
            except Exception as e:
                record = _fallback_record(event, e)
                text = json.dumps(record, ensure_ascii=False, allow_nan=False)
            if not self._encodable(text):
                text = json.dumps(record, ensure_ascii=True, allow_nan=False)
            text = text.translate(JSON_ESCAPES)
        except Exception:
            # Logging must go on whatever one event holds.
            return
        self._write(text + "\n")


@implementer(ILogObserver)
class JournalObserver(_LineObserver):
    """
    Writes every event as twistd's text line without the timestamp (the
    journal stamps each line itself), each line prefixed with the event's
    syslog priority (C{<6>} info, C{<4>} warn, C{<3>} error, C{<2>}
    critical, C{<7>} debug), so that C{journalctl -p warning} picks out
    warnings and errors.  A traceback's lines each get the prefix, so they
    keep the priority of their event.  Fields are escaped as C{\\xhh}
    (L{netproxy.escaping}), so a newline in one cannot start a line of its
    own with a priority of its choosing.

    :param stream: a text or binary stream; binary streams get UTF-8.
    """

    def __call__(self, event: LogEvent) -> None:
        try:
            try:
                priority = SYSLOG_PRIORITIES.get(event.get("log_level"), 6)
                text = eventAsText(_escaped(event), includeTimestamp=False, includeSystem=True, includeTraceback=True)
            except Exception as e:
                priority, text = 2, f"unable to format a log event: {_repr(e)}"
            if not text:
                return
            prefix = f"<{priority}>"
            text = "".join(f"{prefix}{line}\n" for line in text.splitlines())
            if not self._encodable(text):
                text = text.encode(self._encoding, "backslashreplace").decode(self._encoding)
        except Exception:
            return
        self._write(text)


def _escaped(event: LogEvent) -> LogEvent:
    """
    C{event} with its fields' control characters escaped (L{escape_field}):
    none can end a journal line; the format and a traceback keep theirs.
    Backslashes stay single, so what L{netproxy.escaping.Logger} escaped is
    not escaped twice.
    """
    return {key: value if not isinstance(key, str) or key.startswith("log_") else escape_field(value, False)
            for key, value in event.items()}


def json_observer() -> JSONLineObserver:
    """
    The factory for C{twistd --logger netproxy.log_observers.json_observer}.

    :returns: a L{JSONLineObserver} writing to standard output.
    """
    return JSONLineObserver(_stdout())


def journal_observer() -> JournalObserver:
    """
    The factory for C{twistd --logger netproxy.log_observers.journal_observer}.

    :returns: a L{JournalObserver} writing to standard output.
    """
    return JournalObserver(_stdout())
