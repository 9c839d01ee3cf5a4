# -*- test-case-name: tests.http.test_passwords -*-
"""
The users of an htpasswd-style password file (C{--auth-file}): reading the
file, and checking a password against its stored hash.

Password hashes are bcrypt (C{$2y$}, C{$2b$}, C{$2a$}; checked by the
C{bcrypt} package) or SHA-crypt (C{$5$}, C{$6$}; checked here, following
Ulrich Drepper's published specification, whose test vectors the tests
use).  Checking one is deliberately slow (bcrypt at cost 10 takes tens of
milliseconds), so L{Users.verify} is meant for a thread; L{netproxy.http.auth}
decides where it runs and remembers what passed.  A user not in the file is
checked against a real entry's hash all the same, so the time a refusal
takes does not tell which user names exist.
"""

import hashlib
import hmac
import os
import re
from collections import Counter
from collections.abc import Callable, Mapping
from typing import Protocol

import bcrypt
from twisted.python import usage
from twisted.python.filepath import FilePath

from netproxy.errors import TOO_MANY_ROUNDS, AuthFileError
from netproxy.escaping import Logger
from netproxy.textfile import read_text

# libxcrypt's limit (CRYPT_MAX_PASSPHRASE_SIZE).  SHA-crypt's work grows
# with the square of the password's length.
MAX_PASSWORD = 512
# bcrypt reads no more than this; longer passwords are cut, as htpasswd and
# every C implementation do when they make and check hashes.
BCRYPT_PASSWORD = 72
# SHA-crypt's bounds: the specification's minimum and default, and our
# maximum.  This implementation takes about 0.6 microseconds a round (3 ms for
# the default) and holds the interpreter lock throughout, stalling the reactor
# thread meanwhile, so the maximum is ten times the default of mkpasswd,
# openssl passwd and crypt(3): about 30 ms a check.
MIN_ROUNDS = 1000
DEFAULT_ROUNDS = 5000
MAX_ROUNDS = 50_000

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

#: What checking a hash costs: its kind and work factor.  Hashes of equal
#: cost take about as long to check.
Cost = tuple[str | int, ...]


class PasswordHash(Protocol):
    """
    A stored password hash, as L{Users} uses it.
    """

    #: What checking it costs, to pick a like-costing dummy.
    cost: Cost

    def verify(self, password: bytes) -> bool:
        """
        :returns: whether C{password} is the one hashed.
        """


# SHA-crypt (https://www.akkadia.org/drepper/SHA-crypt.txt).


class _Digest(Protocol):
    # What SHA-crypt uses of a hashlib object.
    def update(self, data: bytes, /) -> None: ...

    def digest(self) -> bytes: ...


_Order = tuple[tuple[int | None, ...], ...]

_CRYPT_ALPHABET = b"./0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
# The byte triples of the final digest in the order the specification
# encodes them, and how many characters the last, short group takes.
_SHA256_ORDER: _Order = (
    (0, 10, 20), (21, 1, 11), (12, 22, 2), (3, 13, 23), (24, 4, 14), (15, 25, 5), (6, 16, 26), (27, 7, 17),
    (18, 28, 8), (9, 19, 29), (None, 31, 30))
_SHA512_ORDER: _Order = (
    (0, 21, 42), (22, 43, 1), (44, 2, 23), (3, 24, 45), (25, 46, 4), (47, 5, 26), (6, 27, 48), (28, 49, 7),
    (50, 8, 29), (9, 30, 51), (31, 52, 10), (53, 11, 32), (12, 33, 54), (34, 55, 13), (56, 14, 35), (15, 36, 57),
    (37, 58, 16), (59, 17, 38), (18, 39, 60), (40, 61, 19), (62, 20, 41), (None, None, 63))
# Per kind: the digest, the order of its bytes, the checksum's length.
_SHA_CRYPT_KINDS: dict[str, tuple[Callable[[bytes], _Digest], _Order, int]] = {
    "5": (hashlib.sha256, _SHA256_ORDER, 43),
    "6": (hashlib.sha512, _SHA512_ORDER, 86),
}


