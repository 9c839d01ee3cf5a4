"""
Proxy authentication for the HTTP proxy (C{--auth-file}): the users of an
htpasswd-style file, the check of each request's C{Proxy-Authorization:
Basic ...} (RFC 9110 section 11, RFC 7617), and the 407 answer.

Password hashes are bcrypt (C{$2y$}, C{$2b$}, C{$2a$}; checked by the
C{bcrypt} package) or SHA-crypt (C{$5$}, C{$6$}; checked here, following
Ulrich Drepper's published specification, whose test vectors the tests
use).  Checking one is deliberately slow (bcrypt at cost 10 takes tens of
milliseconds), so it runs in the reactor's thread pool rather than on the
reactor thread, and each credential that passed is remembered (a bounded
table keyed by an HMAC-SHA-256 of user and password, never the password),
so a client pays for it once, not per request.  A user not in the file is
checked against a real entry's hash all the same, so the time a refusal
takes does not tell which user names exist.
"""

import binascii
import hashlib
import hmac
import os
import re
from collections import Counter, OrderedDict
from typing import NamedTuple

import bcrypt
from twisted.internet.defer import maybeDeferred, succeed
from twisted.logger import Logger
from twisted.python.filepath import FilePath

from netproxy.errors import HTTPError, NetproxyError
from netproxy.http.framing import request_framing
from netproxy.http.head import header_values
from netproxy.http.message import error_response, keep_alive
from netproxy.textfile import read_text

CHALLENGE = (b"Proxy-Authenticate", b'Basic realm="netproxy"')
# Bytes of a Proxy-Authorization value looked at; a longer one is refused
# unread.  Real credentials take a few dozen.
MAX_CREDENTIALS = 4096
# libxcrypt's limit (CRYPT_MAX_PASSPHRASE_SIZE).  SHA-crypt's work grows
# with the square of the password's length.
MAX_PASSWORD = 512
# bcrypt reads no more than this; longer passwords are cut, as htpasswd and
# every C implementation do when they make and check hashes.
BCRYPT_PASSWORD = 72
# Credentials remembered as checked.  Each is about 200 bytes.
CACHE_SIZE = 1024
# SHA-crypt's bounds: the specification's minimum and default, and our
# maximum (this implementation takes under a second per million rounds,
# 3 ms for the default).
MIN_ROUNDS = 1000
DEFAULT_ROUNDS = 5000
MAX_ROUNDS = 1_000_000

_BCRYPT = re.compile(r"\$2[aby]\$(0[4-9]|[12][0-9]|3[01])\$[./A-Za-z0-9]{53}")
_SHA_CRYPT = re.compile(
    r"\$(?P<kind>[56])\$(?:rounds=(?P<rounds>[0-9]{1,10})\$)?"
    r"(?P<salt>[!-#%-9;-~]{0,16})\$(?P<checksum>[./0-9A-Za-z]+)"
)
# What htpasswd and crypt(3) make that we refuse, and why.
_UNSUPPORTED = (
    ("$apr1$", "Apache MD5 ($apr1$, htpasswd's default) is too weak"),
    ("$1$", "MD5-crypt ($1$) is too weak"),
    ("{SHA}", "unsalted SHA-1 ({SHA}) is too weak"),
    ("$2", "this bcrypt variant is not supported (only $2y$, $2b$ and $2a$)"),
    ("$y$", "yescrypt ($y$) is not supported"),
    ("$7$", "scrypt ($7$) is not supported"),
    ("$argon2", "Argon2 is not supported"),
)
_ADVICE = "; make bcrypt hashes with 'htpasswd -B' (or SHA-crypt ones with 'mkpasswd -m sha-512')"
# A user name goes into the access log as one field.
_BAD_USER = re.compile(r"[\s\x00-\x1f\x7f]")


class AuthFileError(NetproxyError):
    """
    An auth file could not be read or has a bad line; the message names the
    file and the line, never a hash or a password.
    """


class Verdict(NamedTuple):
    """
    What a request's credentials prove.

    :ivar user: the user name they authenticate, or L{None} when refused.
    :ivar problem: why they were refused, for the log (never holding the
        password).
    :ivar answer: why they were refused, for the 407 page, when it must say
        less than the log (whether the user exists); else C{problem}.
    """

    user: str | None
    problem: str | None = None
    answer: str | None = None


