# -*- test-case-name: tests.socks.test_access_log -*-
"""
The SOCKS role's access log (C{--access-log}): one line per request it
answered, written when the tunnel closes (or at once, for a refusal):

    127.0.0.1 alice [05/Dec/2026:21:08:40 +0000] CONNECT example.com:443 93.184.216.34:443 0 517 4312 1.204

that is: the client, the user who logged in (C{-} without C{--auth-file}),
when the request was answered, the command, the destination as the client
named it, the address connected to (C{-} when none was), the reply code
(0 for a tunnel, RFC 1928's codes otherwise), the bytes from the client to
the destination and from the destination to the client, and the seconds
from the request to the close.  With C{--workers} above 1 the line ends
with C{worker=N}, as the HTTP proxy's does.

Access events go to a publisher of their own, as in the HTTP proxy: with no
C{--access-log}, nothing is formatted.  Every field a client chose went
through the negotiation's checks (a name holds letters, digits, C{-_.}),
and the user name is escaped besides.
"""

import sys
import time
from typing import TextIO, cast

from twisted.logger import FileLogObserver, LogEvent

from netproxy.access_events import AccessEvents
from netproxy.appending_file import AppendingFile
from netproxy.escaping import escape

ACCESS_EVENT = "{client} {command} {destination} -> {reply}"


def format_access_line(event: LogEvent) -> str:
    """
    :param event: an access event (see L{SocksAccessLog.finished}).
    :returns: its line.
    """
    stamp = time.strftime("%d/%b/%Y:%H:%M:%S +0000", time.gmtime(event["log_time"]))
    user = event.get("user")
    worker = event.get("worker")
    return (f"{escape(event['client'])} {escape(user) if user else '-'} [{stamp}] {event['command']} "
            f"{event['destination']} {event['address'] or '-'} {event['reply']} {event['received']} "
            f"{event['sent']} {event['seconds']:.3f}{'' if worker is None else f' worker={worker}'}\n")


def open_access_log(path: str) -> FileLogObserver:
    """
    :param path: a file name, or C{-} for standard output.
    :returns: a log observer writing access lines there.
    :raises OSError: when the file cannot be opened.
    """
    stream = sys.stdout if path == "-" else AppendingFile(path)
    return FileLogObserver(cast(TextIO, stream), format_access_line)


class SocksAccessLog(AccessEvents):
    """
    Where the SOCKS role reports each request it has finished with.
    """

    def __init__(self) -> None:
        super().__init__("netproxy.socks.access")

    def finished(self, client: str, user: str | None, command: str, destination: str, address: str | None,
                 reply: int, received: int, sent: int, seconds: float) -> None:
        """
        Report a finished request.

        :param client: the client's address.
        :param user: who logged in, or L{None}.
        :param command: the command's name (C{CONNECT}).
        :param destination: C{host:port} as the client named it.
        :param address: C{host:port} connected to, or L{None}.
        :param reply: the reply code sent.
        :param received: bytes from the client passed to the destination.
        :param sent: bytes from the destination passed to the client.
        :param seconds: from the request to the close.
        """
        if self.enabled:
            self._log.info(ACCESS_EVENT, client=client, user=user, command=command, destination=destination,
                           address=address, reply=reply, received=received, sent=sent, seconds=seconds,
                           worker=self.worker_index())