def _repeated(block: bytes, size: int) -> bytes:
    # The first size bytes of block, block, block...
    return (block * (size // len(block) + 1))[:size]


def _crypt_base64(digest: bytes, order: _Order) -> bytes:
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


def sha_crypt(kind: str, password: bytes, salt: bytes, rounds: int = DEFAULT_ROUNDS) -> bytes:
    """
    Compute a SHA-crypt checksum (the part after the last C{$}).

    :param kind: C{"5"} for SHA-256-crypt, C{"6"} for SHA-512-crypt.
    :param password: the password.
    :param salt: the salt; only its first 16 bytes count.
    :param rounds: the number of rounds, clamped to the specification's
        minimum of 1000.
    :returns: the checksum in crypt's base64 alphabet.
    """
    new, order, _ = _SHA_CRYPT_KINDS[kind]
    salt = salt[:16]
    rounds = max(rounds, MIN_ROUNDS)
    size = len(password)
    b = new(password + salt + password).digest()
    a_digest = new(password + salt + _repeated(b, size))
    bits = size
    while bits:
        a_digest.update(b if bits & 1 else password)
        bits >>= 1
    a = a_digest.digest()
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

    def __init__(self, text: str) -> None:
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
            raise ValueError(TOO_MANY_ROUNDS.format(rounds=self._rounds, maximum=MAX_ROUNDS))
        self._salt = match["salt"].encode("ascii")
        self._checksum = match["checksum"].encode("ascii")
        self.cost: Cost = ("sha-crypt", self._kind, self._rounds)

    def verify(self, password: bytes) -> bool:
        """
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

    def __init__(self, text: str) -> None:
        """
        :raises ValueError: when C{text} is not a well-formed bcrypt hash.
        """
        match = _BCRYPT.fullmatch(text)
        if match is None:
            raise ValueError("malformed bcrypt hash")
        self._stored = text.encode("ascii")
        self.cost: Cost = ("bcrypt", int(match[1]))

    def verify(self, password: bytes) -> bool:
        """
        :param password: only its first 72 bytes count.
        :returns: whether C{password} is the one hashed.
        """
        computed = bcrypt.hashpw(password[:BCRYPT_PASSWORD], self._stored)
        return hmac.compare_digest(computed, self._stored)


def parse_hash(text: str) -> BcryptHash | ShaCryptHash:
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
    """

    def __init__(self, hashes: Mapping[str, PasswordHash]) -> None:
        """
        :param hashes: the password hash of each user name.
        """
        self._hashes = dict(hashes)
        self._dummy: PasswordHash | None = None
        if self._hashes:
            # A user not in the file is checked against the hash of the most
            # common kind and cost: a refusal then takes as long as most
            # wrong passwords do.
            common = Counter(entry.cost for entry in self._hashes.values()).most_common(1)[0][0]
            self._dummy = next(entry for entry in self._hashes.values() if entry.cost == common)

    def __len__(self) -> int:
        return len(self._hashes)

    def __contains__(self, user: object) -> bool:
        return user in self._hashes

    def verify(self, user: str, password: bytes) -> bool:
        """
        Check a password; slow, and meant for a thread.

        :param user: the user name.
        :param password: the password.
        :returns: whether C{user} is in the file and C{password} is its own.
        """
        entry = self._hashes.get(user)
        if entry is None:
            if self._dummy is not None:
                # The work of a known user, its outcome ignored.
                self._dummy.verify(password)
            return False
        return entry.verify(password)


def parse_auth_file(text: str, source: str = "<auth file>") -> Users:
    """
    Parse an htpasswd-style file: one C{user:hash} per line; blank lines
    and lines starting with C{#} are skipped.

    :param text: the file's text.
    :param source: its name, for error messages.
    :returns: its L{Users}.
    :raises AuthFileError: at the first bad line, naming C{source} and the
        line number.
    """
    hashes: dict[str, PasswordHash] = {}
    lines: dict[str, int] = {}
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


def read_auth_file(path: "FilePath[str] | str | os.PathLike[str]") -> Users:
    """
    Read an auth file (UTF-8).

    :param path: a L{FilePath} or a path.
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

    def __init__(self, path: "FilePath[str] | str | os.PathLike[str]") -> None:
        """
        Read the file now, so a bad one stops start-up with a clear message.

        :raises AuthFileError: when it cannot be read or parsed.
        """
        self.path = path if isinstance(path, FilePath) else FilePath(os.fsdecode(path))
        self.users = read_auth_file(self.path)
        self._warn_if_empty()

    def _warn_if_empty(self) -> None:
        if not self.users:
            self.log.warn("{path} lists no user: every request will be refused with 407", path=self.path.path)

    def reload(self) -> bool:
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
        self._warn_if_empty()
        return True


def auth_file_option(path: str | None) -> AuthFile | None:
    """
    C{--auth-file}, read as the HTTP proxy's and the SOCKS role's options
    both read it.

    :param path: the option's value, or L{None}.
    :returns: the L{AuthFile} read from it, or L{None}.
    :raises UsageError: naming the option when the file cannot be used.
    """
    if path is None:
        return None
    try:
        return AuthFile(path)
    except AuthFileError as error:
        raise usage.UsageError(f"--auth-file: {error}")
