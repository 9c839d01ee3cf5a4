# -*- test-case-name: tests.message.test_fields -*-
"""
The messages of the reverse proxy protocol (data, setup, ack, error), read
tolerantly and written in the peer's own types.

Peers in the wild send C{type}, ids and ports as numbers or as strings and
spell the policy key C{privPoliId} or C{privPolyId}; every reader here
accepts all of these, and every writer answers in the types the peer used.
"""

import hashlib
from dataclasses import dataclass
from typing import Any

from netproxy.errors import BadRequest

DATA, SETUP, ACK, ERROR = 0, 1, 2, 3
POLICY_KEYS = ("privPoliId", "privPolyId")
KNOWN_TYPES = (DATA, SETUP, ACK, ERROR)

# An id as the peer sent it: a number or a string.
ServerId = int | str


def _number(message: dict[str, Any], field: str, low: int = 0, high: int | None = None) -> int:
    """
    :returns: the field as an L{int}, whether sent as a number or a string of
        ASCII digits.
    :raises BadRequest: when it is missing, or not such a number.
    """
    if field not in message:
        raise BadRequest(f"missing field '{field}'")
    value = message[field]
    if isinstance(value, str) and value.strip().isascii() and value.strip().isdigit() and len(value) < 20:
        number = int(value)
    elif isinstance(value, int) and not isinstance(value, bool):
        number = value
    else:
        raise BadRequest(f"{field} must be a number, got {value!r}")
    if high is None and number < low:
        raise BadRequest(f"{field} must be at least {low}, got {value!r}")
    if high is not None and not low <= number <= high:
        raise BadRequest(f"{field} must be from {low} to {high}, got {value!r}")
    return number


def _identifier(message: dict[str, Any], field: str) -> ServerId:
    """
    :returns: the id as sent (number or non-empty string).
    :raises BadRequest: when it is missing or of another kind.
    """
    if field not in message:
        raise BadRequest(f"missing field '{field}'")
    value = message[field]
    if isinstance(value, bool) or not isinstance(value, (int, str)) or value == "":
        raise BadRequest(f"{field} must be a number or a string, got {value!r}")
    return value


def identity(value: object) -> str:
    """
    :returns: the key under which an id is known, so that C{100} and
        C{"100"} name the same server.
    """
    return str(value).strip()


def message_type(message: dict[str, Any]) -> int:
    """
    :returns: the message's type, 0 to 3.
    :raises BadRequest: when C{type} is missing or unknown.
    """
    kind = _number(message, "type")
    if kind not in KNOWN_TYPES:
        raise BadRequest(f"unknown message type {message['type']!r}")
    return kind


def policy_of(message: dict[str, Any]) -> tuple[str, str]:
    """
    :returns: C{(key, policy)}: the policy key as the peer spelled it, and
        the policy.
    :raises BadRequest: when neither spelling is present or it is not a string.
    """
    for key in POLICY_KEYS:
        if key in message:
            value = message[key]
            if not isinstance(value, (str, int)) or isinstance(value, bool) or value == "":
                raise BadRequest(f"{key} must be a string, got {value!r}")
            return key, str(value)
    raise BadRequest("missing field 'privPoliId'")


@dataclass(frozen=True)
class Setup:
    """
    A server's registration.

    :ivar server_id: the id as the server sent it.
    :ivar policy: the privacy policy it serves.
    :ivar listen_port: the port it takes data messages on.
    """

    server_id: ServerId
    policy: str
    listen_port: int


def read_setup(message: dict[str, Any]) -> Setup:
    """
    :returns: the L{Setup} a type 1 message carries.
    :raises BadRequest: naming the missing or bad field.
    """
    return Setup(
        server_id=_identifier(message, "id"),
        policy=policy_of(message)[1],
        listen_port=_number(message, "listenport", 1, 65535),
    )


@dataclass(frozen=True)
class Data:
    """
    A client's data message.

    :ivar client_id: C{srcid} as the client sent it.
    :ivar policy_key: the policy key as the client spelled it.
    :ivar policy: the privacy policy asked for.
    :ivar payload: the payload text.
    """

    client_id: ServerId
    policy_key: str
    policy: str
    payload: str


def read_data(message: dict[str, Any]) -> Data:
    """
    :returns: the L{Data} a type 0 message carries.
    :raises BadRequest: naming the missing or bad field.
    """
    client_id = _identifier(message, "srcid")
    policy_key, policy = policy_of(message)
    if "payload" not in message:
        raise BadRequest("missing field 'payload'")
    if not isinstance(message["payload"], str):
        raise BadRequest(f"payload must be a string, got {type(message['payload']).__name__}")
    if "payloadsize" in message:
        _number(message, "payloadsize")
    return Data(client_id, policy_key, policy, message["payload"])


def _like(template: object, value: int | str) -> int | str:
    """
    :returns: C{value} as a string if C{template} was one, else as a number.
    """
    return str(value) if isinstance(template, str) else value


def sha1_hex(payload: str) -> str:
    """
    :returns: the SHA-1 hex digest of the payload's UTF-8 bytes.
    """
    return hashlib.sha1(payload.encode("utf-8", "surrogatepass")).hexdigest()


def ack_for(message: dict[str, Any], server_id: ServerId) -> dict[str, Any]:
    """
    The backend server's answer to a data message.

    :param message: the data message received.
    :param server_id: the server's own id, as configured.
    :returns: a type 2 message whose C{destid} is the client's C{srcid}, in
        the types the client used.
    """
    digest = sha1_hex(message["payload"])
    return {
        "type": _like(message.get("type"), ACK),
        "srcid": _like(message.get("srcid"), server_id),
        "destid": message.get("srcid"),
        "payloadsize": _like(message.get("payloadsize", 0), len(digest)),
        "payload": digest,
    }


def error_for(text: str, policy: str | None = None, message: object = None) -> dict[str, Any]:
    """
    A type 3 error for a client.

    :param text: what went wrong, for a person.
    :param policy: the privacy policy concerned, if known.
    :param message: the client's message, if it was readable, whose types
        and policy-key spelling the error copies.
    :returns: the error message.
    """
    message = message if isinstance(message, dict) else {}
    key = next((key for key in POLICY_KEYS if key in message), POLICY_KEYS[0])
    return {"type": _like(message.get("type"), ERROR), "error": text, key: policy}
