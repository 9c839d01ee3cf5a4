"""
End-to-end tests of the upper role: a real C{twistd netproxy upper} on TCP
and UDP, driven by raw sockets.
"""

import signal

from twisted.trial.unittest import TestCase

from tests.integration.daemon import (
    LOCALHOST,
    connect_client,
    raw_datagram,
    raw_exchange,
    start_daemon,
    upper_ascii,
)

# Every byte value, so only a-z may change.
ALL_BYTES = bytes(range(256))
NON_ASCII = "h\u00e9llo w\u00f6rld \u00df \u00ff \u0131 \u2603 abc-xyz {}".encode("utf-8") + b"\xff\xfe\x00z"


class UpperServerTests(TestCase):
    """
    C{twistd -n netproxy upper --tcp 0 --udp 0}.
    """

    timeout = 60

    async def start_upper(self, *args):
        return await start_daemon(self, "upper", "--tcp", "0", "--udp", "0", *args)

    def test_expected(self):
        """
        The expected replies of these tests change a-z and nothing else.
        """
        self.assertEqual(upper_ascii(b"hello, World! 123 \xc3\xa9z"), b"HELLO, WORLD! 123 \xc3\xa9Z")

    async def test_tcp_only_ascii_letters(self):
        """
        Over TCP every byte comes back with only a-z upper-cased, non-ASCII bytes untouched.
        """
        upper = await self.start_upper()
        for data in (b"hello, World! 123", NON_ASCII, ALL_BYTES):
            reply = await raw_exchange(upper.port, data, expect=len(data))
            self.assertEqual(reply.data, upper_ascii(data))

    async def test_tcp_streamed(self):
        """
        Over TCP each piece comes back without waiting for the end of the stream, on one open connection.
        """
        upper = await self.start_upper()
        client = await connect_client(self, upper.port, b"first ")
        self.assertEqual(await client.wait_for_bytes(6), b"FIRST ")
        client.transport.write(b"second")
        self.assertEqual(await client.wait_for_bytes(12), b"FIRST SECOND")

    async def test_udp_only_ascii_letters(self):
        """
        Each UDP datagram is answered to its sender with only a-z upper-cased.
        """
        upper = await self.start_upper()
        for data in (b"hello, World! 123", NON_ASCII, ALL_BYTES):
            reply, sender = await raw_datagram(upper.udp_port, data)
            self.assertEqual(reply, upper_ascii(data))
            self.assertEqual(sender, (LOCALHOST, upper.udp_port))

    async def test_sigterm_exits_zero(self):
        """
        SIGTERM stops the upper server with exit status 0.
        """
        upper = await self.start_upper()
        self.assertEqual((await raw_exchange(upper.port, b"x", expect=1)).data, b"X")
        upper.send_signal(signal.SIGTERM)
        status = await upper.wait_exit()
        self.assertEqual(status, "exit code 0", upper.output.transcript())
