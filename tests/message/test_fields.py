"""
Tests for L{netproxy.message.fields}: tolerant reading of the reverse proxy
protocol's messages, and answers written in the peer's own types.
"""

import hashlib

from twisted.trial.unittest import SynchronousTestCase

from netproxy.errors import BadRequest
from netproxy.message.fields import (
    ACK,
    DATA,
    ERROR,
    SETUP,
    Data,
    Setup,
    ack_for,
    error_for,
    identity,
    message_type,
    policy_of,
    read_data,
    read_setup,
    sha1_hex,
)


def sha1(text):
    return hashlib.sha1(text.encode("utf-8")).hexdigest()


class MessageTypeTests(SynchronousTestCase):
    def test_numbers(self):
        """Types 0 to 3 sent as numbers are read as such."""
        for kind in (DATA, SETUP, ACK, ERROR):
            self.assertEqual(message_type({"type": kind}), kind)
        self.assertEqual((DATA, SETUP, ACK, ERROR), (0, 1, 2, 3))

    def test_digit_strings(self):
        """Types sent as strings of digits, surrounding spaces allowed, are read as numbers."""
        self.assertEqual(message_type({"type": "0"}), 0)
        self.assertEqual(message_type({"type": " 1 "}), 1)
        self.assertEqual(message_type({"type": "2"}), 2)
        self.assertEqual(message_type({"type": "3\n"}), 3)

    def test_refused(self):
        """Booleans, fractions, words, unknown numbers and non-ASCII digits are refused, naming type."""
        for bad in (True, False, 1.0, 0.5, "abc", "", " ", 7, "7", -1, "-1", "1.0", None, [1], {"a": 1}, "\u0661"):
            error = self.assertRaises(BadRequest, message_type, {"type": bad})
            self.assertIn("type", str(error))

    def test_missing(self):
        """A message without a type is refused, naming the missing field."""
        error = self.assertRaises(BadRequest, message_type, {"srcid": 1})
        self.assertEqual(str(error), "missing field 'type'")

    def test_negative_message_is_readable(self):
        """A negative type is refused with a sentence that has no placeholder in it."""
        error = self.assertRaises(BadRequest, message_type, {"type": -1})
        self.assertEqual(str(error), "type must be at least 0, got -1")


class PolicyTests(SynchronousTestCase):
    def test_either_spelling(self):
        """The policy is read from privPoliId or privPolyId, with the spelling used."""
        self.assertEqual(policy_of({"privPoliId": "PP_1"}), ("privPoliId", "PP_1"))
        self.assertEqual(policy_of({"privPolyId": "PP_1"}), ("privPolyId", "PP_1"))

    def test_number_policy(self):
        """A policy sent as a number is read as its text."""
        self.assertEqual(policy_of({"privPoliId": 7}), ("privPoliId", "7"))

    def test_refused(self):
        """An empty, boolean, null or structured policy is refused, naming the key used."""
        for key in ("privPoliId", "privPolyId"):
            for bad in ("", True, None, [], {}, 1.5):
                error = self.assertRaises(BadRequest, policy_of, {key: bad})
                self.assertIn(key, str(error))

    def test_missing(self):
        """A message with neither spelling is refused, naming the policy field."""
        error = self.assertRaises(BadRequest, policy_of, {"type": 0})
        self.assertIn("privPoliId", str(error))


class ReadSetupTests(SynchronousTestCase):
    def test_numbers(self):
        """A setup with a numeric id and port is read."""
        setup = read_setup({"type": 1, "id": 100, "privPolyId": "PP_1", "listenport": 124})
        self.assertEqual(setup, Setup(server_id=100, policy="PP_1", listen_port=124))

    def test_strings(self):
        """A setup with id and port as strings keeps the id as sent and reads the port as a number."""
        setup = read_setup({"type": "1", "id": "100", "privPolyId": "PP_1", "listenport": "124"})
        self.assertEqual(setup, Setup(server_id="100", policy="PP_1", listen_port=124))

    def test_other_spelling(self):
        """A setup may spell the policy key privPoliId."""
        setup = read_setup({"type": 1, "id": "alpha", "privPoliId": "PP_2", "listenport": 65535})
        self.assertEqual(setup, Setup(server_id="alpha", policy="PP_2", listen_port=65535))

    def test_missing_fields(self):
        """A setup missing a field is refused, naming the field."""
        full = {"type": 1, "id": 100, "privPolyId": "PP_1", "listenport": 124}
        for field, named in (("id", "'id'"), ("privPolyId", "privPoliId"), ("listenport", "'listenport'")):
            message = dict(full)
            del message[field]
            error = self.assertRaises(BadRequest, read_setup, message)
            self.assertIn("missing field", str(error))
            self.assertIn(named, str(error))

    def test_bad_ports(self):
        """Ports outside 1 to 65535, or not numbers, are refused, naming listenport."""
        for bad in (0, "0", 70000, "70000", 65536, -1, "-1", "x", "", None, True, 124.0, "124.5"):
            message = {"type": 1, "id": 100, "privPolyId": "PP_1", "listenport": bad}
            error = self.assertRaises(BadRequest, read_setup, message)
            self.assertIn("listenport", str(error))

    def test_bad_ids(self):
        """An id that is empty, boolean, null, fractional or structured is refused, naming id."""
        for bad in ("", True, None, 1.5, [], {}):
            message = {"type": 1, "id": bad, "privPolyId": "PP_1", "listenport": 124}
            error = self.assertRaises(BadRequest, read_setup, message)
            self.assertIn("id", str(error))


