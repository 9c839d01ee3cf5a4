# -*- test-case-name: tests.test_errors -*-
"""
Exceptions an operator or a peer can meet, with messages written for people.

Every error raised for bad peer input or a bad configuration value is one of
these, so the roles can answer the peer (or refuse to start) with a clear text
instead of a traceback.
"""


class NetproxyError(Exception):
    """
    Base class of every netproxy error.
    """


class FramingError(NetproxyError):
    """
    A peer's byte stream is not a sequence of JSON objects within the size
    limit.  The message says why, in words fit to send back to the peer.
    """


class RuleError(NetproxyError):
    """
    An access rule, or a rules file, could not be parsed.  The message names
    the rule text (and the file and line, for a file).
    """


class AuthFileError(NetproxyError):
    """
    An auth file could not be read or has a bad line; the message names the
    file and the line, never a hash or a password.
    """


class PacFileError(NetproxyError):
    """
    A PAC file (C{--pac-file}) could not be read, is too large or defines
    no C{FindProxyForURL}; the message names the file.
    """


class BadRequest(NetproxyError):
    """
    A well-framed message whose fields are missing or of the wrong kind.
    """


class Blocked(NetproxyError):
    """
    A destination is forbidden by an access rule.  The message names the rule.
    """

    @classmethod
    def by_rule(cls, address: str, resolved: bool, this_host: bool, rule: object) -> "Blocked":
        """
        :param address: the address that would have been connected to.
        :param resolved: whether it came from looking up a name.
        :param this_host: whether it is this host (0.0.0.0/8 or C{::}),
            which the rule matched as loopback.
        :param rule: the rule that matched.
        :returns: the error; its text follows "it": "resolves to
            10.0.0.1, blocked by rule 10.0.0.0/8".
        """
        verb = "resolves to" if resolved else "is"
        place = " (this host)" if this_host else ""
        return cls(f"{verb} {address}{place}, blocked by rule {rule}")


class LocalDestination(Blocked):
    """
    A destination on this host or on its link, which the http role refuses
    unless C{--allow-local} is given.

    :ivar address: the address that would have been connected to.
    :ivar kind: which kind of local address it is: a key of L{KINDS}.
    :ivar resolved: whether the address came from looking up a name.
    """

    #: For each kind: where the destination is, and what its address is.
    KINDS = {
        "this host": ("this host", "this host itself (0.0.0.0/8 and :: connect to it)"),
        "loopback": ("this host", "a loopback address"),
        "own": ("this host", "one of this host's own interface addresses"),
        "link-local": ("on this host's link", "a link-local address"),
    }

    def __init__(self, address: str, kind: str, resolved: bool) -> None:
        self.address = address
        self.kind = kind
        self.resolved = resolved
        super().__init__(self.reason())

    def reason(self) -> str:
        """
        :returns: why the destination is local, such as C{0.0.0.0 is this
            host itself (...)} or C{it resolves to 127.0.0.1, a loopback
            address}.
        """
        what = self.KINDS[self.kind][1]
        if self.resolved:
            return f"it resolves to {self.address}, {what}"
        return f"{self.address} is {what}"

    def answer(self, authority: str) -> str:
        """
        :param authority: the destination as the client named it, C{host:port}.
        :returns: the text of the 403 the http role answers.
        """
        return f"destination {authority} is {self.KINDS[self.kind][0]}: {self.reason()} (--allow-local allows it)"


class ClientError(NetproxyError):
    """
    A client could not complete its exchange; the message says why, in one line.
    """


class EntryNotRemoved(NetproxyError):
    """
    A cache entry could not be removed (PURGE, or an unsafe method's
    invalidation): its record could neither be deleted nor made unreadable.
    The store serves it no more, but it may come back after a restart; the
    message names the file and why.
    """


class HTTPError(NetproxyError):
    """
    An HTTP message cannot be handled; the proxy answers C{status} with a
    short page saying C{str(error)}, and closes the connection when
    C{close} is true (always, when the message's framing is in doubt).

    :ivar status: the status code to answer, such as 400 or 431.
    :ivar close: whether the connection must be closed after the answer.
    :ivar client_fault: whether the client caused it, which is then logged
        as a warning (bad peer input), else as an error (an origin or the
        proxy failed): by default for the 4xx statuses only; a 501 or 505
        says so when a client asked for what the proxy does not do.
    """

    def __init__(self, status: int, message: str, close: bool = True, client_fault: bool | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.close = close
        self.client_fault = status < 500 if client_fault is None else client_fault


class SetupRefused(NetproxyError):
    """
    The reverse proxy refuses a server's setup.  The message is the type 3
    error text sent to the server; C{detail} is the log's version, which may
    name what the server must not learn (another server's address).

    :ivar detail: the reason, for the log.
    """

    def __init__(self, message: str, detail: str) -> None:
        super().__init__(message)
        self.detail = detail


def host_not_allowed(host: str) -> SetupRefused:
    """
    :returns: the refusal of a setup from a host outside C{--allow-servers}.
    """
    return SetupRefused(f"setup refused: {host} may not register servers", f"{host} is not in --allow-servers")


def server_id_taken(server_id: object, holder: str) -> SetupRefused:
    """
    :param holder: the address of the server holding the id, for the log only.
    :returns: the refusal of a setup naming an id registered from another host.
    """
    return SetupRefused(f"setup refused: server id {server_id} is registered from another host",
                        f"server id {server_id} is held by {holder}, registered from another host")


def too_many_servers(limit: int, host: str | None = None) -> SetupRefused:
    """
    :param host: the host that reached C{--max-servers-per-host}, or
        L{None} for C{--max-servers}.
    :returns: the refusal of a setup past a limit on registered servers.
    """
    if host is None:
        return SetupRefused(f"setup refused: {limit} servers are registered, the most allowed",
                            f"--max-servers {limit} reached")
    return SetupRefused(f"setup refused: {limit} servers are registered from {host}, the most per host",
                        f"--max-servers-per-host {limit} reached by {host}")


def tries_exhausted(tried: int, policy: str) -> str:
    """
    :returns: the type 3 error text for a message that C{--max-tries}
        servers of its policy left unanswered while others were not tried.
    """
    servers = "server" if tried == 1 else "servers"
    return f"{tried} {servers} of privacy policy {policy} tried, none answered"


# Texts users meet that are not an exception's own message.

#: The 407 page's reason, and the log's, when a client address has failed to
#: log in too often and its try is refused without a check
#: (L{netproxy.http.login_throttle}).
TOO_MANY_FAILURES = "too many failed logins from this address; try again later"

#: Why an auth file's SHA-crypt hash is refused (L{netproxy.http.passwords}):
#: checking it would hold the interpreter for too long.
TOO_MANY_ROUNDS = ("SHA-crypt hash with {rounds} rounds: at most {maximum} are accepted, since each check holds "
                   "the Python interpreter; use fewer rounds or bcrypt")
