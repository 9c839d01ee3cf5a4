# -*- test-case-name: tests.http.cache.test_fields -*-
"""
Reading the header fields HTTP caching depends on: the directives of
C{Cache-Control} (or C{Pragma}), HTTP-dates (RFC 9110 section 5.6.7) and
delta-seconds (RFC 9111 section 1.2.2), for the cache's rules in
L{netproxy.http.cache.policy} and L{netproxy.http.cache.validation}, and for the
proxy.

These are pure functions of header fields, C{(name, value)} byte pairs in
received order as L{netproxy.http.head} parses them; times are float POSIX
seconds.  The date and delta-seconds readers give C{None} for what is
absent or invalid rather than raise, and each caller says what that means
(for freshness: stale).  Of a directive or a field given twice, the first
occurrence counts; a quoted directive value reads as its unquoted form; a
delta-seconds too large to represent counts as L{MAX_DELTA}; and without
Cache-Control, C{Pragma: no-cache} counts as C{no-cache}.
"""

import re
from datetime import UTC, datetime
from functools import lru_cache

from netproxy.http.head import header_values

# RFC 9111 section 1.2.2: delta-seconds beyond what a cache can represent
# count as 2**31.
MAX_DELTA = 2**31

_TCHAR = b"!#$%&'*+-.^_`|~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
# One list element, with quoted strings kept whole so that their commas do not
# split it; an unterminated quote swallows the rest of the value.
_ELEMENT = re.compile(rb'(?:[^,"]|"(?:[^"\\]|\\.)*"?)*')
_QUOTED = re.compile(rb'"((?:[^"\\]|\\.)*)"')
_QUOTED_PAIR = re.compile(rb"\\(.)")
_DIGITS = re.compile(r"[0-9]+")

_MONTHS = b"Jan Feb Mar Apr May Jun Jul Aug Sep Oct Nov Dec".split()
_MONTH = rb"(?P<month>" + b"|".join(_MONTHS) + rb")"
_WEEKDAY = rb"(?:Mon|Tue|Wed|Thu|Fri|Sat|Sun)"
_TIME = rb"(?P<hour>[0-9]{2}):(?P<minute>[0-9]{2}):(?P<second>[0-9]{2})"
# RFC 9110 section 5.6.7: IMF-fixdate, then the obsolete RFC 850 and asctime
# forms.
_DATE_FORMS = [
    re.compile(
        _WEEKDAY + rb", (?P<day>[0-9]{2}) " + _MONTH + rb" (?P<year>[0-9]{4}) " + _TIME + rb" GMT"
    ),
    re.compile(
        rb"(?:Monday|Tuesday|Wednesday|Thursday|Friday|Saturday|Sunday), "
        rb"(?P<day>[0-9]{2})-" + _MONTH + rb"-(?P<year>[0-9]{2}) " + _TIME + rb" GMT"
    ),
    re.compile(
        _WEEKDAY + rb" " + _MONTH + rb" (?P<day>[ 0-9][0-9]) " + _TIME + rb" (?P<year>[0-9]{4})"
    ),
]


def parse_cache_control(values: list[bytes]) -> dict[str, str | None]:
    """
    Parse the directives of every C{Cache-Control} (or C{Pragma}) field.

    Directive names are lower-cased; values are unquoted, so C{max-age="10"}
    reads as C{max-age=10} (RFC 9111 section 5.2 asks recipients to accept
    both forms).  An element whose name is not a token is skipped; a value
    that is neither a token nor a quoted string is kept as written, for the
    reader of that directive to reject: so is one with whitespace around
    its C{=} (C{max-age = 7}), which the grammar does not allow; a
    C{max-age} so written makes a response stale, the cautious reading.

    :param values: the field values, in order.
    :returns: a L{dict} from directive name to its value, or to C{None} when it
        has none; of a directive given twice, the first occurrence wins.
    """
    if not values:
        return {}
    data = b",".join(values)
    if len(data) > _REMEMBERED_SIZE:
        return _parse_directives(data)
    # A copy, so that no caller can change what later ones are given.
    return dict(_remembered_directives(data))


# Responses from one origin mostly repeat a few Cache-Control values: the
# directives of short ones are remembered, in a bounded memory.
_REMEMBERED_SIZE = 256


