"""
Tests for L{netproxy.http.auth}: htpasswd-style files, bcrypt and SHA-crypt
hashes (with the published test vectors), Basic credentials, the cache of
checked credentials, and the HTTP proxy's 407 answers on a memory reactor.
"""

import base64
import html

import bcrypt
from twisted.internet.defer import Deferred, maybeDeferred
from twisted.internet.testing import EventLoggingObserver, MemoryReactorClock
from twisted.logger import LogLevel, formatEvent, globalLogPublisher
from twisted.python.filepath import FilePath
from twisted.python.usage import UsageError
from twisted.trial.unittest import SynchronousTestCase

from netproxy import tap
from netproxy.http import auth
from netproxy.http.access_log import format_access_line
from netproxy.http.auth import (
    CACHE_SIZE,
    AuthFile,
    AuthFileError,
    BcryptHash,
    ProxyAuth,
    ShaCryptHash,
    Users,
    parse_auth_file,
    parse_basic,
    parse_hash,
    sha_crypt,
)
from netproxy.reload import ReloadOnHangup
from netproxy.testing import UDPMemoryReactor, complete_connection, connect
from tests.http.test_proxy import CLIENT, get, make_factory, split_response

OK = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nhi"
OK_FORWARDED = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nVia: 1.1 netproxy\r\n\r\nhi"

# Cost 4, the least bcrypt allows: these tests are about the logic, not the cost.
ALICE_HASH = bcrypt.hashpw(b"alice's secret", bcrypt.gensalt(4)).decode("ascii").replace("$2b$", "$2y$", 1)
# From Drepper's specification: "Hello world!" with salt "saltstring".
CAROL_HASH = ("$6$saltstring$svn8UoSVapNtMuq1ukKS4tPQd8iKwSMHWjl/O817G3uBnIFNjnQJuesI68u4OTLiBFdcbYEdFCoEOf"
              "aS35inz1")
USERS = f"# proxy users\nalice:{ALICE_HASH}\n\ncarol:{CAROL_HASH}\n"

# SHA-crypt test vectors of the specification (https://www.akkadia.org/drepper/SHA-crypt.txt):
# (setting, password, the hash crypt(3) makes).
SHA_CRYPT_VECTORS = [
    ("$5$saltstring", "Hello world!", "$5$saltstring$5B8vYYiY.CVt1RlTTf8KbXBH3hsxY/GNooZaBBGWEc5"),
    ("$5$rounds=10000$saltstringsaltstring", "Hello world!",
     "$5$rounds=10000$saltstringsaltst$3xv.VbSHBb41AL9AvLeujZkZRBAwqFMz2.opqey6IcA"),
    ("$5$rounds=5000$toolongsaltstring", "This is just a test",
     "$5$rounds=5000$toolongsaltstrin$Un/5jzAHMgOGZ5.mWJpuVolil07guHPvOW8mGRcvxa5"),
    ("$5$rounds=1400$anotherlongsaltstring",
     "a very much longer text to encrypt.  This one even stretches over morethan one line.",
     "$5$rounds=1400$anotherlongsalts$Rx.j8H.h8HjEDGomFU8bDkXm3XIUnzyxf12oP84Bnq1"),
    ("$5$rounds=77777$short", "we have a short salt string but not a short password",
     "$5$rounds=77777$short$JiO1O3ZpDAxGJeaDIuqCoEFysAe1mZNJRs3pw0KQRd/"),
    ("$5$rounds=123456$asaltof16chars..", "a short string",
     "$5$rounds=123456$asaltof16chars..$gP3VQ/6X7UUEW3HkBn2w1/Ptq2jxPyzV/cZKmF/wJvD"),
    ("$5$rounds=10$roundstoolow", "the minimum number is still observed",
     "$5$rounds=1000$roundstoolow$yfvwcWrQ8l/K0DAWyuPMDNHpIVlTQebY9l/gL972bIC"),
    ("$6$saltstring", "Hello world!",
     "$6$saltstring$svn8UoSVapNtMuq1ukKS4tPQd8iKwSMHWjl/O817G3uBnIFNjnQJuesI68u4OTLiBFdcbYEdFCoEOfaS35inz1"),
    ("$6$rounds=10000$saltstringsaltstring", "Hello world!",
     ("$6$rounds=10000$saltstringsaltst$OW1/O6BYHV6BcXZu8QVeXbDWra3Oeqh0sbHbbMCVNSnCM/UrjmM0Dp8vOuZeHBy/YTBmSK6"
      "H9qs/y3RnOaw5v.")),
    ("$6$rounds=5000$toolongsaltstring", "This is just a test",
     ("$6$rounds=5000$toolongsaltstrin$lQ8jolhgVRVhY4b5pZKaysCLi0QBxGoNeKQzQ3glMhwllF7oGDZxUhx1yxdYcz/e1JSbq3y6"
      "JMxxl8audkUEm0")),
    ("$6$rounds=1400$anotherlongsaltstring",
     "a very much longer text to encrypt.  This one even stretches over morethan one line.",
     ("$6$rounds=1400$anotherlongsalts$POfYwTEok97VWcjxIiSOjiykti.o/pQs.wPvMxQ6Fm7I6IoYN3CmLs66x9t0oSwbtEW7o7Um"
      "JEiDwGqd8p4ur1")),
    ("$6$rounds=77777$short", "we have a short salt string but not a short password",
     ("$6$rounds=77777$short$WuQyW2YR.hBNpjjRhpYD/ifIw05xdfeEyQoMxIXbkvr0gge1a1x3yRULJ5CCaUeOxFmtlcGZelFl5Cxtg"
      "fiAc0")),
    ("$6$rounds=123456$asaltof16chars..", "a short string",
     ("$6$rounds=123456$asaltof16chars..$BtCwjqMJGx5hrJhZywWvt0RLE8uZ4oPwcelCjmw2kSYu.Ec6ycULevoBK25fs2xXgMNrCz"
      "IMVcgEJAstJeonj1")),
    ("$6$rounds=10$roundstoolow", "the minimum number is still observed",
     ("$6$rounds=1000$roundstoolow$kUMsbe306n21p9R.FRkW3IGn.S9NPN0x50YhH1xhLsPuWGsUSklZt58jaTfF4ZEQpyUNGc0dqbp"
      "BYYBaHHrsX.")),
]

