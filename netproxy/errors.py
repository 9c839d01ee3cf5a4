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


class BadRequest(NetproxyError):
    """
    A well-framed message whose fields are missing or of the wrong kind.
    """


class Blocked(NetproxyError):
    """
    A destination is forbidden by an access rule.  The message names the rule.
    """


class ClientError(NetproxyError):
    """
    A client could not complete its exchange; the message says why, in one line.
    """


class HTTPError(NetproxyError):
    """
    An HTTP message cannot be handled; the proxy answers C{status} with a
    short page saying C{str(error)}, and closes the connection when
    C{close} is true (always, when the message's framing is in doubt).

    :ivar status: the status code to answer, such as 400 or 431.
    :ivar close: whether the connection must be closed after the answer.
    """

    def __init__(self, status: int, message: str, close: bool = True) -> None:
        super().__init__(message)
        self.status = status
        self.close = close


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
