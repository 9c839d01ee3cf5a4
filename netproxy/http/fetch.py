# -*- test-case-name: tests.http.test_fetch -*-
"""
One GET through an HTTP proxy, made with treq, reporting what the proxy's
cache did: the client behind C{netproxy-client fetch URL --proxy HOST:PORT}.

The report is one C{Name: value} line per field, so that an operator can
read it and a script can C{grep} it::

    Status: 200 OK
    Cache-Status: netproxy; hit; ttl=3590
    Age: 10
    Time: 0.004 s

C{Cache-Status} and C{Age} are the response's own fields (several fields of
one name joined with C{", "}), or C{-} when the response has none (a miss
that was not stored has no C{Age}; a proxy run with C{--no-cache} sends no
C{Cache-Status}).  C{Time} runs from sending the request to the end of the
body, which is read and thrown away, so a slow body counts.

Any complete answer is a success, whatever its status: the status line says
what the proxy answered.  Failing to get one (the proxy refused the
connection, closed it early, or was too slow) raises L{ClientError} with a
one-line reason.
"""

from dataclasses import dataclass
from typing import NoReturn

from treq.client import HTTPClient
from twisted.internet.defer import Deferred
from twisted.internet.error import ConnectError, DNSLookupError
from twisted.internet.interfaces import IPushProducer, IReactorTime, IStreamClientEndpoint
from twisted.internet.protocol import Protocol, connectionDone
from twisted.python.failure import Failure
from twisted.web.client import ProxyAgent, ResponseDone, ResponseFailed, ResponseNeverReceived
from twisted.web.http import PotentialDataLoss
from twisted.web.iweb import IAgent, IResponse

from netproxy.dialing import connect_failure_reason, endpoint_for
from netproxy.errors import ClientError
from netproxy.http.interfaces import IFetchReactor


@dataclass(frozen=True)
class Fetched:
    """
    What came back from one fetch.

    :ivar status: the status code.
    :ivar phrase: the reason phrase, such as C{"OK"}.
    :ivar cache_status: the C{Cache-Status} field, or L{None}.
    :ivar age: the C{Age} field, or L{None}.
    :ivar seconds: the time from sending the request to the end of the body.
    :ivar size: how many bytes of body came.
    """

    status: int
    phrase: str
    cache_status: str | None
    age: str | None
    seconds: float
    size: int

    def report(self) -> str:
        """
        :returns: the lines described in this module's docstring, each
            ending with a newline.
        """
        return (f"Status: {self.status} {self.phrase}".rstrip() + "\n"
                f"Cache-Status: {self.cache_status or '-'}\n"
                f"Age: {self.age or '-'}\n"
                f"Time: {self.seconds:.3f} s\n")


class _BodyCounter(Protocol):
    """
    Counts a response body's bytes and fires C{done} with the count when it
    ends.  Cancelling C{done} drops the connection, so a timed-out body
    stops arriving.
    """

    def __init__(self) -> None:
        self.size = 0
        self.done: Deferred[int] = Deferred(self._cancel)

    def dataReceived(self, data: bytes) -> None:
        self.size += len(data)

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        if self.done.called:
            return
        # A body delimited by the closing of the connection ends with
        # PotentialDataLoss: that is how such a body is meant to end.
        if reason.check(ResponseDone, PotentialDataLoss):
            self.done.callback(self.size)
        else:
            self.done.errback(reason)

    def _cancel(self, done: "Deferred[int]") -> None:
        if self.transport is not None:
            # A response body's transport is a producer: stopping it drops
            # the connection.
            IPushProducer(self.transport).stopProducing()


class _CutShort(Exception):
    """
    The connection ended before the body did, after C{size} bytes of it.
    """

    def __init__(self, size: int) -> None:
        super().__init__(size)
        self.size = size


def _field(response: IResponse, name: bytes) -> str | None:
    values = response.headers.getRawHeaders(name)
    return None if not values else ", ".join(value.decode("latin-1") for value in values)


def proxy_agent(reactor: IFetchReactor, proxy: tuple[str, int], timeout: float) -> IAgent:
    """
    :param proxy: the proxy's C{(host, port)}.
    :param timeout: how long to wait for the connection to the proxy.
    :returns: an agent sending every request to C{proxy}, on a connection
        of its own that closes after the response (a one-off fetch has no
        use for a pool).
    """
    endpoint: IStreamClientEndpoint = endpoint_for(reactor, proxy[0], proxy[1], timeout)
    agent: IAgent = ProxyAgent(endpoint, reactor)
    return agent


async def _get(client: HTTPClient, url: str) -> tuple[IResponse, int]:
    # Unbuffered: the body is counted as it streams, never held whole; no
    # redirects: what the proxy answered is what is reported.
    response: IResponse = await client.request("GET", url, unbuffered=True, allow_redirects=False)
    counter = _BodyCounter()
    response.deliverBody(counter)
    try:
        return response, await counter.done
    except ResponseFailed:
        raise _CutShort(counter.size)


async def fetch(reactor: IReactorTime, client: HTTPClient, url: str, timeout: float,
                proxy: str = "the proxy") -> Fetched:
    """
    GET C{url} with C{client} and read the whole response.

    :param reactor: the clock, for the timeout and the time taken.
    :param client: a treq client whose agent goes through the proxy.
    :param timeout: seconds for the whole exchange, body included.
    :param proxy: how the proxy is named in error messages.
    :returns: what came back, as a L{Fetched}.
    :raises ClientError: when no complete response came, saying why.
    """
    def timed_out(result: object, seconds: float) -> NoReturn:
        # Whatever the cancelled request ended with (cancelled while
        # connecting, or while reading), the reason is the time.
        raise ClientError(f"no complete answer from {proxy} within {seconds:g} seconds")

    started = reactor.seconds()
    getting = Deferred.fromCoroutine(_get(client, url)).addTimeout(timeout, reactor, onTimeoutCancel=timed_out)
    try:
        response, size = await getting
    except ResponseNeverReceived:
        raise ClientError(f"{proxy} closed the connection without answering")
    except _CutShort as error:
        raise ClientError(f"the answer from {proxy} was cut short after {error.size} bytes of body")
    except ResponseFailed as error:
        reasons = "; ".join(filter(None, (reason.getErrorMessage() for reason in error.reasons)))
        raise ClientError(f"the answer from {proxy} was malformed: {reasons}")
    except (ConnectError, DNSLookupError):
        raise ClientError(f"could not connect to {proxy}: {connect_failure_reason(Failure())}")
    return Fetched(response.code, response.phrase.decode("latin-1"), _field(response, b"cache-status"),
                   _field(response, b"age"), reactor.seconds() - started, size)


async def fetch_through_proxy(reactor: IFetchReactor, url: str, proxy: tuple[str, int], timeout: float) -> Fetched:
    """
    GET C{url} through the HTTP proxy at C{proxy}, as L{fetch} does.

    :param proxy: the proxy's C{(host, port)}.
    :param timeout: seconds for the connection, and for the whole exchange.
    :returns: what came back, as a L{Fetched}.
    :raises ClientError: when no complete response came, saying why.
    """
    host, port = proxy
    name = f"the proxy [{host}]:{port}" if ":" in host else f"the proxy {host}:{port}"
    return await fetch(reactor, HTTPClient(proxy_agent(reactor, proxy, timeout)), url, timeout, name)