# Made by another implementation (OpenSSL 3.0: openssl passwd -5/-6 -salt SALT PASSWORD), with
# passwords the specification's vectors do not cover: non-ASCII, and a colon.
OPENSSL_VECTORS = [
    ("pässwörd", "$5$abcdefgh$vl6a2mAodUYEe3Mhai26AyjORet86eVRC5bBAu6c/n9"),
    ("p:w", "$6$xyz$GyM6yoCmcnNry2GH2PFsvwDYq8R/WZd.zOjjyGy/4jSmH06AqBBNFAS8AQPnq/rHneNwH9JfodMjWYxJcAz/C."),
]

# crypt_blowfish's test vectors (Openwall), the same for $2a$, $2b$ and $2y$ with these passwords.
BCRYPT_VECTORS = [
    ("U*U", "$2a$05$CCCCCCCCCCCCCCCCCCCCC.E5YPO9kmyuRGyh0XouQYb4YMJKvyOeW"),
    ("U*U*", "$2a$05$CCCCCCCCCCCCCCCCCCCCC.VGOzA784oUp/Z0DY336zx7pLYAy0lwK"),
    ("U*U*U", "$2a$05$XXXXXXXXXXXXXXXXXXXXXOAcXxm9kjPGEMsLznoKqmqw7tc8WCx4a"),
    ("0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789chars after 72 are ignored",
     "$2a$05$abcdefghijklmnopqrstuu5s2v8.iXieOjg/.AySBTTZIIVFJeBui"),
]


def basic(user, password):
    """
    :returns: a C{Proxy-Authorization} field line with Basic credentials.
    """
    token = base64.b64encode(user + b":" + password)
    return b"Proxy-Authorization: Basic " + token + b"\r\n"


ALICE = basic(b"alice", b"alice's secret")




def run_now(function, *args):
    """
    Run a check at once, instead of in a thread.
    """
    return maybeDeferred(function, *args)


class ShaCryptTests(SynchronousTestCase):
    """
    SHA-crypt gives the specification's results, and checks passwords in
    constant time.
    """

    def test_specification_vectors(self):
        """Every test vector of the specification comes out as published."""
        for setting, password, expected in SHA_CRYPT_VECTORS:
            kind, *fields = setting[1:].split("$")
            rounds = int(fields[0][len("rounds="):]) if fields[0].startswith("rounds=") else 5000
            salt = fields[-1]
            self.assertEqual(sha_crypt(kind, password.encode(), salt.encode(), rounds).decode(),
                             expected.rpartition("$")[2], setting)

    def test_verify_vectors(self):
        """A stored hash of each vector accepts its password and nothing else."""
        for _, password, stored in SHA_CRYPT_VECTORS:
            hashed = parse_hash(stored)
            self.assertIsInstance(hashed, ShaCryptHash)
            self.assertTrue(hashed.verify(password.encode()), stored)
            self.assertFalse(hashed.verify(password.encode() + b"!"), stored)
            self.assertFalse(hashed.verify(b""), stored)

    def test_other_implementation(self):
        """Hashes made by OpenSSL of non-ASCII and colon-holding passwords (UTF-8) are accepted."""
        for password, stored in OPENSSL_VECTORS:
            self.assertTrue(parse_hash(stored).verify(password.encode("utf-8")), stored)
            self.assertFalse(parse_hash(stored).verify(password.encode("utf-8")[:-1]), stored)
        self.assertFalse(parse_hash(OPENSSL_VECTORS[0][1]).verify(OPENSSL_VECTORS[0][0].encode("latin-1")))

    def test_constant_time_comparison(self):
        """The checksum is compared with hmac.compare_digest."""
        calls = []
        self.patch(auth.hmac, "compare_digest", lambda a, b: calls.append((a, b)) or a == b)
        stored = SHA_CRYPT_VECTORS[0][2]
        self.assertTrue(parse_hash(stored).verify(b"Hello world!"))
        self.assertEqual(calls, [(stored.rpartition("$")[2].encode(),) * 2])

    def test_too_many_rounds(self):
        """A hash asking for more than a million rounds is refused, not checked for minutes."""
        error = self.assertRaises(ValueError, parse_hash, "$6$rounds=5000000$salt$" + "a" * 86)
        self.assertIn("at most 1000000", str(error))

    def test_malformed(self):
        """A checksum of the wrong length or alphabet, or a salt with a colon, is not a hash."""
        for text in ("$5$salt$" + "a" * 42, "$6$salt$" + "a" * 43, "$5$salt$" + "!" * 43, "$5$sa:lt$" + "a" * 43,
                     "$5$rounds=x$salt$" + "a" * 43, "$5$" + "s" * 17 + "$" + "a" * 43):
            self.assertRaises(ValueError, parse_hash, text)