class ReadDataTests(SynchronousTestCase):
    def test_numbers(self):
        """A data message with numeric fields is read, keeping the client id and key spelling."""
        data = read_data({"type": 0, "srcid": 50, "privPoliId": "PP_1", "payloadsize": 5, "payload": "hello"})
        self.assertEqual(data, Data(client_id=50, policy_key="privPoliId", policy="PP_1", payload="hello"))

    def test_strings(self):
        """A data message with string fields and the other key spelling is read."""
        data = read_data({"type": "0", "srcid": "50", "privPolyId": "PP_1", "payloadsize": "5", "payload": "hello"})
        self.assertEqual(data, Data(client_id="50", policy_key="privPolyId", policy="PP_1", payload="hello"))

    def test_payloadsize_optional(self):
        """payloadsize may be left out, and an empty payload is a payload."""
        data = read_data({"type": 0, "srcid": 50, "privPoliId": "PP_1", "payload": ""})
        self.assertEqual(data.payload, "")

    def test_payloadsize_not_checked_against_payload(self):
        """A payloadsize that does not match the payload's length is not an error."""
        data = read_data({"type": 0, "srcid": 50, "privPoliId": "PP_1", "payloadsize": 99, "payload": "hi"})
        self.assertEqual(data.payload, "hi")

    def test_bad_payloadsize(self):
        """A payloadsize that is present but not a number is refused, naming it."""
        for bad in ("x", "", None, 1.5, True, -1, [5]):
            message = {"type": 0, "srcid": 50, "privPoliId": "PP_1", "payloadsize": bad, "payload": "hello"}
            error = self.assertRaises(BadRequest, read_data, message)
            self.assertIn("payloadsize", str(error))

    def test_missing_fields(self):
        """A data message missing srcid, policy or payload is refused, naming the field."""
        full = {"type": 0, "srcid": 50, "privPoliId": "PP_1", "payloadsize": 5, "payload": "hello"}
        for field in ("srcid", "privPoliId", "payload"):
            message = dict(full)
            del message[field]
            error = self.assertRaises(BadRequest, read_data, message)
            self.assertEqual(str(error), f"missing field '{field}'")

    def test_payload_must_be_text(self):
        """A payload that is not a string is refused, naming payload."""
        for bad in (123, None, True, ["a"], {"a": 1}):
            message = {"type": 0, "srcid": 50, "privPoliId": "PP_1", "payload": bad}
            error = self.assertRaises(BadRequest, read_data, message)
            self.assertIn("payload must be a string", str(error))

    def test_bad_srcid(self):
        """A srcid that is empty, boolean or null is refused, naming srcid."""
        for bad in ("", False, None, 2.5):
            message = {"type": 0, "srcid": bad, "privPoliId": "PP_1", "payload": "hello"}
            error = self.assertRaises(BadRequest, read_data, message)
            self.assertIn("srcid", str(error))


