# -*- test-case-name: tests.message.test_send_client -*-
"""
The send client: sends the data messages of a packet file through a reverse
proxy, one after another on one connection, and checks each answer.

A packet file holds one JSON data message, a JSON list of them, or one per
line.  The client fills in C{srcid} from C{--id}, and C{type} and
C{payloadsize} when missing.
"""

import json
from functools import partial
from typing import Any, TextIO

from twisted.internet.defer import Deferred
from twisted.internet.endpoints import HostnameEndpoint
from twisted.internet.protocol import Factory, Protocol, connectionDone
from twisted.python.failure import Failure

from netproxy.dialing import connect, within
from netproxy.errors import ClientError, FramingError
from netproxy.message.codec import MessageDecoder, encode_message
from netproxy.message.fields import ACK, ERROR, POLICY_KEYS, ServerId, identity, sha1_hex


def load_packets(text: str) -> list[dict[str, Any]]:
    """
    Read a packet file.

    :param text: the file's text.
    :returns: a list of message dicts.
    :raises ClientError: when it holds anything else.
    """
    try:
        document = json.loads(text)
    except ValueError:
        try:
            document = [json.loads(line) for line in text.splitlines() if line.strip()]
        except ValueError as error:
            raise ClientError(f"packet file is not JSON: {error}")
    packets = document if isinstance(document, list) else [document]
    if not packets or not all(isinstance(packet, dict) for packet in packets):
        raise ClientError("packet file must hold a JSON object, a list of them, or one per line")
    return packets


def prepare(packet: dict[str, Any], client_id: ServerId) -> dict[str, Any]:
    """
    :returns: a copy of C{packet} with C{srcid} set to C{client_id} and
        C{type} and C{payloadsize} filled in when missing.
    :raises ClientError: when it has no string C{payload}.
    """
    if not isinstance(packet.get("payload"), str):
        raise ClientError(f"packet has no payload text: {json.dumps(packet)}")
    message = {"type": 0, **packet, "srcid": client_id}
    message.setdefault("payloadsize", len(message["payload"].encode("utf-8")))
    return message


def check_answer(message: dict[str, Any], answer: dict[str, Any]) -> str | None:
    """
    :returns: L{None} when C{answer} is the right ack for C{message}, else why not.
    """
    kind = identity(answer.get("type"))
    if kind == str(ERROR):
        return f"the reverse proxy answered: {answer.get('error')}"
    if kind != str(ACK):
        return f"expected an ack (type 2), got type {answer.get('type')!r}"
    if identity(answer.get("destid")) != identity(message["srcid"]):
        return f"ack is for client {answer.get('destid')!r}, not {message['srcid']!r}"
    expected = sha1_hex(message["payload"])
    if answer.get("payload") != expected:
        return f"payload {answer.get('payload')!r} is not the SHA-1 of what was sent ({expected})"
    return None


class MessageClient(Protocol):
    """
    Sends messages one at a time; L{send} fires with the next answer.
    """

    transport: Any

    def __init__(self, max_size: int = 1 << 20) -> None:
        self.decoder = MessageDecoder(max_size)
        self.waiting: Deferred[dict[str, Any]] | None = None
        self.answers: list[dict[str, Any]] = []
        self.failure: ClientError | None = None

    def send(self, message: dict[str, Any]) -> Deferred[dict[str, Any]]:
        """
        :returns: a L{Deferred} firing with the decoded answer.
        """
        # _deliver may fire it at once (an answer or a close came first) and
        # forget it, so keep our own reference to return.
        waiting: Deferred[dict[str, Any]] = Deferred()
        self.waiting = waiting
        self.transport.write(encode_message(message))
        self._deliver()
        return waiting

    def dataReceived(self, data: bytes) -> None:
        try:
            self.answers.extend(self.decoder.feed(data))
        except FramingError as error:
            self.failure = ClientError(f"malformed answer: {error}")
            self.transport.loseConnection()
        self._deliver()

    def _deliver(self) -> None:
        if self.waiting is None:
            return
        waiting = self.waiting
        if self.answers:
            self.waiting = None
            waiting.callback(self.answers.pop(0))
        elif self.failure is not None:
            self.waiting = None
            waiting.errback(self.failure)

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        if self.failure is None:
            self.failure = ClientError("the reverse proxy closed the connection")
        self._deliver()


async def send_packets(reactor: Any, revproc: tuple[str, int], client_id: ServerId, packets: list[dict[str, Any]],
                       timeout: float, out: TextIO) -> bool:
    """
    Send each packet through the reverse proxy at C{revproc} and report.

    :param revproc: the reverse proxy's C{(host, port)}.
    :param out: a text stream for the report lines.
    :returns: whether every message was answered correctly.
    """
    host, port = revproc
    messages = [prepare(packet, client_id) for packet in packets]
    endpoint = HostnameEndpoint(reactor, host, port, timeout=timeout)
    client = await connect(endpoint, Factory.forProtocol(partial(MessageClient)), f"{host}:{port}")
    all_ok = True
    try:
        for message in messages:
            policy = next((message[key] for key in POLICY_KEYS if key in message), None)
            out.write(f"Sending message {json.dumps(message)} to privacy policy {policy} "
                      f"through reverse proxy running on port {port}\n")
            try:
                answer = await within(client.send(message), timeout, reactor,
                                      f"no answer within {timeout:g} seconds")
            except ClientError as error:
                out.write(f"transmission FAILED: {error}\n")
                return False
            if identity(answer.get("type")) == str(ERROR):
                out.write(f"Receiving an error from the reverse proxy: {json.dumps(answer)}\n")
            else:
                out.write(f"Receiving a response from the server {answer.get('srcid')} payload: {json.dumps(answer)}\n")
            problem = check_answer(message, answer)
            out.write("transmission OK\n" if problem is None else f"transmission FAILED: {problem}\n")
            all_ok = all_ok and problem is None
    finally:
        client.transport.loseConnection()
    return all_ok