class BcryptTests(SynchronousTestCase):
    """
    bcrypt hashes are checked by the bcrypt package, in every variant
    htpasswd and crypt(3) make.
    """

    def test_vectors(self):
        """crypt_blowfish's vectors check, as $2a$, $2b$ and $2y$ alike; wrong passwords do not."""
        for password, stored in BCRYPT_VECTORS:
            for prefix in ("$2a$", "$2b$", "$2y$"):
                hashed = parse_hash(prefix + stored[4:])
                self.assertIsInstance(hashed, BcryptHash)
                self.assertTrue(hashed.verify(password.encode()), stored)
                self.assertFalse(hashed.verify(b"x" + password.encode()), stored)

    def test_long_password(self):
        """Past 72 bytes a password is cut, as htpasswd does when it makes the hash (the bcrypt package refuses it)."""
        hashed = parse_hash(BCRYPT_VECTORS[3][1])
        self.assertTrue(hashed.verify(BCRYPT_VECTORS[3][0].encode()[:72] + b"anything else"))

    def test_constant_time_comparison(self):
        """The computed hash is compared with hmac.compare_digest."""
        calls = []
        self.patch(auth.hmac, "compare_digest", lambda a, b: calls.append(b) or a == b)
        self.assertFalse(parse_hash(ALICE_HASH).verify(b"wrong"))
        self.assertEqual(calls, [ALICE_HASH.encode()])

    def test_malformed(self):
        """A truncated hash, a cost out of range or an unknown variant is refused."""
        for text in (ALICE_HASH[:-1], ALICE_HASH.replace("$04$", "$03$"), ALICE_HASH.replace("$04$", "$32$"),
                     ALICE_HASH.replace("$2y$", "$2x$")):
            self.assertRaises(ValueError, parse_hash, text)


class AuthFileParseTests(SynchronousTestCase):
    """
    Auth files: C{user:hash} lines, comments and blank lines; anything else
    is refused naming the file and line, never quoting the hash.
    """

    def test_good_file(self):
        """Comments, blank lines, CRLF line ends and spaces around lines are skipped; users are read."""
        users = parse_auth_file(f"# comment\r\n\r\n  alice:{ALICE_HASH}  \r\n\t# indented comment\ncarol:{CAROL_HASH}")
        self.assertEqual(len(users), 2)
        self.assertTrue(users.verify("alice", b"alice's secret"))
        self.assertTrue(users.verify("carol", b"Hello world!"))
        self.assertFalse(users.verify("alice", b"Hello world!"))

    def test_empty_file(self):
        """A file of comments has no users: every password is wrong."""
        users = parse_auth_file("# nobody yet\n")
        self.assertEqual(len(users), 0)
        self.assertFalse(users.verify("alice", b"alice's secret"))

    def assertBadLine(self, text, line, reason):
        """
        C{text} is refused at C{line} with C{reason}, and the error does not
        quote a hash.
        """
        error = self.assertRaises(AuthFileError, parse_auth_file, text, "users.htpasswd")
        self.assertIn(f"users.htpasswd line {line}: ", str(error))
        self.assertIn(reason, str(error))
        self.assertNotIn(ALICE_HASH[7:], str(error))
        return error

    def test_no_colon(self):
        """A line without a colon is refused."""
        self.assertBadLine(f"alice:{ALICE_HASH}\nbob\n", 2, "expected user:hash")

    def test_bad_user_names(self):
        """An empty user name, or one with a space or a control character, is refused."""
        for user in ("", "al ice", "al\x01ice"):
            self.assertBadLine(f"{user}:{ALICE_HASH}\n", 1, "a user name is 1 to 256 characters")

    def test_duplicate_user(self):
        """A user listed twice is refused, naming both lines."""
        self.assertBadLine(f"alice:{ALICE_HASH}\n#\nalice:{CAROL_HASH}\n", 3, "user 'alice' is already on line 1")

    def test_weak_hashes(self):
        """htpasswd's MD5 and SHA-1 and crypt's MD5 hashes are refused as too weak, with advice."""
        for hashed in ("$apr1$salt$0123456789012345678901", "{SHA}qUqP5cyxm6YcTAhz05Hph5gvu9M=",
                       "$1$salt$0123456789012345678901"):
            error = self.assertBadLine(f"alice:{hashed}\n", 1, "too weak")
            self.assertIn("htpasswd -B", str(error))

    def test_unknown_hashes(self):
        """A plain-text password, DES crypt or yescrypt is refused."""
        self.assertBadLine("alice:secret\n", 1, "not a bcrypt ($2y$) or SHA-crypt ($5$, $6$) hash")
        self.assertBadLine("alice:abJnggxhB/yWI\n", 1, "not a bcrypt")
        self.assertBadLine("alice:$y$j9T$salt$hash\n", 1, "yescrypt ($y$) is not supported")

    def test_malformed_hash(self):
        """A damaged bcrypt hash is refused with the user named."""
        self.assertBadLine(f"alice:{ALICE_HASH[:-3]}\n", 1, "user 'alice': malformed bcrypt hash")

    def test_not_utf8(self):
        """A file that is not UTF-8 is refused naming the line."""
        path = FilePath(self.mktemp())
        path.setContent(f"alice:{ALICE_HASH}\n".encode() + b"b\xffb:" + CAROL_HASH.encode() + b"\n")
        error = self.assertRaises(AuthFileError, AuthFile, path.path)
        self.assertIn(f"{path.path} line 2: not UTF-8 text", str(error))

    def test_missing_file(self):
        """A file that cannot be read is refused naming it."""
        path = FilePath(self.mktemp())
        error = self.assertRaises(AuthFileError, AuthFile, path.path)
        self.assertIn(f"cannot read auth file {path.path}", str(error))


