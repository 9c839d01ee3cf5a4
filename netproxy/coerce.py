"""
Turn option strings into values, with errors that name the option.

Every role's options go through these, so a bad value stops start-up with
C{--idle-timeout: expected a number of seconds, got 'soon'} rather than a
traceback or a silently ignored setting.
"""

import re

from twisted.internet.endpoints import serverFromString
from twisted.python.usage import UsageError

_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([KMGT]?)i?B?\s*$", re.IGNORECASE)
_UNITS = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}


def port_number(option, value):
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


def listen_port(option, value):
    """
    Parse a port to listen on, where 0 asks the system for a free one.

    :returns: an L{int} from 0 to 65535.
    :raises UsageError: when C{value} is not such a number.
    """
    if str(value).strip() == "0":
        return 0
    return port_number(option, value)


def listen_endpoint(option, value):
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


def seconds(option, value):
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


def size(option, value):
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


def count(option, value):
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


def host_and_port(option, value, default_host="127.0.0.1"):
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