# SHA-crypt (https://www.akkadia.org/drepper/SHA-crypt.txt).

_CRYPT_ALPHABET = b"./0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
# The byte triples of the final digest in the order the specification
# encodes them, and how many characters the last, short group takes.
_SHA256_ORDER = ((0, 10, 20), (21, 1, 11), (12, 22, 2), (3, 13, 23), (24, 4, 14), (15, 25, 5), (6, 16, 26),
                 (27, 7, 17), (18, 28, 8), (9, 19, 29), (None, 31, 30))
_SHA512_ORDER = ((0, 21, 42), (22, 43, 1), (44, 2, 23), (3, 24, 45), (25, 46, 4), (47, 5, 26), (6, 27, 48),
                 (28, 49, 7), (50, 8, 29), (9, 30, 51), (31, 52, 10), (53, 11, 32), (12, 33, 54), (34, 55, 13),
                 (56, 14, 35), (15, 36, 57), (37, 58, 16), (59, 17, 38), (18, 39, 60), (40, 61, 19),
                 (62, 20, 41), (None, None, 63))
_SHA_CRYPT_KINDS = {"5": (hashlib.sha256, _SHA256_ORDER, 43), "6": (hashlib.sha512, _SHA512_ORDER, 86)}


def _repeated(block, size):
    # The first size bytes of block, block, block...
    return (block * (size // len(block) + 1))[:size]


def _crypt_base64(digest, order):
    out = bytearray()
    for indexes in order:
        value = 0
        for index in indexes:
            value = (value << 8) | (0 if index is None else digest[index])
        # Full groups take 4 characters; the last one as few as its bytes need.
        count = 4 if None not in indexes else 4 - indexes.count(None)
        for _ in range(count):
            out.append(_CRYPT_ALPHABET[value & 0x3F])
            value >>= 6
    return bytes(out)


def sha_crypt(kind, password, salt, rounds=DEFAULT_ROUNDS):
    """
    Compute a SHA-crypt checksum (the part after the last C{$}).

    :param kind: C{"5"} for SHA-256-crypt, C{"6"} for SHA-512-crypt.
    :param password: the password, L{bytes}.
    :param salt: the salt, L{bytes}; only its first 16 bytes count.
    :param rounds: the number of rounds, clamped to the specification's
        minimum of 1000.
    :returns: the checksum in crypt's base64 alphabet, L{bytes}.
    """
    new, order, _ = _SHA_CRYPT_KINDS[kind]
    salt = salt[:16]
    rounds = max(rounds, MIN_ROUNDS)
    size = len(password)
    b = new(password + salt + password).digest()
    a = new(password + salt + _repeated(b, size))
    bits = size
    while bits:
        a.update(b if bits & 1 else password)
        bits >>= 1
    a = a.digest()
    p = _repeated(new(password * size).digest(), size)
    s = _repeated(new(salt * (16 + a[0])).digest(), len(salt))
    c = a
    for round_ in range(rounds):
        digest = new(p if round_ & 1 else c)
        if round_ % 3:
            digest.update(s)
        if round_ % 7:
            digest.update(p)
        digest.update(c if round_ & 1 else p)
        c = digest.digest()
    return _crypt_base64(c, order)


class ShaCryptHash:
    """
    A stored SHA-crypt hash: C{$5$[rounds=N$]salt$checksum} (SHA-256) or
    C{$6$...} (SHA-512).

    :ivar cost: what checking it costs, to pick a like-costing dummy.
    """

    def __init__(self, text):
        """
        :raises ValueError: when C{text} is not a well-formed SHA-crypt hash
            we are willing to check.
        """
        match = _SHA_CRYPT.fullmatch(text)
        if match is None:
            raise ValueError("malformed SHA-crypt hash")
        self._kind = match["kind"]
        width = _SHA_CRYPT_KINDS[self._kind][2]
        if len(match["checksum"]) != width:
            raise ValueError("malformed SHA-crypt hash: its checksum has the wrong length")
        self._rounds = DEFAULT_ROUNDS if match["rounds"] is None else max(int(match["rounds"]), MIN_ROUNDS)
        if self._rounds > MAX_ROUNDS:
            raise ValueError(f"SHA-crypt hash with {self._rounds} rounds: at most {MAX_ROUNDS} are accepted")
        self._salt = match["salt"].encode("ascii")
        self._checksum = match["checksum"].encode("ascii")
        self.cost = ("sha-crypt", self._kind, self._rounds)

    def verify(self, password):
        """
        :param password: L{bytes}.
        :returns: whether C{password} is the one hashed.
        """
        computed = sha_crypt(self._kind, password, self._salt, self._rounds)
        return hmac.compare_digest(computed, self._checksum)


class BcryptHash:
    """
    A stored bcrypt hash: C{$2y$NN$} (or C{$2b$}, C{$2a$}), 22 characters
    of salt and 31 of checksum.

    :ivar cost: what checking it costs, to pick a like-costing dummy.
    """

    def __init__(self, text):
        """
        :raises ValueError: when C{text} is not a well-formed bcrypt hash.
        """
        match = _BCRYPT.fullmatch(text)
        if match is None:
            raise ValueError("malformed bcrypt hash")
        self._stored = text.encode("ascii")
        self.cost = ("bcrypt", int(match[1]))

    def verify(self, password):
        """
        :param password: L{bytes}; only its first 72 bytes count.
        :returns: whether C{password} is the one hashed.
        """
        computed = bcrypt.hashpw(password[:BCRYPT_PASSWORD], self._stored)
        return hmac.compare_digest(computed, self._stored)


def parse_hash(text):
    """
    :param text: a password hash as an htpasswd-style file holds it.
    :returns: a L{BcryptHash} or a L{ShaCryptHash}.
    :raises ValueError: for a hash of another kind (saying why it is not
        supported) or a malformed one.
    """
    if text.startswith(("$2y$", "$2b$", "$2a$")):
        return BcryptHash(text)
    if text.startswith(("$5$", "$6$")):
        return ShaCryptHash(text)
    for prefix, reason in _UNSUPPORTED:
        if text.startswith(prefix):
            raise ValueError(reason + _ADVICE)
    raise ValueError("not a bcrypt ($2y$) or SHA-crypt ($5$, $6$) hash" + _ADVICE)


class Users:
    """
    The users of one reading of an auth file.  Immutable, so the thread pool
    may check against it while a reload replaces it.

    :param hashes: the password hash of each user name.
    """

    def __init__(self, hashes):
        self._hashes = dict(hashes)
        self._dummy = None
        if self._hashes:
            # A user not in the file is checked against the hash of the most
            # common kind and cost: a refusal then takes as long as most
            # wrong passwords do.
            common = Counter(entry.cost for entry in self._hashes.values()).most_common(1)[0][0]
            self._dummy = next(entry for entry in self._hashes.values() if entry.cost == common)

    def __len__(self):
        return len(self._hashes)

    def __contains__(self, user):
        return user in self._hashes

    def verify(self, user, password):
        """
        Check a password; slow, and meant for a thread.

        :param user: the user name, L{str}.
        :param password: the password, L{bytes}.
        :returns: whether C{user} is in the file and C{password} is its own.
        """
        entry = self._hashes.get(user)
        if entry is None:
            if self._dummy is not None:
                # The work of a known user, its outcome ignored.
                self._dummy.verify(password)
            return False
        return entry.verify(password)


def parse_auth_file(text, source="<auth file>"):
    """
    Parse an htpasswd-style file: one C{user:hash} per line; blank lines
    and lines starting with C{#} are skipped.

    :param text: the file's text.
    :param source: its name, for error messages.
    :returns: its L{Users}.
    :raises AuthFileError: at the first bad line, naming C{source} and the
        line number.
    """
    hashes = {}
    lines = {}
    # split("\n") rather than splitlines(), so line numbers agree with editors.
    for number, line in enumerate(text.split("\n"), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        user, colon, hashed = line.partition(":")
        if not colon:
            raise AuthFileError(f"{source} line {number}: expected user:hash")
        if not user or len(user) > 256 or _BAD_USER.search(user):
            raise AuthFileError(f"{source} line {number}: a user name is 1 to 256 characters, without spaces "
                                f"or control characters")
        if user in hashes:
            raise AuthFileError(f"{source} line {number}: user {user!r} is already on line {lines[user]}")
        try:
            hashes[user] = parse_hash(hashed.strip())
        except ValueError as error:
            raise AuthFileError(f"{source} line {number}: user {user!r}: {error}") from None
        lines[user] = number
    return Users(hashes)


def read_auth_file(path):
    """
    Read an auth file (UTF-8).

    :param path: a L{FilePath} or a path as L{str}.
    :returns: its L{Users}.
    :raises AuthFileError: when it cannot be read or decoded, or has a bad line.
    """
    name, text = read_text(path, AuthFileError, "auth file")
    return parse_auth_file(text, name)


class AuthFile:
    """
    The users of C{--auth-file}, reloadable atomically: a reload that fails
    keeps the users in force, so a typo on C{SIGHUP} locks nobody out and
    lets nobody in.

    :ivar users: the L{Users} in force.
    """

    log = Logger()

    def __init__(self, path):
        """
        Read the file now, so a bad one stops start-up with a clear message.

        :raises AuthFileError: when it cannot be read or parsed.
        """
        self.path = path if isinstance(path, FilePath) else FilePath(os.fsdecode(path))
        self.users = read_auth_file(self.path)
        if not self.users:
            self.log.warn("{path} lists no user: every request will be refused with 407", path=self.path.path)

    def reload(self):
        """
        Re-read the file and put its users in force, or keep the old ones if
        it cannot be read or parsed (logging why).

        :returns: whether the new users are in force.
        """
        try:
            users = read_auth_file(self.path)
        except AuthFileError as error:
            self.log.error("refused to reload {path}: {reason}; keeping the {count} users in force",
                           path=self.path.path, reason=str(error), count=len(self.users))
            return False
        self.users = users
        self.log.info("reloaded {count} users from {path}", count=len(users), path=self.path.path)
        return True


def parse_basic(value):
    """
    Read the credentials of a C{Basic} authorization (RFC 7617).

    :param value: the C{Proxy-Authorization} field value.
    :returns: C{(user, password)}, both L{bytes}.
    :raises ValueError: when C{value} is not Basic credentials, saying why
        without quoting them.
    """
    if len(value) > MAX_CREDENTIALS:
        raise ValueError("Proxy-Authorization is too long")
    scheme, _, token = value.partition(b" ")
    if scheme.lower() != b"basic":
        raise ValueError("Proxy-Authorization does not use the Basic scheme")
    token = token.strip(b" ")
    if not token:
        raise ValueError("Proxy-Authorization has no credentials")
    try:
        decoded = binascii.a2b_base64(token, strict_mode=True)
    except binascii.Error:
        raise ValueError("Proxy-Authorization credentials are not valid base64") from None
    user, colon, password = decoded.partition(b":")
    if not colon:
        raise ValueError("Proxy-Authorization credentials have no ':' between user and password")
    if len(password) > MAX_PASSWORD:
        raise ValueError("Proxy-Authorization password is too long")
    return user, password


def _in_thread_pool(reactor):
    from twisted.internet.threads import deferToThreadPool

    def run(function, *args):
        return deferToThreadPool(reactor, reactor.getThreadPool(), function, *args)

    return run


class ProxyAuth:
    """
    The HTTP proxy's gate: lets a request through to its exchange when its
    C{Proxy-Authorization} names a user of the auth file with the right
    password, and answers 407 otherwise.

    :param auth_file: the L{AuthFile} (anything with C{users}).
    :param reactor: the clock, and the thread pool the checks run in.
    :param run_blocking: how to run a slow check: called with a function
        and its arguments, returns a L{Deferred} of its result; by default
        in C{reactor}'s thread pool.
    :param cache_size: how many checked credentials to remember.
    """

    log = Logger()

    def __init__(self, auth_file, reactor, run_blocking=None, cache_size=CACHE_SIZE):
        self.auth_file = auth_file
        self._reactor = reactor
        self._run = _in_thread_pool(reactor) if run_blocking is None else run_blocking
        self._cache_size = cache_size
        # Remembered credentials go with the users they were checked
        # against: a reload forgets them all.
        self._cache = OrderedDict()
        self._cache_users = None
        # Keys are HMACs under a secret of this process, so the table holds
        # nothing a dictionary attack could start from.
        self._secret = os.urandom(32)

    def authenticate(self, headers):
        """
        Check the credentials in a request's fields.

        :param headers: the request's fields.
        :returns: a L{Deferred} firing with a L{Verdict}; at once when no
            password needs checking (no or malformed credentials, or ones
            checked before).
        """
        values = header_values(headers, b"proxy-authorization")
        if not values:
            return succeed(Verdict(None, "proxy authentication required"))
        if len(values) > 1:
            return succeed(Verdict(None, "more than one Proxy-Authorization field"))
        try:
            user, password = parse_basic(values[0])
        except ValueError as error:
            return succeed(Verdict(None, str(error)))
        users = self.auth_file.users
        if self._cache_users is not users:
            self._cache.clear()
            self._cache_users = users
        key = hmac.new(self._secret, user + b":" + password, hashlib.sha256).digest()
        name = self._cache.get(key)
        if name is not None:
            self._cache.move_to_end(key)
            return succeed(Verdict(name))
        try:
            name = user.decode("utf-8")
        except UnicodeDecodeError:
            # No user of the (UTF-8) file has this name.
            return succeed(Verdict(None, "the user name is not UTF-8"))
        return self._run(users.verify, name, password).addCallback(self._checked, users, key, name)

    def _checked(self, good, users, key, name):
        if not good:
            # The page says the same for both; only the log tells them apart,
            # and names only users that exist (a password typed as a user
            # name stays out of it).
            problem = f"wrong password for user {name}" if name in users else "unknown user"
            return Verdict(None, problem, "wrong user name or password")
        if users is self.auth_file.users:
            self._cache[key] = name
            if len(self._cache) > self._cache_size:
                self._cache.popitem(last=False)
        return Verdict(name)

    def admit(self, protocol, head, rest):
        """
        Decide the request with C{head}, followed by C{rest}, that came on
        C{protocol} (a L{netproxy.http.proxy.ProxyProtocol}): let it through
        with C{protocol.begin_request}, or answer 407.  While a password is
        being checked the connection is not read from.
        """
        if head.target[:1] == b"/" and head.method != b"CONNECT":
            # The proxy's own pages (origin-form) are not proxied: clients
            # send them no proxy credentials, and --admin guards them.
            protocol.begin_request(head, rest)
            return
        started = self._reactor.seconds()
        deciding = maybeDeferred(self.authenticate, head.headers)
        paused = not deciding.called
        if paused:
            protocol.transport.pauseProducing()
        deciding.addCallback(self._decided, protocol, head, rest, started, paused)
        deciding.addErrback(self._broken, protocol)

    def _decided(self, verdict, protocol, head, rest, started, paused):
        transport = protocol.transport
        if paused:
            if not transport.connected or transport.disconnecting:
                # The client left, or the proxy is shutting down.
                return
            transport.resumeProducing()
        if verdict.user is not None:
            protocol.begin_request(head, rest, verdict.user)
        else:
            self._refuse(protocol, head, rest, started, verdict)

    def _refuse(self, protocol, head, rest, started, verdict):
        self.log.warn("{peer}: 407 {reason}", peer=protocol.peer, reason=verdict.problem)
        keep = self._may_keep(protocol, head, rest)
        extra = [CHALLENGE]
        if keep and head.version < (1, 1):
            extra.append((b"Connection", b"keep-alive"))
        page = error_response(407, verdict.answer or verdict.problem, close=not keep, extra_headers=extra)
        response_head, _, body = page.partition(b"\r\n\r\n")
        if head.method == b"HEAD":
            # On a connection kept open, a body would be read as the next response.
            body = b""
        protocol.transport.write(response_head + b"\r\n\r\n" + body)
        protocol.log_access(head, 407, len(body), started)
        if keep:
            protocol.await_request()
        else:
            protocol.transport.loseConnection()

    @staticmethod
    def _may_keep(protocol, head, rest):
        """
        :returns: whether the connection may carry the client's next try:
            it asked to keep it, and nothing of this request is left to
            read past (no body) or already read (a pipelined request,
            answered on a fresh connection instead).
        """
        if rest or protocol.stopping or not keep_alive(head.version, head.headers):
            return False
        try:
            framing = request_framing(head.version, head.headers)
        except HTTPError:
            return False
        return framing.kind == "none" or (framing.kind == "length" and framing.length == 0)

    def _broken(self, failure, protocol):
        self.log.failure("checking the credentials of {peer} failed", failure, peer=protocol.peer)
        if protocol.transport.connected and not protocol.transport.disconnecting:
            protocol.fail(HTTPError(500, "the credentials could not be checked"))