class SpyHash:
    """
    A hash that counts the passwords it is asked to check.
    """

    def __init__(self, password, cost=("spy", 1)):
        self.password = password
        self.cost = cost
        self.checked = []

    def verify(self, password):
        self.checked.append(password)
        return password == self.password


class UsersTests(SynchronousTestCase):
    """
    An unknown user costs the same work as a known one, and is refused even
    with the password of the hash it was checked against.
    """

    def test_unknown_user_checked_against_dummy(self):
        """An unknown user's password is checked against a real entry's hash, and refused whatever it is."""
        alice = SpyHash(b"alice's secret")
        users = Users({"alice": alice})
        self.assertFalse(users.verify("mallory", b"alice's secret"))
        self.assertEqual(alice.checked, [b"alice's secret"])

    def test_known_user(self):
        """A known user's password is checked against its own hash only."""
        alice, carol = SpyHash(b"a"), SpyHash(b"c")
        users = Users({"alice": alice, "carol": carol})
        self.assertTrue(users.verify("carol", b"c"))
        self.assertFalse(users.verify("carol", b"a"))
        self.assertEqual((alice.checked, carol.checked), ([], [b"c", b"a"]))

    def test_dummy_of_most_common_cost(self):
        """The dummy has the cost most entries have, so most refusals take as long as an unknown user's."""
        odd = SpyHash(b"x", ("bcrypt", 12))
        common = [SpyHash(b"y", ("bcrypt", 10)) for _ in range(2)]
        users = Users({"odd": odd, "one": common[0], "two": common[1]})
        users.verify("nobody", b"z")
        self.assertEqual((odd.checked, len(common[0].checked) + len(common[1].checked)), ([], 1))

    def test_real_hashes(self):
        """With real hashes, an unknown user with a known user's password is refused."""
        users = parse_auth_file(USERS)
        self.assertFalse(users.verify("mallory", b"alice's secret"))
        self.assertFalse(users.verify("mallory", b"Hello world!"))


class ParseBasicTests(SynchronousTestCase):
    """
    Basic credentials are read strictly, and refusals never quote them.
    """

    def test_good(self):
        """The user is before the first colon; the password may hold more."""
        token = base64.b64encode(b"alice:pass:word")
        self.assertEqual(parse_basic(b"Basic " + token), (b"alice", b"pass:word"))
        self.assertEqual(parse_basic(b"bAsIc " + token), (b"alice", b"pass:word"))

    def test_refused(self):
        """Another scheme, bad base64, no colon, too long: each refused with its reason, without the credentials."""
        cases = [
            (b"Bearer abc", "does not use the Basic scheme"),
            (b"Basic", "has no credentials"),
            (b"Basic ", "has no credentials"),
            (b"Basic !!!!", "not valid base64"),
            (b"Basic " + base64.b64encode(b"alice:secret")[:-1], "not valid base64"),
            (b"Basic " + base64.b64encode(b"alicesecret"), "no ':' between user and password"),
            (b"Basic " + base64.b64encode(b"alice:" + b"s" * 600), "password is too long"),
            (b"Basic " + b"A" * 5000, "Proxy-Authorization is too long"),
        ]
        for value, reason in cases:
            error = self.assertRaises(ValueError, parse_basic, value)
            self.assertIn(reason, str(error), value[:40])
            self.assertNotIn("secret", str(error))


class AuthFileReloadTests(SynchronousTestCase):
    """
    An auth file reloads atomically: a bad file keeps the users in force.
    """

    def setUp(self):
        self.path = FilePath(self.mktemp())
        self.path.setContent(USERS.encode())
        self.auth_file = AuthFile(self.path.path)
        self.events = EventLoggingObserver.createWithCleanup(self, globalLogPublisher)

    def test_reload(self):
        """A rewritten file is in force after reload."""
        self.path.setContent(f"bob:{ALICE_HASH}\n".encode())
        self.assertTrue(self.auth_file.reload())
        users = self.auth_file.users
        self.assertEqual(("alice" in users, "bob" in users), (False, True))
        self.assertIn("reloaded 1 users from", formatEvent(self.events[-1]))

    def test_bad_reload_keeps_users(self):
        """A broken file is refused with a logged error naming it; the old users stay."""
        before = self.auth_file.users
        self.path.setContent(b"bob\n")
        self.assertFalse(self.auth_file.reload())
        self.assertIs(self.auth_file.users, before)
        [event] = [event for event in self.events if event["log_level"] == LogLevel.error]
        self.assertIn(f"refused to reload {self.path.path}", formatEvent(event))
        self.assertIn("keeping the 2 users in force", formatEvent(event))

    def test_removed_file_keeps_users(self):
        """A file that has gone is refused too."""
        before = self.auth_file.users
        self.path.remove()
        self.assertFalse(self.auth_file.reload())
        self.assertIs(self.auth_file.users, before)


