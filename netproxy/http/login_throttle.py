# -*- test-case-name: tests.http.test_login_throttle -*-
"""
Who may have a password checked, and when: the limits that keep one client
guessing passwords from slowing down everyone else's logins.

Checking a password costs tens of milliseconds of a thread, so a client that
loops wrong passwords could fill the reactor's thread pool (shared with name
resolution) and make every other login wait behind its checks.
L{LoginThrottle} runs the checks of L{netproxy.http.auth.ProxyAuth}:

- Failed logins are counted per client address (an IPv6 client by its /64,
  the block one host is usually given): after C{burst} failures, further
  checks for that address are refused until failures are forgiven, one per
  C{forgive} seconds (a token bucket, as nginx's C{limit_req} keeps).
  Checks that are waiting or running count as failures until they end, so
  opening many connections at once buys no more tries.
- An address has at most one check running at a time; the others wait.
- At most C{checks} run at once in all, and one of them is kept for
  addresses without recent failures; among waiting checks, those of the
  address with the fewest recent failures go first.  A login from a clean
  address therefore never waits behind an attacker's queue: at most for one
  check to end when every slot is taken by clean addresses.
- Only addresses with failures not yet forgiven, or with checks waiting or
  running, are remembered: at most C{clients} of the former (the least
  recently failed is forgotten first, so a peer with more addresses than
  that gets more tries, but no more threads).  At most C{clients} checks
  wait in all (past that, every new one is refused as if its address had
  failed too often, until the line shortens), and a waiting check whose
  client has gone is dropped, unchecked, when its turn comes.
"""

from collections import OrderedDict, deque
from collections.abc import Callable
from typing import Any, TypeVar

from twisted.internet.address import IPv4Address, UNIXAddress
from twisted.internet.address import IPv6Address as TwistedIPv6Address
from twisted.internet.defer import Deferred, maybeDeferred
from twisted.internet.interfaces import IAddress, IReactorTime
from twisted.python.failure import Failure

from netproxy.connections import client_group
from netproxy.escaping import Logger

#: Failed logins an address may have before its checks are refused.
BURST = 10
#: Seconds after which one failed login is forgiven: after a burst, one more
#: try every this many seconds.
FORGIVE = 6.0
#: Password checks running at once, in all (the reactor's thread pool has 10
#: threads by default, shared with name resolution).
CHECKS = 4
#: Addresses with failed logins remembered.  Each takes about 200 bytes.
CLIENTS = 4096

_T = TypeVar("_T")

#: How a slow check is run: called with a function and its arguments, it
#: returns a L{Deferred} of the function's result.
RunBlocking = Callable[..., "Deferred[Any]"]


def client_key(address: IAddress | None) -> str:
    """
    :param address: a client's address, as its transport's C{getPeer} gives it.
    :returns: what failed logins are counted under: the IPv4 address, the
        /64 of an IPv6 one (an IPv4-mapped one as IPv4), C{"unix"} for a
        Unix socket peer.
    """
    if isinstance(address, (IPv4Address, TwistedIPv6Address)):
        return client_group(address.host)
    return "unix" if isinstance(address, UNIXAddress) else str(address)


class _Client:
    """
    What is known of one client address.

    :ivar debt: failed logins not yet forgiven, as of C{since}.
    :ivar waiting: the checks waiting for a thread: (result, function, args,
        whether it is still wanted).
    :ivar running: how many of its checks are running (0 or 1).
    :ivar announced: whether the refusal of its checks was logged.
    """

    __slots__ = ("debt", "since", "waiting", "running", "announced")

    def __init__(self, now: float) -> None:
        self.debt = 0.0
        self.since = now
        self.waiting: deque[tuple[Deferred[Any], Callable[..., Any], tuple[Any, ...], Callable[[], bool]]] = deque()
        self.running = 0
        self.announced = False

    def settle(self, now: float, forgive: float) -> float:
        """
        Forgive what time has forgiven.

        :returns: the failed logins still counted.
        """
        self.debt = max(0.0, self.debt - (now - self.since) / forgive)
        self.since = now
        return self.debt

    def pending(self) -> int:
        """
        :returns: its checks waiting or running.
        """
        return len(self.waiting) + self.running


