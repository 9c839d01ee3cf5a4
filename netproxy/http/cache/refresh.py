# -*- test-case-name: tests.http.cache.test_refresh -*-
"""
Operator freshness rules, as Squid's C{refresh_pattern}: C{REGEX MIN
PERCENT MAX} gives responses whose URL matches heuristic freshness when they
carry none of their own (RFC 9111 section 4.2.2 leaves the heuristic to the
cache).  The first rule whose regular expression matches counts.

Squid's meaning of the three numbers: a response with a C{Last-Modified}
before its C{Date} stays fresh for PERCENT of the time between them, at
most MAX minutes; one without stays fresh for MIN minutes.  Package
mirrors rely on the second case: they often send neither validators nor
freshness, and their files never change under a name.

Pure functions, like the policy they feed
(L{netproxy.http.cache.freshness.freshness_lifetime},
L{netproxy.http.cache.policy.storable}).
"""

import re
from collections.abc import Sequence
from dataclasses import dataclass

from netproxy.http.cache.fields import MAX_DELTA

_NUMBER = re.compile(r"[0-9]{1,12}")
_PERCENT = re.compile(r"([0-9]{1,9})(?:\.([0-9]{1,6}))?%?")


@dataclass(frozen=True)
class RefreshRule:
    """
    One C{REGEX MIN PERCENT MAX} rule.

    :ivar text: the rule as the operator wrote it.
    :ivar pattern: the compiled regular expression, searched for in the URL.
    :ivar minimum: MIN, in seconds.
    :ivar fraction: PERCENT, as a fraction (C{20%} is C{0.2}).
    :ivar maximum: MAX, in seconds.
    """

    text: str
    pattern: "re.Pattern[str]"
    minimum: float
    fraction: float
    maximum: float

    def lifetime(self, date: float | None, modified: float | None) -> float:
        """
        The heuristic freshness lifetime this rule gives a response without
        explicit freshness, as Squid works it out.

        :param date: the response's C{Date} (or when it was received).
        :param modified: its C{Last-Modified}, or L{None}.
        :returns: PERCENT of the time from C{modified} to C{date}, at most
            MAX, when C{modified} is before C{date}; else MIN.
        """
        if modified is not None and date is not None and date > modified:
            return min(self.maximum, (date - modified) * self.fraction)
        return self.minimum


def parse_rule(text: str) -> RefreshRule:
    """
    Read a rule: C{[-i] REGEX MIN PERCENT MAX}, MIN and MAX whole minutes,
    PERCENT a number with or without C{%}.  C{-i} makes the expression
    ignore case.  The expression is Python's (close to the POSIX extended
    expressions of Squid for the usual rules); it may not hold spaces.

    :raises ValueError: naming what is wrong, for the operator.
    """
    words = text.split()
    flags = 0
    if words and words[0] == "-i":
        flags, words = re.IGNORECASE, words[1:]
    if len(words) != 4:
        raise ValueError(f"expected 'REGEX MIN PERCENT MAX' (MIN and MAX in minutes), got {text!r}")
    expression, low, percent, high = words
    try:
        pattern = re.compile(expression, flags)
    except re.error as e:
        raise ValueError(f"bad regular expression {expression!r}: {e}") from None
    minimum, maximum = _minutes("MIN", low), _minutes("MAX", high)
    match = _PERCENT.fullmatch(percent)
    if match is None:
        raise ValueError(f"PERCENT must be a number like 20%, got {percent!r}")
    fraction = float(match.group(0).rstrip("%")) / 100
    if minimum > maximum:
        raise ValueError(f"MIN ({low}) is more than MAX ({high}) in {text!r}")
    return RefreshRule(text, pattern, minimum, fraction, maximum)


def _minutes(name: str, text: str) -> float:
    if _NUMBER.fullmatch(text) is None:
        raise ValueError(f"{name} must be a whole number of minutes, got {text!r}")
    seconds = int(text) * 60
    if seconds > MAX_DELTA:
        raise ValueError(f"{name} must be at most {MAX_DELTA // 60} minutes, got {text!r}")
    return float(seconds)


def rule_url(key: bytes) -> str:
    """
    :param key: a cache key, as L{netproxy.http.cache.responses.cache_key}
        writes it (C{http://host:port/path}, the port always there).
    :returns: the URL rules are matched against: C{http://host/path}, the
        host lower-cased and in brackets when it is an IPv6 address, the
        port written only when it is not 80, as clients usually write URLs.
    """
    rest = key[len(b"http://"):] if key.startswith(b"http://") else key
    slash = rest.find(b"/")
    authority, path = (rest, b"") if slash < 0 else (rest[:slash], rest[slash:])
    host, _, port = authority.rpartition(b":")
    if b":" in host:
        host = b"[%s]" % (host,)
    if port != b"80":
        host = b"%s:%s" % (host, port)
    return "http://" + (host + path).decode("latin-1")


def matching_rule(rules: Sequence[RefreshRule], url: str) -> RefreshRule | None:
    """
    :returns: the first of C{rules} whose expression is found in C{url}, or
        L{None}.
    """
    for rule in rules:
        if rule.pattern.search(url):
            return rule
    return None