class ManualChecks:
    """
    A C{run_blocking} that holds each check until the test runs it.
    """

    def __init__(self):
        self.pending = []

    def __call__(self, function, *args):
        deferred = Deferred()
        self.pending.append((deferred, function, args))
        return deferred

    def run_all(self):
        pending, self.pending = self.pending, []
        for deferred, function, args in pending:
            deferred.callback(function(*args))


class CountingChecks:
    """
    A C{run_blocking} that runs each check at once and counts them.
    """

    def __init__(self):
        self.calls = []

    def __call__(self, function, *args):
        self.calls.append(args[0])
        return maybeDeferred(function, *args)


class RecordingPool:
    """
    A thread pool that records the work it is given and never runs it.
    """

    def __init__(self):
        self.calls = []

    def callInThreadWithCallback(self, on_result, function, *args, **kwargs):
        self.calls.append((function, args))


class CacheTests(SynchronousTestCase):
    """
    Each credential is checked once; the table is bounded and forgotten on
    reload.
    """

    def setUp(self):
        self.path = FilePath(self.mktemp())
        self.path.setContent(USERS.encode())
        self.auth_file = AuthFile(self.path.path)
        self.checks = CountingChecks()
        self.auth = ProxyAuth(self.auth_file, MemoryReactorClock(), self.checks, cache_size=2)

    def verdict(self, user, password):
        """
        :returns: the verdict on credentials C{user:password}.
        """
        headers = [(b"Proxy-Authorization", basic(user, password)[len(b"Proxy-Authorization: "):-2])]
        return self.successResultOf(self.auth.authenticate(headers))

    def test_checked_once(self):
        """Good credentials presented again are not checked again."""
        for _ in range(3):
            self.assertEqual(self.verdict(b"alice", b"alice's secret").user, "alice")
        self.assertEqual(self.checks.calls, ["alice"])

    def test_failures_not_remembered(self):
        """Wrong credentials are checked every time (and never let through)."""
        for _ in range(2):
            self.assertIsNone(self.verdict(b"alice", b"guess").user)
        self.assertEqual(self.checks.calls, ["alice", "alice"])

    def test_eviction(self):
        """With room for two, a third credential evicts the first, which is then checked again."""
        self.path.setContent(USERS.encode() + f"dave:{ALICE_HASH}\n".encode())
        self.auth_file.reload()
        self.verdict(b"alice", b"alice's secret")
        self.verdict(b"carol", b"Hello world!")
        self.verdict(b"dave", b"alice's secret")
        self.verdict(b"carol", b"Hello world!")
        self.verdict(b"alice", b"alice's secret")
        self.assertEqual(self.checks.calls, ["alice", "carol", "dave", "alice"])

    def test_default_size(self):
        """The table holds at most CACHE_SIZE credentials by default."""
        auth = ProxyAuth(self.auth_file, MemoryReactorClock(), self.checks)
        self.assertEqual(auth._cache_size, CACHE_SIZE)

    def test_reload_forgets(self):
        """After a reload, remembered credentials are checked again, against the new file."""
        self.verdict(b"alice", b"alice's secret")
        self.path.setContent(f"alice:{CAROL_HASH}\n".encode())
        self.auth_file.reload()
        self.assertIsNone(self.verdict(b"alice", b"alice's secret").user)
        self.assertEqual(self.verdict(b"alice", b"Hello world!").user, "alice")
        self.assertEqual(self.checks.calls, ["alice", "alice", "alice"])

    def test_check_across_reload_not_remembered(self):
        """A check that ends after a reload lets its request through but is not remembered for the new file."""
        checks = ManualChecks()
        auth = ProxyAuth(self.auth_file, MemoryReactorClock(), checks)
        headers = [(b"Proxy-Authorization", ALICE[len(b"Proxy-Authorization: "):-2])]
        deciding = auth.authenticate(headers)
        self.path.setContent(f"alice:{CAROL_HASH}\n".encode())
        self.auth_file.reload()
        checks.run_all()
        self.assertEqual(self.successResultOf(deciding).user, "alice")
        again = auth.authenticate(headers)
        checks.run_all()
        self.assertIsNone(self.successResultOf(again).user)

    def test_checked_in_thread_pool(self):
        """By default a password is checked in the reactor's thread pool, not on the reactor thread."""
        pool = RecordingPool()
        reactor = MemoryReactorClock()
        reactor.getThreadPool = lambda: pool
        auth = ProxyAuth(self.auth_file, reactor)
        headers = [(b"Proxy-Authorization", ALICE[len(b"Proxy-Authorization: "):-2])]
        deciding = auth.authenticate(headers)
        self.assertNoResult(deciding)
        [(function, args)] = pool.calls
        self.assertEqual((function, args), (self.auth_file.users.verify, ("alice", b"alice's secret")))

    def test_no_password_in_table(self):
        """The table's keys are HMACs, not the credentials."""
        self.verdict(b"alice", b"alice's secret")
        [key] = self.auth._cache
        self.assertNotIn(b"secret", key)
        self.assertEqual(len(key), 32)


