"""
The clients' command line: C{netproxy-client upper|relay|send ...}.

The same options and the same L{run} serve C{netproxy-client} (through
L{main}, which starts the reactor with L{task.react}) and the twistd role
C{twistd -n netproxy client ...} (through L{ClientRunService}).

Exit status: 0 when the exchange succeeded, 1 when it failed (the server
could not be reached, did not answer in time, or the relay answered with an
error text), 2 for a usage error.
"""

import atexit
import getopt
import os
import sys

from twisted.application.service import Service
from twisted.internet import task
from twisted.internet.defer import Deferred
from twisted.logger import Logger
from twisted.python import usage

from netproxy import coerce
from netproxy.errors import ClientError
from netproxy.message.relay_client import random_word, send_relay_request
from netproxy.message.send_client import load_packets, send_packets
from netproxy.message.upper_client import upper_tcp, upper_udp

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2
MAX_PACKET_FILE = 16 << 20


class _InterspersedOptions(usage.Options):
    """
    Options that may come before, between or after the positional arguments
    (C{upper 127.0.0.1 12000 --udp TEXT}), as in GNU tools; C{--} ends them.
    """

    def parseOptions(self, options=None):
        if options is None:
            options = sys.argv[1:]
        try:
            found, arguments = getopt.gnu_getopt(options, self.shortOpt, self.longOpt)
        except getopt.error as error:
            raise usage.UsageError(str(error))
        ordered = []
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

    def parseArgs(self, host, port, text=None):
        self["host"] = host
        self["port"] = coerce.port_number("port", port)
        self["text"] = text

    def postOptions(self):
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

    def parseArgs(self, text=None):
        self["text"] = text

    def postOptions(self):
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

    def postOptions(self):
        for name in ("id", "pkt"):
            if not self[name]:
                raise usage.UsageError(f"--{name} is required")
        # Ids travel as numbers when they look like numbers, as the assignment's peers send them.
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


class ClientOptions(usage.Options):
    synopsis = "upper|relay [options]"
    longdesc = "Clients of the netproxy message roles."
    subCommands = [
        ["upper", None, UpperClientOptions, "send a text to an upper server over TCP or UDP"],
        ["relay", None, RelayClientOptions, "send a message through a relay"],
        ["send", None, SendClientOptions, "send data messages through a reverse proxy"],
    ]

    def postOptions(self):
        if self.subCommand is None:
            raise usage.UsageError("name a client: upper, relay or send")
        if self.subCommand == "upper" and self.subOptions["text"] is None:
            # Read before the reactor runs, so no callback ever blocks on stdin.
            self.subOptions["text"] = sys.stdin.readline().rstrip("\r\n")


async def run(reactor, options, out):
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
        reply = await send_relay_request(reactor, sub["proxy"], sub["to"], sub["text"], sub["timeout"])
        out.write(reply.decode("utf-8", "replace") + "\n")
        return EXIT_FAILED if reply.startswith(b"Error,") or not reply else EXIT_OK
    except ClientError as error:
        out.write(f"error: {error}\n")
        return EXIT_FAILED


def exit_after_twistd(status):
    """
    Make the process exit with C{status} once twistd has shut down.

    twistd exits 0 whatever its services did, so a failed exchange leaves
    through an exit handler: it runs after twistd has stopped its logging.
    """

    def leave():
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

    def __init__(self, reactor, options, out=sys.stdout, set_exit_status=exit_after_twistd):
        self.reactor = reactor
        self.options = options
        self.out = out
        self.set_exit_status = set_exit_status
        self.status = None

    def startService(self):
        super().startService()
        self.reactor.callWhenRunning(self._run)

    def _run(self):
        def finished(status):
            self.status = status
            self.out.flush()
            if status != EXIT_OK:
                self.set_exit_status(status)
            self.reactor.stop()

        d = Deferred.fromCoroutine(run(self.reactor, self.options, self.out))
        d.addCallback(finished)
        d.addErrback(lambda failure: self.log.failure("client failed", failure) or finished(EXIT_FAILED))


def main(argv=None, out=None):
    """
    The C{netproxy-client} command.
    """
    out = out or sys.stdout
    options = ClientOptions()
    try:
        options.parseOptions(sys.argv[1:] if argv is None else argv)
    except usage.UsageError as error:
        sys.stderr.write(f"netproxy-client: {error}\n(netproxy-client --help lists the options)\n")
        raise SystemExit(EXIT_USAGE)

    async def client(reactor):
        raise SystemExit(await run(reactor, options, out))

    task.react(lambda reactor: Deferred.fromCoroutine(client(reactor)))