def _parse_directives(data: bytes) -> dict[str, str | None]:
    """
    :returns: the directives of C{data}, the joined values of
        L{parse_cache_control}.
    """
    found: dict[str, str | None] = {}
    position = 0
    while position <= len(data):
        # _ELEMENT matches the empty string too, so it always matches.
        element = _ELEMENT.match(data, position).group()  # type: ignore[union-attr]
        position += len(element) + 1
        written, equals, value = element.partition(b"=")
        name = written.strip(b" \t")
        if not name or name.translate(None, _TCHAR):
            continue
        key = name.lower().decode("ascii")
        if key in found:
            continue
        if equals:
            value = value.rstrip(b" \t")
            if written[-1:] in (b" ", b"\t"):
                # No whitespace may surround "=": the value keeps a space,
                # so that its reader rejects it.
                value = b" " + value
            quoted = _QUOTED.fullmatch(value)
            if quoted:
                value = _QUOTED_PAIR.sub(rb"\1", quoted.group(1))
            found[key] = value.decode("latin-1")
        else:
            found[key] = None
    return found


_remembered_directives = lru_cache(maxsize=512)(_parse_directives)


def parse_http_date(value: bytes) -> float | None:
    """
    Parse an HTTP-date (RFC 9110 section 5.6.7), case-sensitively as its
    grammar says.

    A two-digit RFC 850 year is read as 1970 to 2069: the RFC's "no more than
    50 years ahead" rule needs the current time, which this pure function
    does not have, and these dates are all but extinct.

    :param value: the field value.
    :returns: the POSIX time, or C{None} when C{value} is not a valid date in
        one of the three forms (so C{Expires: 0} gives C{None}).
    """
    value = value.strip()
    for form in _DATE_FORMS:
        match = form.fullmatch(value)
        if match:
            break
    else:
        return None
    year = int(match["year"])
    if year < 100:
        year += 1900 if year >= 70 else 2000
    day, hour, minute, second = map(int, (match["day"], match["hour"], match["minute"], match["second"]))
    try:
        moment = datetime(year, _MONTHS.index(match["month"]) + 1, day, hour, minute, second, tzinfo=UTC)
    except ValueError:
        return None
    return moment.timestamp()


def delta_seconds(value: str | None) -> int | None:
    """
    :param value: a directive's or field's value, or C{None}.
    :returns: the non-negative integer it holds, capped at L{MAX_DELTA}; or
        C{None} when it is absent or not a delta-seconds (negative, a
        fraction, empty, a list).
    """
    if value is None or not _DIGITS.fullmatch(value):
        return None
    return min(int(value), MAX_DELTA)


def first_date(headers: list[tuple[bytes, bytes]], name: bytes) -> float | None:
    """
    :returns: the first C{name} field of C{headers} as a POSIX time, or
        C{None} when absent or invalid.
    """
    values = header_values(headers, name)
    return parse_http_date(values[0]) if values else None


def directives(headers: list[tuple[bytes, bytes]]) -> dict[str, str | None]:
    """
    :param headers: a request's or a response's header fields.
    :returns: its Cache-Control directives, as L{parse_cache_control} gives
        them.  Without a Cache-Control field, C{Pragma: no-cache} counts as
        C{no-cache}: in requests as RFC 7234 section 5.4 said (RFC 9111
        deprecates Pragma without forbidding it), in responses because its
        meaning there was never specified and revalidating is the safe
        reading.
    """
    values = header_values(headers, b"cache-control")
    if values:
        return parse_cache_control(values)
    if "no-cache" in parse_cache_control(header_values(headers, b"pragma")):
        return {"no-cache": None}
    return {}


class Fields:
    """
    A message's header fields, with what the cache's rules read of them
    worked out once, when first asked: one response is asked whether it
    may be stored, then shared, one request whether it may wait for
    another's, and all of it on every miss.  The fields must not change
    once wrapped.

    :ivar headers: the fields, C{(name, value)} byte pairs.
    """

    __slots__ = ("headers", "_names", "_directives")

    def __init__(self, headers: list[tuple[bytes, bytes]]) -> None:
        self.headers = headers
        self._names: set[bytes] | None = None
        self._directives: dict[str, str | None] | None = None

    @property
    def names(self) -> set[bytes]:
        """
        The names of the fields, lower-cased (not to be changed).
        """
        names = self._names
        if names is None:
            names = self._names = {name.lower() for name, _ in self.headers}
        return names

    @property
    def directives(self) -> dict[str, str | None]:
        """
        The directives L{directives} reads in the fields (not to be changed).
        """
        found = self._directives
        if found is None:
            names = self.names
            found = directives(self.headers) if b"cache-control" in names or b"pragma" in names else {}
            self._directives = found
        return found


def as_fields(headers: "list[tuple[bytes, bytes]] | Fields") -> Fields:
    """
    :returns: C{headers} as L{Fields}: itself, when it already is.
    """
    return headers if isinstance(headers, Fields) else Fields(headers)
