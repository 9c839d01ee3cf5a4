# -*- test-case-name: tests.test_cli -*-
"""
The clients' command line: C{netproxy-client upper|relay|send|fetch ...}.

The same options and the same L{run} serve C{netproxy-client} (through
L{main}, which starts the reactor with L{task.react}) and the twistd role
C{twistd -n netproxy client ...} (through L{ClientRunService}).

Exit status: 0 when the exchange succeeded, 1 when it failed (the server
could not be reached, did not answer in time, or the relay answered with an
error text), 2 for a usage error.  For C{fetch}, any complete HTTP answer
is a success, whatever its status: the printed status line tells.
"""

import atexit
import getopt
import os
import sys
from collections.abc import Callable, Sequence
from typing import NoReturn, TextIO
from urllib.parse import urlsplit

from twisted.application.service import Service
from twisted.internet import task
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorCore, IReactorPluggableNameResolver, IReactorUDP
from twisted.python import usage
from twisted.python.failure import Failure

from netproxy import coerce
from netproxy.errors import ClientError
from netproxy.escaping import Logger
from netproxy.http.interfaces import IFetchReactor
from netproxy.message.relay_client import random_word, send_relay_request
from netproxy.message.send_client import load_packets, send_packets
from netproxy.message.upper_client import upper_tcp, upper_udp

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2
MAX_PACKET_FILE = 16 << 20


class IClientReactor(IFetchReactor, IReactorUDP, IReactorPluggableNameResolver, IReactorCore):
    """
    What the clients need of their reactor, for type checking: TCP, UDP,
    name resolution, a clock, and (under twistd) to be stopped.
    """


class _InterspersedOptions(usage.Options):
    """
    Options that may come before, between or after the positional arguments
    (C{upper 127.0.0.1 12000 --udp TEXT}), as in GNU tools; C{--} ends them.
    """

    def parseOptions(self, options: Sequence[str] | None = None) -> None:
        if options is None:
            options = sys.argv[1:]
        try:
            found, arguments = getopt.gnu_getopt(options, self.shortOpt, self.longOpt)
        except getopt.error as error:
            raise usage.UsageError(str(error))
        ordered: list[str] = []
        for name, value in found:
            takes_value = (name[2:] + "=") in self.longOpt if name.startswith("--") else (name[1] + ":") in self.shortOpt
            ordered.extend([name, value] if takes_value else [name])
        super().parseOptions(ordered + ["--"] + arguments)


class UpperClientOptions(_InterspersedOptions):
    synopsis = "HOST PORT [--udp] [--timeout SECONDS] [TEXT]"
    longdesc = ("Send TEXT (or a line read from standard input) to an upper server "
                "and print 'HOST > REPLY'.")
    optFlags = [["udp", "u", "send one UDP datagram instead of using TCP"]]
    optParameters = [["timeout", "t", "5", "seconds to wait for the connection and the reply"]]

    # usage.Options declares parseArgs without parameters; each subclass
    # names the positionals it takes.
    def parseArgs(self, host: str, port: str, text: str | None = None) -> None:  # type: ignore[override]
        self["host"] = host
        self["port"] = coerce.port_number("port", port)
        self["text"] = text

    def postOptions(self) -> None:
        self["timeout"] = coerce.seconds("timeout", self["timeout"])


class RelayClientOptions(_InterspersedOptions):
    synopsis = "--proxy HOST:PORT --to IP:PORT [--timeout SECONDS] [TEXT]"
    longdesc = ("Ask a relay to send TEXT (a random 4-letter word if absent) to the "
                "destination, and print the reply.")
    optParameters = [
        ["proxy", "p", "127.0.0.1:6000", "the relay's address"],
        ["to", None, None, "the destination IP:PORT the relay should forward to"],
        ["timeout", "t", "10", "seconds to wait for the connection and the reply"],
    ]

    def parseArgs(self, text: str | None = None) -> None:
        self["text"] = text

    def postOptions(self) -> None:
        if self["to"] is None:
            raise usage.UsageError("--to: the destination IP:PORT is required")
        self["proxy"] = coerce.host_and_port("proxy", self["proxy"])
        self["to"] = coerce.host_and_port("to", self["to"])
        self["timeout"] = coerce.seconds("timeout", self["timeout"])
        if self["text"] is None:
            self["text"] = random_word()