class AuthProxyTestCase(SynchronousTestCase):
    """
    A L{ProxyFactory} requiring the users of L{USERS}, on a memory reactor,
    and one client connected to it.
    """

    def setUp(self):
        self.reactor = MemoryReactorClock()
        self.factory = make_factory(self.reactor, "127.0.0.66")
        self.path = FilePath(self.mktemp())
        self.path.setContent(USERS.encode())
        self.checks = CountingChecks()
        self.factory.auth = ProxyAuth(AuthFile(self.path.path), self.reactor, self.checks)
        self.access = []
        self.factory.access_log.add_observer(self.access.append)
        self.events = EventLoggingObserver.createWithCleanup(self, globalLogPublisher)
        self.protocol, self.transport = connect(self.factory, CLIENT)

    def send(self, data):
        """
        Deliver C{data} from the client.
        """
        self.protocol.dataReceived(data)

    def origin(self, index=-1):
        """
        Let connection attempt C{index} succeed.

        :returns: the origin's transport, where the proxy writes.
        """
        return complete_connection(self.reactor, index)[1]

    def assert407(self, cause, keep=True):
        """
        The client got a 407 page naming C{cause} with the Basic challenge,
        nothing went upstream, and the connection stays open if C{keep}.

        :returns: the page's fields.
        """
        data = self.transport.value()
        status, headers, body = split_response(data)
        self.assertEqual(status, b"HTTP/1.1 407 Proxy Authentication Required", data)
        self.assertIn((b"Proxy-Authenticate", b'Basic realm="netproxy"'), headers)
        self.assertIn((b"Content-Type", b"text/html; charset=utf-8"), headers)
        self.assertIn((b"Content-Length", b"%d" % (len(body),)), headers)
        self.assertIn(html.escape(cause).encode(), body)
        self.assertEqual(((b"Connection", b"close") in headers, self.transport.connected), (not keep, keep))
        self.assertEqual(self.reactor.tcpClients, [])
        self.assertEqual(self.flushLoggedErrors(), [])
        return headers

    def logged_text(self):
        """
        :returns: every main log event and access line, formatted, as one text.
        """
        lines = [formatEvent(event) for event in self.events]
        lines += [format_access_line(event) for event in self.access]
        return "\n".join(lines)


