# -*- test-case-name: tests.http.test_access_log -*-
"""
The HTTP proxy's access log: one line per request in Combined Log Format,
followed by the cache status and the seconds taken.

Access events go to a L{LogPublisher} of their own, not to the daemon's
main log: formatting a main-log line per request would cost the proxy a
quarter of its time, and the access log has a format of its own.  With no
C{--access-log}, no observer is attached and nothing is formatted.

Every field a client chose (method, URL, user, Referer, User-Agent) is
written as Apache writes it: control characters and bytes that are not
ASCII as C{\\xhh}, a backslash doubled, a double quote as C{\\"}, so one
request is always one line, and nothing in it acts on a terminal.

    127.0.0.1 - - [21/Nov/2026:17:08:40 +0000] "GET http://example.com/ HTTP/1.1" 200 6 "-" "curl/8.0" BYPASS 0.026

With C{--workers} above 1, each line ends with the worker that served it,
C{worker=1}, and every worker appends to the same file: each line is one
C{write} to a descriptor opened with C{O_APPEND}, which the kernel appends
whole, so lines from different workers never mix within a line.
"""

import sys
import time
from typing import TextIO, cast

from twisted.logger import FileLogObserver, LogEvent

from netproxy.access_events import AccessEvents
from netproxy.appending_file import AppendingFile
from netproxy.escaping import escape
from netproxy.http.head import RequestHead, header_values

ACCESS_EVENT = "{client} {method} {url} -> {status}"


def _quoted(value: object) -> str:
    if not value:
        return "-"
    # escape() doubles backslashes; the quotes around the field need \" too.
    return escape(value if isinstance(value, (bytes, str)) else str(value)).replace('"', '\\"')


def format_access_line(event: LogEvent) -> str:
    """
    :param event: an access event (see L{AccessLog.request}).
    :returns: its Combined Log Format line, with cache status and time taken.
    """
    stamp = time.strftime("%d/%b/%Y:%H:%M:%S +0000", time.gmtime(event["log_time"]))
    request = f"{_quoted(event['method'])} {_quoted(event['url'])} HTTP/{event['version'][0]}.{event['version'][1]}"
    return (f'{escape(event["client"])} - {_quoted(event.get("user"))} [{stamp}] "{request}" {event["status"] or "-"} '
            f'{event["size"]} "{_quoted(event.get("referer"))}" "{_quoted(event.get("user_agent"))}" '
            f'{event["cache"]} {event["seconds"]:.3f}{_worker(event)}\n')


def _worker(event: LogEvent) -> str:
    worker = event.get("worker")
    return "" if worker is None else f" worker={worker}"


def access_log_observer(stream: "TextIO | AppendingFile") -> FileLogObserver:
    """
    :param stream: a text stream to write the lines to.
    :returns: a log observer writing access lines to C{stream}.
    """
    # An AppendingFile is written as a text stream is (write, then flush).
    return FileLogObserver(cast(TextIO, stream), format_access_line)


def open_access_log(path: str) -> FileLogObserver:
    """
    :param path: a file name, or C{-} for standard output.
    :returns: a log observer writing access lines there.
    :raises OSError: when the file cannot be opened.
    """
    stream = sys.stdout if path == "-" else AppendingFile(path)
    return access_log_observer(stream)


class AccessLog(AccessEvents):
    """
    Where the proxy reports each request it has finished.
    """

    def __init__(self) -> None:
        super().__init__("netproxy.access")

    def finished(self, client: str, head: RequestHead, status: int | None, size: int, seconds: float, cache: str,
                 user: str | None = None) -> None:
        """
        Report a finished request.

        :param client: the client's address, C{-} for the proxy's own.
        :param head: its L{netproxy.http.head.RequestHead}.
        :param status: the status sent, or L{None} when none was.
        :param size: the bytes of response body sent.
        :param seconds: the time it took.
        :param cache: the cache status.
        :param user: the user it authenticated as, or L{None}.
        """
        if self.enabled:
            headers = head.headers
            self._log.info(
                ACCESS_EVENT, client=client, method=head.method, url=head.target, version=head.version,
                status=status, size=size, referer=next(iter(header_values(headers, b"referer")), None),
                user_agent=next(iter(header_values(headers, b"user-agent")), None), cache=cache, seconds=seconds,
                user=user, worker=self.worker_index(),
            )