class SendClientOptions(_InterspersedOptions):
    synopsis = "--id ID --revproc [HOST:]PORT --pkt FILE [--timeout SECONDS]"
    longdesc = ("Send the data messages of a packet file through a reverse proxy and check "
                "that each answer carries the SHA-1 of its payload.")
    optParameters = [
        ["id", None, None, "this client's id, put in each message's srcid"],
        ["revproc", None, "5000", "the reverse proxy's [HOST:]PORT"],
        ["pkt", None, None, "packet file: a JSON data message, a JSON list of them, or one per line"],
        ["timeout", "t", "10", "seconds to wait for the connection and for each answer"],
    ]

    def postOptions(self) -> None:
        for name in ("id", "pkt"):
            if not self[name]:
                raise usage.UsageError(f"--{name} is required")
        # Ids travel as JSON numbers when they look like numbers, as the message roles' other peers send them.
        self["id"] = int(self["id"]) if self["id"].isascii() and self["id"].isdigit() else self["id"]
        self["revproc"] = coerce.host_and_port("revproc", self["revproc"])
        self["timeout"] = coerce.seconds("timeout", self["timeout"])
        try:
            with open(self["pkt"], encoding="utf-8") as packet_file:
                # Read before the reactor runs, so no callback ever blocks on the disk.
                self["packets"] = load_packets(packet_file.read(MAX_PACKET_FILE))
        except (OSError, UnicodeDecodeError) as error:
            raise usage.UsageError(f"--pkt: cannot read {self['pkt']}: {error}")
        except ClientError as error:
            raise usage.UsageError(f"--pkt: {error}")


def _http_url(value: str) -> str:
    """
    :returns: C{value}, an absolute C{http://} URL with a host.
    :raises usage.UsageError: naming the URL when it is not one.
    """
    try:
        parts = urlsplit(value)
        valid = parts.scheme.lower() == "http" and bool(parts.hostname) and (parts.port is None or parts.port > 0)
    except ValueError:
        valid = False
    if not valid or not value.isascii() or any(character.isspace() for character in value):
        raise usage.UsageError(f"URL: expected an absolute http:// URL such as http://example.com/, got {value!r}")
    return value


class FetchClientOptions(_InterspersedOptions):
    synopsis = "URL [--proxy HOST:PORT] [--timeout SECONDS]"
    longdesc = ("GET URL through an HTTP proxy and print what its cache did, one 'Name: value' line each: "
                "'Status: 200 OK', 'Cache-Status: netproxy; hit; ttl=57' and 'Age: 3' ('-' when the "
                "response has no such field), and 'Time: 0.004 s' from the request to the end of the body. "
                "Any complete answer exits 0, whatever its status.")
    optParameters = [
        ["proxy", "p", "127.0.0.1:8080", "the HTTP proxy's HOST:PORT"],
        ["timeout", "t", "10", "seconds to wait for the connection and the whole answer"],
    ]

    def parseArgs(self, url: str) -> None:  # type: ignore[override]
        self["url"] = url

    def postOptions(self) -> None:
        self["url"] = _http_url(self["url"])
        self["proxy"] = coerce.host_and_port("proxy", self["proxy"])
        self["timeout"] = coerce.seconds("timeout", self["timeout"])


class ClientOptions(usage.Options):
    synopsis = "upper|relay|send|fetch [options]"
    longdesc = "Clients of the netproxy roles: the message roles, and the HTTP proxy (fetch)."
    subCommands = [
        ["upper", None, UpperClientOptions, "send a text to an upper server over TCP or UDP"],
        ["relay", None, RelayClientOptions, "send a message through a relay"],
        ["send", None, SendClientOptions, "send data messages through a reverse proxy"],
        ["fetch", None, FetchClientOptions, "GET a URL through an HTTP proxy; print status, Cache-Status, Age, time"],
    ]

    def postOptions(self) -> None:
        if self.subCommand is None:
            raise usage.UsageError("name a client: upper, relay, send or fetch")
        if self.subCommand == "upper" and self.subOptions["text"] is None:
            # Read before the reactor runs, so no callback ever blocks on stdin.
            self.subOptions["text"] = sys.stdin.readline().rstrip("\r\n")


