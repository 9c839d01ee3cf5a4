# -*- test-case-name: tests.test_coerce -*-
"""
Turn option strings into values, with errors that name the option.

Every role's options go through these, so a bad value stops start-up with
C{--idle-timeout: expected a number of seconds, got 'soon'} rather than a
traceback or a silently ignored setting.
"""

import re
from collections.abc import Iterable

from twisted.internet.endpoints import serverFromString
from twisted.python.usage import UsageError

from netproxy.acl import Rule, RuleSet, parse_rule
from netproxy.errors import RuleError
from netproxy.rules_file import RulesFile

_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([KMGT]?)i?B?\s*$", re.IGNORECASE)
_UNITS = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}


def port_number(option: str, value: object) -> int:
    """
    Parse a TCP or UDP port number.

    :param option: the option's name, without dashes, for the error text.
    :param value: the text given.
    :returns: an L{int} from 1 to 65535.
    :raises UsageError: when C{value} is not such a number.
    """
    try:
        port = int(str(value), 10)
    except ValueError:
        port = -1
    if not 1 <= port <= 65535:
        raise UsageError(f"--{option}: expected a port from 1 to 65535, got {value!r}")
    return port


def listen_port(option: str, value: object) -> int:
    """
    Parse a port to listen on, where 0 asks the system for a free one.

    :returns: an L{int} from 0 to 65535.
    :raises UsageError: when C{value} is not such a number.
    """
    if str(value).strip() == "0":
        return 0
    return port_number(option, value)


def listen_endpoint(option: str, value: object) -> str:
    """
    Check a listening address and return it as an endpoint description.

    A bare port (C{6000}) means C{tcp:6000:interface=127.0.0.1}, so nothing
    listens on a public interface unless the operator writes one.

    :returns: a description for L{serverFromString}.
    :raises UsageError: when twisted cannot parse the description.
    """
    text = str(value).strip()
    if text.isdigit():
        return f"tcp:{listen_port(option, text)}:interface=127.0.0.1"
    try:
        # Parsing builds the endpoint object without listening; no reactor
        # method is called, so None stands in for the reactor.
        serverFromString(None, text)
    except Exception as error:
        raise UsageError(f"--{option}: not an endpoint like tcp:6000:interface=127.0.0.1, got {text!r} ({error})")
    return text


def seconds(option: str, value: str | float) -> float:
    """
    Parse a positive duration in seconds (fractions allowed).

    :returns: a L{float} greater than 0.
    :raises UsageError: for anything else.
    """
    try:
        number = float(value)
    except (TypeError, ValueError):
        number = float("nan")
    if not number > 0 or number == float("inf"):
        raise UsageError(f"--{option}: expected a number of seconds, got {value!r}")
    return number


def size(option: str, value: object) -> int:
    """
    Parse a byte count such as C{65536}, C{64K}, C{512M}, C{1G} (powers of 1024).

    :returns: a positive L{int}.
    :raises UsageError: for anything else.
    """
    match = _SIZE.match(str(value))
    number = int(float(match.group(1)) * _UNITS[match.group(2).upper()]) if match else 0
    if number < 1:
        raise UsageError(f"--{option}: expected a size like 512M, got {value!r}")
    return number


def count(option: str, value: object) -> int:
    """
    Parse a positive whole number (a connection limit, say).

    :returns: an L{int} of at least 1.
    :raises UsageError: for anything else.
    """
    try:
        number = int(str(value), 10)
    except ValueError:
        number = 0
    if number < 1:
        raise UsageError(f"--{option}: expected a whole number of at least 1, got {value!r}")
    return number


def host_and_port(option: str, value: object, default_host: str = "127.0.0.1") -> tuple[str, int]:
    """
    Parse C{HOST:PORT}, C{[V6]:PORT} or a bare C{PORT}.

    :returns: a C{(host, port)} tuple.
    :raises UsageError: when the port is missing or invalid.
    """
    text = str(value).strip()
    host, sep, port = text.rpartition(":")
    if not sep:
        host, port = default_host, text
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    if not host:
        raise UsageError(f"--{option}: expected HOST:PORT, got {value!r}")
    return host, port_number(option, port)


def rule(option: str, text: str) -> Rule:
    """
    Parse an access rule (C{--block}, C{--allow}); see L{parse_rule} for the
    forms.

    :returns: the L{Rule}.
    :raises UsageError: naming the option and saying what is wrong.
    """
    try:
        return parse_rule(text)
    except RuleError as error:
        raise UsageError(f"--{option}: {error}")


def rules_file(option: str, fixed: Iterable[Rule], path: str | None) -> RulesFile:
    """
    Read a rules file now, so that a bad one stops start-up.

    :param fixed: the rules given on the command line, in force before the
        file's.
    :param path: the file, or L{None} for none.
    :returns: the L{RulesFile}, to be reloaded on SIGHUP.
    :raises UsageError: naming the option, the file and the bad line.
    """
    try:
        return RulesFile(RuleSet(fixed), path)
    except RuleError as error:
        raise UsageError(f"--{option}: {error}")