class LoginThrottle:
    """
    Runs password checks with a budget of failed logins per client address,
    one check at a time per address, and a bound on checks in all.
    """

    log = Logger()

    def __init__(self, clock: IReactorTime, run_blocking: RunBlocking, burst: int = BURST, forgive: float = FORGIVE,
                 checks: int = CHECKS, clients: int = CLIENTS) -> None:
        """
        :param clock: what tells the time.
        :param run_blocking: how to run a check (in a thread).
        :param burst: failed logins an address may have before its checks
            are refused.
        :param forgive: seconds after which one failed login is forgiven.
        :param checks: checks running at once, in all (at least 2: one is
            kept for addresses without recent failures).
        :param clients: addresses with failed logins remembered, and
            checks waiting in all.
        """
        if checks < 2:
            raise ValueError("a login throttle runs at least 2 checks at once")
        self._clock = clock
        self._run = run_blocking
        self.burst = burst
        self.forgive = forgive
        self._checks = checks
        self._clients = clients
        # Addresses with checks waiting or running, the next to be served first.
        self._busy: dict[str, _Client] = {}
        # Addresses with only failures remembered, the least recently failed first.
        self._idle: OrderedDict[str, _Client] = OrderedDict()
        self._running = 0
        self._suspect_running = 0
        self._waiting = 0
        self._dispatching = False

    def __len__(self) -> int:
        """
        :returns: how many addresses are remembered.
        """
        return len(self._busy) + len(self._idle)

    def _find(self, client: str) -> _Client | None:
        return self._busy.get(client) or self._idle.get(client)

    def wait(self, client: str) -> float:
        """
        :param client: a client address, as L{client_key} gives it.
        :returns: seconds before C{client} may have a password checked (its
            failures and pending checks, counted as failures, are under
            the burst then); 0 when it may now.
        """
        if self._waiting >= self._clients:
            return self.forgive
        entry = self._find(client)
        if entry is None:
            return 0.0
        excess = entry.settle(self._clock.seconds(), self.forgive) + entry.pending() + 1 - self.burst
        if excess <= 0:
            entry.announced = False
            return 0.0
        if not entry.announced:
            entry.announced = True
            self.log.warn("{client}: too many failed logins ({failures} recent, {pending} being checked); its further "
                          "tries are refused without a check, one more allowed every {forgive} s", client=client,
                          failures=round(entry.debt), pending=entry.pending(), forgive=self.forgive)
        return excess * self.forgive

    def run(self, client: str, function: Callable[..., _T], *args: Any,
            wanted: Callable[[], bool] = lambda: True) -> "Deferred[_T | None]":
        """
        Run a check for C{client}, when its turn comes (L{wait} says whether
        it may have one).

        :param client: a client address, as L{client_key} gives it.
        :param function: the check, run in a thread.
        :param args: its arguments.
        :param wanted: asked when its turn comes: whether the check is still
            wanted (the client has not gone), so the queue never holds more
            than the connections waiting.
        :returns: a L{Deferred} of C{function}'s result, or of L{None} when
            it was not run, no longer wanted.
        """
        entry = self._busy.get(client)
        if entry is None:
            entry = self._idle.pop(client, None) or _Client(self._clock.seconds())
            self._busy[client] = entry
        result: Deferred[_T | None] = Deferred()
        entry.waiting.append((result, function, args, wanted))
        self._waiting += 1
        self._dispatch()
        return result

    def failed(self, client: str) -> None:
        """
        Count a failed login for C{client}.

        :param client: a client address, as L{client_key} gives it.
        """
        now = self._clock.seconds()
        entry = self._busy.get(client)
        idle = entry is None
        if entry is None:
            entry = self._idle.pop(client, None) or _Client(now)
            self._idle[client] = entry
        entry.settle(now, self.forgive)
        entry.debt += 1
        if idle:
            self._trim(now)

    def _trim(self, now: float) -> None:
        # Forget the least recently failed addresses once forgiven, and
        # beyond the bound.
        while self._idle:
            oldest = next(iter(self._idle.values()))
            if len(self._idle) <= self._clients and oldest.settle(now, self.forgive) > 0:
                return
            self._idle.popitem(last=False)

    def _dispatch(self) -> None:
        # Start waiting checks while slots are free.  Checks that end at once
        # (in tests) call back in here: the loop outside picks up after them.
        if self._dispatching:
            return
        self._dispatching = True
        try:
            while self._running < self._checks and self._start_next():
                pass
        finally:
            self._dispatching = False

    def _start_next(self) -> bool:
        # Pick the waiting address with the fewest failures (the first served
        # the longest ago among equals); addresses with failures may not take
        # the last slot.
        now = self._clock.seconds()
        chosen = None
        for client, entry in self._busy.items():
            if entry.running or not entry.waiting:
                continue
            debt = entry.settle(now, self.forgive)
            if debt > 0 and self._suspect_running >= self._checks - 1:
                continue
            if chosen is None or debt < chosen[1].debt:
                chosen = (client, entry)
        if chosen is None:
            return False
        client, entry = chosen
        result, function, args, wanted = entry.waiting.popleft()
        self._waiting -= 1
        if not wanted():
            self._rest(client, entry)
            result.callback(None)
            return True
        suspect = entry.debt > 0
        entry.running += 1
        self._running += 1
        self._suspect_running += suspect
        # Served: to the back of the line.
        del self._busy[client]
        self._busy[client] = entry
        maybeDeferred(self._run, function, *args).addBoth(self._ended, client, entry, suspect, result)
        return True

    def _rest(self, client: str, entry: _Client) -> None:
        # An address with nothing pending any more is remembered only for
        # its failures.
        if not entry.pending() and self._busy.get(client) is entry:
            del self._busy[client]
            if entry.settle(self._clock.seconds(), self.forgive) > 0:
                self._idle[client] = entry
                self._trim(self._clock.seconds())

    def _ended(self, outcome: object, client: str, entry: _Client, suspect: bool, result: "Deferred[Any]") -> None:
        entry.running -= 1
        self._running -= 1
        self._suspect_running -= suspect
        self._rest(client, entry)
        if isinstance(outcome, Failure):
            result.errback(outcome)
        else:
            result.callback(outcome)
        self._dispatch()
