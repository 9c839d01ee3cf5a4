# -*- test-case-name: tests.test_escaping -*-
"""
Bytes from the wire, made safe for a log: L{escape} writes control
characters and non-ASCII bytes as C{\\xhh} (as Apache's access log does),
and L{Logger} escapes every field of every event it emits.

A peer chooses what it sends: a payload, a server id, a privacy policy, a
URL or a User-Agent may hold an ESC that recolours a terminal, a newline
that forges a log line, or bytes that are not text at all.  netproxy's
modules log through L{Logger} (C{log = Logger()}, as with Twisted's), so
whatever text a peer sent reaches the main log's fields escaped, whichever
observer writes them; the access log escapes its own fields when it
formats a line (L{netproxy.http.access_log}).

Some roles log several lines per message, so L{Logger.emit} is on the hot
path of every message: it escapes only what needs it and builds the event
itself rather than through Twisted's C{emit}, which sorts the log levels on
every call to check the level.
"""

from time import time
from typing import Any, cast

from twisted.logger import Logger as _TwistedLogger
from twisted.logger import LogLevel

# Code points below 256 that are written as \xhh (and the backslash, doubled
# so that a peer's own "\x1b" text cannot pass for an escape): control
# characters (C0, DEL, C1) and the rest of latin-1.  A character above 255
# becomes \uhhhh (or \Uhhhhhhhh), as Python's backslashreplace writes it.
_CONTROLS = {code: f"\\x{code:02x}" for code in (*range(0x20), *range(0x7F, 0x100))}
_ESCAPES = {**_CONTROLS, ord("\\"): "\\\\"}

_LEVELS = frozenset(LogLevel.iterconstants())


def escape(value: str | bytes | bytearray | memoryview, backslash: bool = True) -> str:
    """
    Write text, or bytes as they came from the wire, in printable ASCII.

    Printable ASCII stays as it is but for the backslash, which is doubled;
    every other byte, or character below U+0100, becomes C{\\xhh}; a
    character above that becomes C{\\uhhhh} or C{\\Uhhhhhhhh}.  The result
    never holds a line break, an escape sequence or a byte a terminal could
    act on.

    :param value: text, or bytes (each byte is one character, as latin-1).
    :param backslash: whether to double backslashes; an observer making
        sure of text that may be escaped already leaves them, so that what
        is escaped once is not escaped again.
    :returns: the escaped text (the same object, for text needing nothing).
    """
    if not isinstance(value, str):
        value = bytes(value).decode("latin-1")
    # The usual case, printable ASCII, is checked in C without a copy.
    if value.isascii() and value.isprintable() and not (backslash and "\\" in value):
        return value
    escaped = value.translate(_ESCAPES if backslash else _CONTROLS)
    if escaped.isascii():
        return escaped
    return escaped.encode("ascii", "backslashreplace").decode("ascii")


def escape_field(value: object, backslash: bool = True) -> object:
    """
    A log field's value, escaped when it may carry a peer's text.

    Text and bytes are escaped (L{escape}); an exception becomes its escaped
    message, since exception messages quote what was wrong with the input.
    Numbers, addresses and other objects are left as they are, so they stay
    numbers for structured observers (see L{netproxy.log_observers}).

    :param backslash: see L{escape}.
    :returns: the value to put in the event.
    """
    if isinstance(value, (str, bytes, bytearray)):
        return escape(value, backslash)
    if isinstance(value, BaseException):
        return escape(str(value), backslash)
    return value


class Logger(_TwistedLogger):
    """
    A L{twisted.logger.Logger} whose events carry escaped fields (see
    L{escape_field}): used as Twisted's is, C{log = Logger()} as a class
    attribute.

    The keys Twisted reserves (C{log_failure}, C{log_trace} ...) are left as
    they are; a traceback is the daemon's own text, not a peer's.
    """

    def __get__(self, instance: object, owner: type | None = None) -> "Logger":
        # Twisted's builds the class's logger with self.__class__: this one.
        return cast(Logger, super().__get__(instance, owner))

    def emit(self, level: LogLevel, format: str | None = None, **kwargs: Any) -> None:
        if level not in _LEVELS:
            # Twisted's reports the bad level as a failure event.
            super().emit(level, format, **kwargs)
            return
        for key, value in kwargs.items():
            kind = type(value)
            # Numbers, and text that escape() would return as it is, are most
            # fields of most events: checked here without a call.
            if kind is int or (kind is str and value.isascii() and value.isprintable() and "\\" not in value):
                continue
            if not key.startswith("log_"):
                kwargs[key] = escape_field(value)
        # The event Twisted's Logger.emit builds.
        kwargs.update(log_logger=self, log_level=level, log_namespace=self.namespace, log_source=self.source,
                      log_format=format, log_time=time())
        if "log_trace" in kwargs:
            kwargs["log_trace"].append((self, self.observer))
        self.observer(kwargs)