class RefusalTests(AuthProxyTestCase):
    """
    Requests without good credentials get 407 with the Basic challenge and
    never go upstream; the connection stays open for the next try.
    """

    def test_no_credentials(self):
        """A request without Proxy-Authorization gets 407, and the connection stays open."""
        self.send(get())
        self.assert407("proxy authentication required")

    def test_retry_on_same_connection(self):
        """After a 407 the client retries with credentials on the same connection and is served."""
        self.send(get())
        self.assert407("proxy authentication required")
        self.transport.clear()
        self.send(get(headers=ALICE))
        origin = self.origin()
        self.assertEqual(origin.value(), b"GET / HTTP/1.1\r\nHost: 127.0.0.1:8000\r\nVia: 1.1 netproxy\r\n\r\n")
        origin.protocol.dataReceived(OK)
        self.assertEqual(self.transport.value(), OK_FORWARDED)
        self.assertTrue(self.transport.connected)

    def test_wrong_password_and_unknown_user_alike(self):
        """A wrong password and an unknown user get the same page; the log tells them apart, naming known users only."""
        self.send(get(headers=basic(b"alice", b"guess")))
        self.assert407("wrong user name or password")
        wrong_password = self.transport.value()
        self.transport.clear()
        self.send(get(headers=basic(b"mallory", b"guess")))
        self.assert407("wrong user name or password")
        self.assertEqual(self.transport.value(), wrong_password)
        logged = self.logged_text()
        self.assertIn("127.0.0.1:40000: 407 wrong password for user alice", logged)
        self.assertIn("127.0.0.1:40000: 407 unknown user", logged)
        self.assertNotIn("mallory", logged)

    def test_malformed_credentials(self):
        """Bad base64, no colon, another scheme, a huge value, a non-UTF-8 name, two fields: each 407, no crash."""
        cases = [
            (b"Proxy-Authorization: Basic %%%%\r\n", "not valid base64"),
            (b"Proxy-Authorization: Basic " + base64.b64encode(b"alice") + b"\r\n", "no &#x27;:&#x27;"),
            (b"Proxy-Authorization: Digest username=\"alice\"\r\n", "does not use the Basic scheme"),
            (b"Proxy-Authorization: Basic " + b"QUFB" * 3000 + b"\r\n", "Proxy-Authorization is too long"),
            (basic(b"\xffalice", b"alice's secret"), "the user name is not UTF-8"),
            (ALICE + ALICE, "more than one Proxy-Authorization field"),
            (b"Proxy-Authorization:\r\n", "does not use the Basic scheme"),
        ]
        for header, cause in cases:
            self.transport.clear()
            self.send(get(headers=header))
            self.assertIn(b"HTTP/1.1 407 ", self.transport.value(), header[:60])
            self.assertIn(cause.encode(), self.transport.value(), header[:60])
            self.assertTrue(self.transport.connected, header[:60])
        self.assertEqual(self.reactor.tcpClients, [])
        self.assertEqual(self.checks.calls, [])
        self.assertEqual(self.flushLoggedErrors(), [])

    def test_connect(self):
        """CONNECT without credentials gets 407 and no tunnel; with them, the tunnel opens."""
        connect_request = b"CONNECT 127.0.0.1:443 HTTP/1.1\r\nHost: 127.0.0.1:443\r\n"
        self.send(connect_request + b"\r\n")
        self.assert407("proxy authentication required")
        self.send(connect_request + ALICE + b"\r\n")
        self.assertEqual(self.reactor.tcpClients[0][:2], ("127.0.0.1", 443))

    def test_http10_closes(self):
        """An HTTP/1.0 client that did not ask to keep the connection has it closed after the 407."""
        self.send(get(version=b"1.0"))
        self.assert407("proxy authentication required", keep=False)

    def test_http10_keep_alive(self):
        """An HTTP/1.0 client that asked for keep-alive keeps its connection, and is told so."""
        self.send(get(version=b"1.0", headers=b"Connection: keep-alive\r\n"))
        headers = self.assert407("proxy authentication required")
        self.assertIn((b"Connection", b"keep-alive"), headers)

    def test_connection_close(self):
        """A client that said Connection: close has its connection closed after the 407."""
        self.send(get(headers=b"Connection: close\r\n"))
        self.assert407("proxy authentication required", keep=False)

    def test_request_with_body_closes(self):
        """A request with a body gets 407 and the connection is closed, its body unread."""
        self.send(get(method=b"POST", headers=b"Content-Length: 5\r\n") + b"hello")
        self.assert407("proxy authentication required", keep=False)

    def test_pipelined_closes(self):
        """Requests pipelined after a refused one are not read: 407 once, then the connection is closed."""
        self.send(get() + get(b"/second"))
        self.assert407("proxy authentication required", keep=False)
        self.assertEqual(self.transport.value().count(b"HTTP/1.1 "), 1)

    def test_head(self):
        """A 407 to HEAD has the page's length but not its body, so the kept connection stays in step."""
        self.send(get(method=b"HEAD"))
        status, headers, body = split_response(self.transport.value())
        self.assertEqual((status, body), (b"HTTP/1.1 407 Proxy Authentication Required", b""))
        self.assertIn((b"Proxy-Authenticate", b'Basic realm="netproxy"'), headers)
        self.assertNotEqual(dict(headers)[b"Content-Length"], b"0")
        self.transport.clear()
        self.send(get(headers=ALICE))
        self.assertEqual(len(self.reactor.tcpClients), 1)
        self.assertEqual(self.transport.value(), b"")

    def test_access_log(self):
        """A 407 is in the access log with its status and page size, and no user."""
        self.send(get())
        [event] = self.access
        self.assertEqual((event["status"], event["size"], event["user"]),
                         (407, len(split_response(self.transport.value())[2]), None))
        self.assertTrue(format_access_line(event).startswith('127.0.0.1 - - ['))

    def test_origin_form_pages(self):
        """The proxy's own pages (origin-form, --admin networks) need no proxy credentials."""
        self.send(b"GET /status HTTP/1.1\r\nHost: 127.0.0.1:8080\r\n\r\n")
        self.assertTrue(self.transport.value().startswith(b"HTTP/1.1 200 OK\r\n"), self.transport.value()[:200])


class AdmittedTests(AuthProxyTestCase):
    """
    Requests with good credentials go through as usual; the credentials go
    no further, and only the user name is logged.
    """

    def test_forwarded_without_credentials(self):
        """A request with good credentials is forwarded without Proxy-Authorization."""
        self.send(get(headers=b"Accept: */*\r\n" + ALICE))
        self.assertEqual(self.origin().value(), b"GET / HTTP/1.1\r\nHost: 127.0.0.1:8000\r\nAccept: */*\r\n"
                                                b"Via: 1.1 netproxy\r\n\r\n")

    def test_sha_crypt_user(self):
        """A user with a SHA-crypt hash is let through with its password."""
        self.send(get(headers=basic(b"carol", b"Hello world!")))
        self.assertEqual(len(self.reactor.tcpClients), 1)

    def test_user_in_access_log(self):
        """The access line's user field names the authenticated user; the next unauthenticated request has none."""
        self.send(get(headers=ALICE))
        self.origin().protocol.dataReceived(OK)
        self.send(get())
        first, second = self.access
        self.assertEqual((first["user"], second["user"]), ("alice", None))
        self.assertTrue(format_access_line(first).startswith("127.0.0.1 - alice ["), format_access_line(first))
        self.assertTrue(format_access_line(second).startswith("127.0.0.1 - - ["), format_access_line(second))

    def test_tunnel_logs_user(self):
        """A CONNECT tunnel's access line names its user."""
        self.send(b"CONNECT 127.0.0.1:443 HTTP/1.1\r\n" + ALICE + b"\r\n")
        destination = self.origin()
        destination.loseConnection()
        [event] = self.access
        self.assertEqual((event["method"], event["user"]), (b"CONNECT", "alice"))

    def test_checked_once_per_connection_and_across(self):
        """Good credentials are checked once, however many requests and connections carry them."""
        self.send(get(headers=ALICE))
        origin = self.origin()
        origin.protocol.dataReceived(OK)
        self.send(get(b"/second", headers=ALICE))
        self.assertIn(b"GET /second HTTP/1.1\r\n", origin.value())
        protocol, _ = connect(self.factory, CLIENT)
        protocol.dataReceived(get(b"/third", headers=ALICE))
        self.assertIn(b"GET /third HTTP/1.1\r\n", self.origin().value())
        self.assertEqual(self.checks.calls, ["alice"])

    def test_credentials_never_logged(self):
        """Neither the password nor the encoded credentials appear in any log, refused or admitted."""
        self.send(get(headers=basic(b"alice", b"guessed secret")))
        self.send(get(headers=ALICE))
        self.origin().protocol.dataReceived(OK)
        logged = self.logged_text()
        self.assertIn("alice", logged)
        for secret in ("alice's secret", "guessed secret", base64.b64encode(b"alice:alice's secret").decode(),
                       base64.b64encode(b"alice:guessed secret").decode()):
            self.assertNotIn(secret, logged)