class AckTests(SynchronousTestCase):
    def test_digest(self):
        """The ack's payload is the SHA-1 hex digest of the payload's UTF-8 bytes."""
        for payload in ("hello", "h\u00e9llo \u2603 \U0001f600", ""):
            message = {"type": 0, "srcid": 50, "privPoliId": "PP_1", "payload": payload}
            self.assertEqual(ack_for(message, 100)["payload"], sha1(payload))
            self.assertEqual(sha1_hex(payload), sha1(payload))
        self.assertEqual(sha1_hex(""), "da39a3ee5e6b4b0d3255bfef95601890afd80709")

    def test_numbers_answered_with_numbers(self):
        """A client that sent numbers gets numbers back, destid being its own srcid."""
        message = {"type": 0, "srcid": 50, "privPoliId": "PP_1", "payloadsize": 5, "payload": "hello"}
        self.assertEqual(
            ack_for(message, 100),
            {"type": 2, "srcid": 100, "destid": 50, "payloadsize": 40, "payload": sha1("hello")},
        )

    def test_strings_answered_with_strings(self):
        """A client that sent strings gets strings back for type, srcid and payloadsize."""
        message = {"type": "0", "srcid": "50", "privPolyId": "PP_1", "payloadsize": "5", "payload": "hello"}
        self.assertEqual(
            ack_for(message, 100),
            {"type": "2", "srcid": "100", "destid": "50", "payloadsize": "40", "payload": sha1("hello")},
        )

    def test_mixed_types_followed_field_by_field(self):
        """Each field of the ack follows the type of the matching field the client sent."""
        message = {"type": 0, "srcid": "50", "privPoliId": "PP_1", "payloadsize": 5, "payload": "hello"}
        ack = ack_for(message, 100)
        self.assertEqual((ack["type"], ack["srcid"], ack["destid"], ack["payloadsize"]), (2, "100", "50", 40))
        message = {"type": "0", "srcid": 50, "privPoliId": "PP_1", "payloadsize": "5", "payload": "hello"}
        ack = ack_for(message, 100)
        self.assertEqual((ack["type"], ack["srcid"], ack["destid"], ack["payloadsize"]), ("2", 100, 50, "40"))

    def test_destid_exactly_as_sent(self):
        """destid is the client's srcid unchanged, spaces and leading zeros included."""
        for srcid in (" 50", "050", "client-7", 0, -3):
            message = {"type": 0, "srcid": srcid, "privPoliId": "PP_1", "payload": "x"}
            self.assertEqual(ack_for(message, 100)["destid"], srcid)

    def test_payloadsize_left_out(self):
        """A client that sent no payloadsize gets a numeric one."""
        message = {"type": "0", "srcid": "50", "privPoliId": "PP_1", "payload": "hello"}
        self.assertEqual(ack_for(message, 100)["payloadsize"], 40)

    def test_word_server_id(self):
        """A server id that is a word is sent as that word."""
        for srcid in (50, "50"):
            message = {"type": 0, "srcid": srcid, "privPoliId": "PP_1", "payload": "x"}
            self.assertEqual(ack_for(message, "alpha")["srcid"], "alpha")

    def test_fields(self):
        """An ack carries type, srcid, destid, payloadsize and payload, and no policy."""
        message = {"type": 0, "srcid": 50, "privPoliId": "PP_1", "payloadsize": 1, "payload": "x"}
        self.assertEqual(sorted(ack_for(message, 100)), ["destid", "payload", "payloadsize", "srcid", "type"])

    def test_reads_back(self):
        """An ack is itself a message of type 2."""
        message = {"type": "0", "srcid": "50", "privPoliId": "PP_1", "payload": "x"}
        self.assertEqual(message_type(ack_for(message, 100)), ACK)


class ErrorTests(SynchronousTestCase):
    def test_defaults(self):
        """Without a client message, an error has a numeric type 3 and the key privPoliId."""
        self.assertEqual(error_for("boom"), {"type": 3, "error": "boom", "privPoliId": None})
        self.assertEqual(error_for("boom", "PP_1"), {"type": 3, "error": "boom", "privPoliId": "PP_1"})

    def test_copies_client_spelling_and_types(self):
        """An error copies the client's policy key spelling and sends type as the client did."""
        message = {"type": "0", "srcid": "50", "privPolyId": "PP_1", "payload": "x"}
        self.assertEqual(error_for("down", "PP_1", message), {"type": "3", "error": "down", "privPolyId": "PP_1"})
        message = {"type": 0, "srcid": 50, "privPoliId": "PP_1", "payload": "x"}
        self.assertEqual(error_for("down", "PP_1", message), {"type": 3, "error": "down", "privPoliId": "PP_1"})

    def test_unreadable_message(self):
        """A client message that is not an object gives the default error."""
        for message in (None, [], "text", 5):
            self.assertEqual(error_for("bad", None, message), {"type": 3, "error": "bad", "privPoliId": None})

    def test_reads_back(self):
        """An error is itself a message of type 3."""
        self.assertEqual(message_type(error_for("x", message={"type": " 0 "})), ERROR)


class IdentityTests(SynchronousTestCase):
    def test_number_and_string_same(self):
        """An id sent as a number and as a string name the same server."""
        self.assertEqual(identity("100"), identity(100))
        self.assertEqual(identity(" 100 "), identity(100))

    def test_different_ids(self):
        """Different ids stay different."""
        self.assertNotEqual(identity(100), identity(10))
        self.assertNotEqual(identity("alpha"), identity("beta"))