async def run(reactor: IClientReactor, options: ClientOptions, out: TextIO) -> int:
    """
    Run the client chosen in C{options}, write what it has to say to C{out}.

    :param options: a parsed L{ClientOptions}.
    :param out: a text stream.
    :returns: the exit status.
    """
    sub = options.subOptions
    try:
        if options.subCommand == "upper":
            send = upper_udp if sub["udp"] else upper_tcp
            reply = await send(reactor, sub["host"], sub["port"], sub["text"].encode("utf-8"), sub["timeout"])
            out.write(f"{sub['host']} > {reply.decode('utf-8', 'replace')}\n")
            return EXIT_OK
        if options.subCommand == "send":
            ok = await send_packets(reactor, sub["revproc"], sub["id"], sub["packets"], sub["timeout"], out)
            return EXIT_OK if ok else EXIT_FAILED
        if options.subCommand == "fetch":
            # Here rather than at the top: every daemon imports this module
            # (through tap.py), and treq with twisted.web costs each of them
            # megabytes that only a fetch uses.
            from netproxy.http.fetch import fetch_through_proxy

            fetched = await fetch_through_proxy(reactor, sub["url"], sub["proxy"], sub["timeout"])
            out.write(fetched.report())
            return EXIT_OK
        reply = await send_relay_request(reactor, sub["proxy"], sub["to"], sub["text"], sub["timeout"])
        out.write(reply.decode("utf-8", "replace") + "\n")
        return EXIT_FAILED if reply.startswith(b"Error,") or not reply else EXIT_OK
    except ClientError as error:
        out.write(f"error: {error}\n")
        return EXIT_FAILED


def exit_after_twistd(status: int) -> None:
    """
    Make the process exit with C{status} once twistd has shut down.

    twistd exits 0 whatever its services did, so a failed exchange leaves
    through an exit handler: it runs after twistd has stopped its logging.
    """

    def leave() -> None:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(status)

    atexit.register(leave)


class ClientRunService(Service):
    """
    Runs one client exchange under twistd, then stops the reactor.

    :param set_exit_status: called with a non-zero exit status when the
        exchange failed, L{exit_after_twistd} by default.
    """

    log = Logger()

    def __init__(self, reactor: IClientReactor, options: ClientOptions, out: TextIO = sys.stdout,
                 set_exit_status: Callable[[int], None] = exit_after_twistd) -> None:
        self.reactor = reactor
        self.options = options
        self.out = out
        self.set_exit_status = set_exit_status
        self.status: int | None = None

    def startService(self) -> None:
        super().startService()
        self.reactor.callWhenRunning(self._run)

    def _run(self) -> None:
        def finished(status: int) -> None:
            self.status = status
            self.out.flush()
            if status != EXIT_OK:
                self.set_exit_status(status)
            self.reactor.stop()

        d = Deferred.fromCoroutine(run(self.reactor, self.options, self.out))
        d.addCallback(finished)
        d.addErrback(self._failed, finished)

    def _failed(self, failure: Failure, finished: Callable[[int], None]) -> None:
        self.log.failure("client failed", failure)
        finished(EXIT_FAILED)


def main(argv: Sequence[str] | None = None, out: TextIO | None = None) -> NoReturn:
    """
    The C{netproxy-client} command: parse C{argv} (by default the process's
    arguments), run the client, exit with its status.

    :param out: where the client writes what it has to say; standard
        output by default.
    """
    out = out or sys.stdout
    options = ClientOptions()
    try:
        options.parseOptions(sys.argv[1:] if argv is None else list(argv))
    except usage.UsageError as error:
        sys.stderr.write(f"netproxy-client: {error}\n(netproxy-client --help lists the options)\n")
        raise SystemExit(EXIT_USAGE)

    async def client(reactor: IClientReactor) -> NoReturn:
        raise SystemExit(await run(reactor, options, out))

    task.react(lambda reactor: Deferred.fromCoroutine(client(reactor)))
