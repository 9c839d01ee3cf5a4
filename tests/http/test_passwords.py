"""
Tests for L{netproxy.http.passwords}: htpasswd-style files, bcrypt and
SHA-crypt hashes (with the published test vectors), the table of users and
the reload of the file.
"""

from twisted.internet.testing import EventLoggingObserver
from twisted.logger import LogLevel, formatEvent, globalLogPublisher
from twisted.python.filepath import FilePath
from twisted.python.usage import UsageError
from twisted.trial.unittest import SynchronousTestCase

from netproxy.errors import AuthFileError
from netproxy.http import passwords
from netproxy.http.passwords import (
    AuthFile,
    MAX_ROUNDS,
    BcryptHash,
    ShaCryptHash,
    Users,
    auth_file_option,
    parse_auth_file,
    parse_hash,
    sha_crypt,
)
from tests.password_helpers import ALICE_HASH, CAROL_HASH, USERS

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
        """A stored hash of each vector within MAX_ROUNDS accepts its password and nothing else."""
        for _, password, stored in SHA_CRYPT_VECTORS:
            if "rounds=77777$" in stored or "rounds=123456$" in stored:
                continue
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
        self.patch(passwords.hmac, "compare_digest", lambda a, b: calls.append((a, b)) or a == b)
        stored = SHA_CRYPT_VECTORS[0][2]
        self.assertTrue(parse_hash(stored).verify(b"Hello world!"))
        self.assertEqual(calls, [(stored.rpartition("$")[2].encode(),) * 2])

    def test_too_many_rounds(self):
        """A hash asking for more than MAX_ROUNDS (50,000) rounds is refused, naming the maximum; as many is taken."""
        self.assertEqual(MAX_ROUNDS, 50_000)
        for rounds in (50_001, 77_777, 1_000_000, 5_000_000, 9_999_999_999):
            error = self.assertRaises(ValueError, parse_hash, f"$6$rounds={rounds}$salt$" + "a" * 86)
            self.assertIn(f"SHA-crypt hash with {rounds} rounds: at most 50000 are accepted", str(error))
            self.assertRaises(ValueError, parse_hash, f"$5$rounds={rounds}$salt$" + "a" * 43)
        self.assertIsInstance(parse_hash("$6$rounds=50000$salt$" + "a" * 86), ShaCryptHash)
        # The specification's vectors with more rounds are refused too.
        [stored] = [stored for _, _, stored in SHA_CRYPT_VECTORS if stored.startswith("$6$rounds=77777$")]
        self.assertRaises(ValueError, parse_hash, stored)

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
        self.patch(passwords.hmac, "compare_digest", lambda a, b: calls.append(b) or a == b)
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

    def test_too_many_rounds(self):
        """A SHA-crypt hash with more rounds than the maximum is refused at its line, naming the maximum."""
        error = self.assertBadLine(f"alice:{ALICE_HASH}\n# next\ncarol:$6$rounds=1000000$salt$" + "a" * 86, 3,
                                   "user 'carol': SHA-crypt hash with 1000000 rounds: at most 50000 are accepted")
        self.assertIn("bcrypt", str(error))

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

    def test_empty_file_warned(self):
        """An empty file is accepted, at start and on reload, with a warning that every request will get 407."""
        self.path.setContent(b"# nobody yet\n")
        auth_file = AuthFile(self.path.path)
        self.assertEqual(len(auth_file.users), 0)
        self.assertTrue(self.auth_file.reload())
        self.assertEqual(len(self.auth_file.users), 0)
        warnings = [formatEvent(event) for event in self.events if event["log_level"] == LogLevel.warn]
        self.assertEqual(warnings, [f"{self.path.path} lists no user: every request will be refused with 407"] * 2)

    def test_too_many_rounds_keeps_users(self):
        """A reload meeting a SHA-crypt hash with too many rounds is refused naming the line; the old users stay."""
        before = self.auth_file.users
        self.path.setContent(b"carol:$6$rounds=1000000$salt$" + b"a" * 86 + b"\n")
        self.assertFalse(self.auth_file.reload())
        self.assertIs(self.auth_file.users, before)
        [event] = [event for event in self.events if event["log_level"] == LogLevel.error]
        self.assertIn("line 1: user 'carol': SHA-crypt hash with 1000000 rounds: at most 50000", formatEvent(event))

    def test_removed_file_keeps_users(self):
        """A file that has gone is refused too."""
        before = self.auth_file.users
        self.path.remove()
        self.assertFalse(self.auth_file.reload())
        self.assertIs(self.auth_file.users, before)


class AuthFileOptionTests(SynchronousTestCase):
    """
    L{auth_file_option} reads C{--auth-file} for the proxies' options.
    """

    def test_none(self):
        """Without the option there is no file."""
        self.assertIsNone(auth_file_option(None))

    def test_read(self):
        """A file of users is read into an AuthFile."""
        path = self.mktemp()
        with open(path, "w") as file:
            file.write(f"alice:{ALICE_HASH}\n")
        self.assertIn("alice", auth_file_option(path).users)

    def test_bad_file(self):
        """A missing or malformed file stops start-up with an error naming the option."""
        malformed = self.mktemp()
        with open(malformed, "w") as file:
            file.write("alice\x00no-hash\n")
        for path in ("/nonexistent/users", malformed):
            with self.subTest(path=path):
                error = self.assertRaises(UsageError, auth_file_option, path)
                self.assertTrue(str(error).startswith("--auth-file: "), str(error))
