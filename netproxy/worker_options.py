# -*- test-case-name: tests.test_worker_options -*-
"""
C{--workers}: how many processes serve a role (http, relay), and what the
main process tells each worker it starts.

A worker is started with the main process's own command line, so it checks
and applies every option the same way, plus one environment variable,
L{WORKER_VARIABLE}, naming its place (index and count) and the descriptors
it inherits: the listening sockets in C{--listen} order, and the two pipes
to the main process.  The variable is the only difference, and it is what
makes the process a worker; the rest of the code finds the worker's place
in the role options as C{options["worker"]} (a L{Worker}, or L{None} in a
process that is not one).

Only TCP listeners are shared: Twisted's adopted UNIX ports make the socket
file world-writable when they start and remove it when they stop, which
would undo the operator's C{mode=} and take the path away from the other
workers.
"""

import json
import os
import socket
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from twisted.internet.endpoints import (
    AdoptedStreamServerEndpoint,
    TCP4ServerEndpoint,
    TCP6ServerEndpoint,
    serverFromString,
)
from twisted.python import usage

from netproxy import coerce
from netproxy.proxy_protocol import unwrapped

WORKER_VARIABLE = "NETPROXY_WORKER"

# More processes than this is a typing mistake, not a machine: each one is
# a Python interpreter with its own memory.
MAX_WORKERS = 256

# The address families a worker can be handed, by the name Twisted's
# systemd: endpoint uses (socket.AF_<name>).
FAMILIES = ("INET", "INET6")


def usable_cpus() -> int:
    """
    :returns: how many CPUs this process may run on (its affinity mask, as
        C{taskset} or systemd's C{CPUAffinity=} set it).
    """
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover (not Linux)
        return os.cpu_count() or 1


def worker_count(option: str, value: str, cpus: int | None = None) -> int:
    """
    Parse C{--workers}.

    :param value: a whole number from 1 to L{MAX_WORKERS}, or C{auto}.
    :param cpus: what C{auto} means; L{usable_cpus} when L{None}.
    :returns: the number of worker processes (1: the role serves from the
        main process alone, as without the option).
    :raises UsageError: for anything else, naming the option and the value.
    """
    text = str(value).strip()
    if text == "auto":
        return min(MAX_WORKERS, usable_cpus() if cpus is None else cpus)
    if text.isascii() and text.isdigit() and 1 <= int(text) <= MAX_WORKERS:
        return int(text)
    raise usage.UsageError(f"--{option}: expected a number of processes from 1 to {MAX_WORKERS}, or auto, "
                           f"got {value!r}")


def check_shareable(option: str, description: str) -> None:
    """
    Refuse a listener that several workers cannot share.

    :param description: a checked endpoint description.
    :raises UsageError: unless it is TCP (C{tcp:}, C{tcp6:}, or a systemd
        socket of domain C{INET} or C{INET6}), behind C{haproxy:} or not.
    """
    # A haproxy: listener is shared as the socket under it is.
    endpoint = serverFromString(None, unwrapped(description))
    if isinstance(endpoint, (TCP4ServerEndpoint, TCP6ServerEndpoint)):
        return
    if isinstance(endpoint, AdoptedStreamServerEndpoint) and endpoint.addressFamily in (socket.AF_INET,
                                                                                        socket.AF_INET6):
        return
    raise usage.UsageError(f"--{option}: with --workers above 1, listeners must be TCP (tcp:, tcp6:, "
                           f"systemd:domain=INET or INET6), got {description!r}")


@dataclass(frozen=True)
class Worker:
    """
    One worker's place, as the main process hands it over.

    :ivar index: this worker's number, from 0 to C{count - 1}; a worker
        started again after it died keeps its number.
    :ivar count: how many workers serve the role.
    :ivar listening: C{(descriptor, family)} of each inherited listening
        socket, in C{--listen} order; family is C{INET} or C{INET6}.
    :ivar control: the descriptor the worker reads (end of file: the main
        process is gone) and the one it writes its reports to.
    :ivar state: the directory the main process made for what its workers
        share (their metrics, L{netproxy.worker_metrics}).
    """

    index: int
    count: int
    listening: tuple[tuple[int, str], ...]
    control: tuple[int, int]
    state: str

    def to_environ(self) -> str:
        """
        :returns: the value of L{WORKER_VARIABLE} that describes this worker.
        """
        return json.dumps({"index": self.index, "count": self.count,
                           "listening": [list(pair) for pair in self.listening], "control": list(self.control),
                           "state": self.state})


def _descriptor(value: object) -> int:
    if type(value) is not int or not 0 <= value < 1 << 20:
        raise ValueError(f"not a descriptor: {value!r}")
    return value


def worker_from_environ(environ: Mapping[str, str]) -> Worker | None:
    """
    Read L{WORKER_VARIABLE}.

    :returns: the L{Worker} it describes, or L{None} when it is not set.
    :raises UsageError: when it is set to anything but what a main process
        writes (someone set it by hand).
    """
    text = environ.get(WORKER_VARIABLE)
    if text is None:
        return None
    try:
        fields = json.loads(text)
        index, count = fields["index"], fields["count"]
        if type(index) is not int or type(count) is not int or not 0 <= index < count <= MAX_WORKERS:
            raise ValueError(f"bad index {index!r} of {count!r}")
        listening = tuple((_descriptor(fd), family) for fd, family in fields["listening"])
        if not listening or any(family not in FAMILIES for fd, family in listening):
            raise ValueError(f"bad listening sockets {fields['listening']!r}")
        reads, writes = fields["control"]
        state = fields["state"]
        if type(state) is not str or not os.path.isabs(state):
            raise ValueError(f"bad state directory {state!r}")
        return Worker(index, count, listening, (_descriptor(reads), _descriptor(writes)), state)
    except (ValueError, TypeError, KeyError, AttributeError) as error:
        raise usage.UsageError(f"${WORKER_VARIABLE} is set only by netproxy's main process for its workers, "
                               f"and this value is not one it writes ({error}): unset it")


class WorkerOptions(usage.Options):
    """
    The C{--workers} option, for the roles whose listeners workers can share.
    Put it before the role's other base class, so its C{postOptions} runs
    first and L{listen_endpoints} knows whether this process is a worker.
    """

    optParameters = [
        ["workers", None, "1",
         "processes serving the listeners (each can use a core): a number, or auto for one per CPU "
         "this process may use; 1 serves from the main process alone"],
    ]

    def postOptions(self) -> None:
        self["workers"] = worker_count("workers", self["workers"])
        self["worker"] = worker_from_environ(os.environ)
        super().postOptions()  # type: ignore[no-untyped-call]

    def listen_endpoints(self, descriptions: Iterable[str]) -> list[str]:
        """
        Check C{--listen} values.

        A worker does not: its main process checked the same command line,
        and a C{systemd:} value names a socket only the main process was
        given (the worker listens on the copy it inherits instead).

        :raises UsageError: for a value that is not an endpoint, or not a TCP
            one with C{--workers} above 1.
        """
        if self["worker"] is not None:
            return list(descriptions)
        checked = [coerce.listen_endpoint("listen", description) for description in descriptions]
        if self["workers"] > 1:
            for description in checked:
                check_shareable("listen", description)
        return checked