class PendingCheckTests(AuthProxyTestCase):
    """
    While a password is checked off the reactor thread, the connection is
    not read from; the request goes on when the check ends, unless the
    client has gone.
    """

    def setUp(self):
        super().setUp()
        self.manual = ManualChecks()
        self.factory.auth = ProxyAuth(AuthFile(self.path.path), self.reactor, self.manual)

    def test_paused_then_forwarded(self):
        """The client's connection is paused during the check and resumed, forwarded, after it."""
        self.send(get(headers=ALICE))
        self.assertEqual((self.transport.producerState, self.reactor.tcpClients), ("paused", []))
        self.manual.run_all()
        self.assertEqual(self.origin().value(), b"GET / HTTP/1.1\r\nHost: 127.0.0.1:8000\r\nVia: 1.1 netproxy\r\n\r\n")

    def test_paused_then_refused(self):
        """A wrong password found after the pause gets 407, and reading resumes for the next try."""
        self.send(get(headers=basic(b"alice", b"guess")))
        self.assertEqual(self.transport.value(), b"")
        self.manual.run_all()
        self.assert407("wrong user name or password")
        self.assertEqual(self.transport.producerState, "producing")

    def test_client_gone(self):
        """A client that leaves during the check starts nothing."""
        self.send(get(headers=ALICE))
        self.transport.loseConnection()
        self.manual.run_all()
        self.assertEqual((self.reactor.tcpClients, self.protocol.exchange), ([], None))
        self.assertEqual(self.flushLoggedErrors(), [])

    def test_body_kept(self):
        """Bytes that came with the head (a body) are forwarded once the check passes."""
        self.send(get(method=b"POST", headers=ALICE + b"Content-Length: 5\r\n") + b"hello")
        self.manual.run_all()
        self.assertTrue(self.origin().value().endswith(b"\r\n\r\nhello"))

    def test_check_fails(self):
        """A check that raises (a bug) is logged and answered 500, not left hanging."""
        self.send(get(headers=ALICE))
        [(deferred, _, _)] = self.manual.pending
        deferred.errback(RuntimeError("boom"))
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)
        self.assertTrue(self.transport.value().startswith(b"HTTP/1.1 500 "))
        self.assertFalse(self.transport.connected)


class TapTests(SynchronousTestCase):
    """
    C{--auth-file} is checked at start-up and reloaded on SIGHUP.
    """

    def parse(self, *argv):
        options = tap.Options()
        options.parseOptions(["http", "--no-cache", *argv])
        return options.subOptions

    def test_auth_file(self):
        """--auth-file puts a gate on the proxy's factory and its reload on SIGHUP."""
        path = FilePath(self.mktemp())
        path.setContent(USERS.encode())
        options = self.parse("--auth-file", path.path)
        reactor = UDPMemoryReactor()
        service = tap.http_service(options, reactor)
        service.privilegedStartService()
        service.startService()
        self.addCleanup(service.stopService)
        [(_, factory, _, _)] = reactor.tcpServers
        self.assertIsInstance(factory.auth, ProxyAuth)
        self.assertIs(factory.auth.auth_file, options["auth"])
        [reloader] = [child for child in service if isinstance(child, ReloadOnHangup)]
        path.setContent(f"bob:{ALICE_HASH}\n".encode())
        reloader.reload()
        self.assertIn("bob", factory.auth.auth_file.users)

    def test_no_auth_file(self):
        """Without --auth-file the proxy asks for no credentials."""
        reactor = UDPMemoryReactor()
        service = tap.http_service(self.parse(), reactor)
        service.startService()
        self.addCleanup(service.stopService)
        [(_, factory, _, _)] = reactor.tcpServers
        self.assertIsNone(getattr(factory, "auth", None))
        self.assertEqual([child for child in service if isinstance(child, ReloadOnHangup)], [])

    def test_bad_auth_file(self):
        """A bad auth file stops start-up with a message naming the option, the file and the line."""
        path = FilePath(self.mktemp())
        path.setContent(b"alice:$apr1$salt$0123456789012345678901\n")
        error = self.assertRaises(UsageError, self.parse, "--auth-file", path.path)
        self.assertTrue(str(error).startswith(f"--auth-file: {path.path} line 1: user 'alice': "), str(error))

    def test_missing_auth_file(self):
        """A missing auth file stops start-up naming the option."""
        error = self.assertRaises(UsageError, self.parse, "--auth-file", self.mktemp())
        self.assertTrue(str(error).startswith("--auth-file: cannot read auth file"), str(error))
