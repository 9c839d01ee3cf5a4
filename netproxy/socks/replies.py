# -*- test-case-name: tests.socks.test_replies -*-
"""
Why a SOCKS5 request failed, as RFC 1928's reply codes say it: the failure
of a connection attempt (L{netproxy.dialing.connect_checked}) becomes a code
for the client and a reason for the log.
"""

from twisted.internet import error as neterror
from twisted.internet.defer import CancelledError
from twisted.internet.defer import TimeoutError as DeferredTimeout
from twisted.python.failure import Failure

from netproxy.dialing import connect_failure_reason
from netproxy.errors import Blocked, LocalDestination
from netproxy.socks.negotiation import (
    CONNECTION_REFUSED,
    GENERAL_FAILURE,
    HOST_UNREACHABLE,
    NETWORK_UNREACHABLE,
    NOT_ALLOWED,
    TTL_EXPIRED,
)

#: The operating system's "network is unreachable" (ENETUNREACH), which
#: Twisted reports as a L{neterror.NoRouteError} too: the message tells them
#: apart.
_NETWORK_UNREACHABLE = "network is unreachable"
#: EHOSTUNREACH, which Twisted reports as a plain L{neterror.ConnectError}.
_HOST_UNREACHABLE = "no route to host"


def connect_reply(failure: Failure, destination: str) -> tuple[int, str]:
    """
    :param failure: the failure of a connection attempt to C{destination}.
    :param destination: C{host:port} as the client named it.
    :returns: C{(reply code, reason for the log)}: 2 for a destination a
        rule or the local-destination refusal forbids, 5 for a refusal, 6
        for a timeout, 4 for a name not found or no route to the host, 3
        when the network is unreachable, 1 for anything else.
    """
    if failure.check(LocalDestination):
        return NOT_ALLOWED, failure.value.answer(destination)
    if failure.check(Blocked):
        return NOT_ALLOWED, f"destination {destination} is blocked: it {failure.getErrorMessage()}"
    reason = f"could not connect to {destination}: {connect_failure_reason(failure)}"
    if failure.check(neterror.ConnectionRefusedError):
        return CONNECTION_REFUSED, reason
    if failure.check(neterror.TimeoutError, neterror.TCPTimedOutError, DeferredTimeout, CancelledError):
        return TTL_EXPIRED, reason
    if failure.check(neterror.NoRouteError):
        if _NETWORK_UNREACHABLE in failure.getErrorMessage().lower():
            return NETWORK_UNREACHABLE, reason
        return HOST_UNREACHABLE, reason
    if failure.check(neterror.DNSLookupError):
        return HOST_UNREACHABLE, reason
    if failure.check(neterror.ConnectError) and _HOST_UNREACHABLE in failure.getErrorMessage().lower():
        return HOST_UNREACHABLE, reason
    return GENERAL_FAILURE, reason
