"""
End-to-end tests of the ack role: a real C{twistd netproxy ack} answering
raw socket clients.
"""

import signal

from twisted.trial.unittest import TestCase

from tests.integration.daemon import LISTEN, raw_exchange, start_daemon


class AckTests(TestCase):
    """
    C{twistd -n netproxy ack}.
    """

    timeout = 60

    async def test_reply_and_log(self):
        """
        Each chunk is answered with DONE and logged with its text and the peer's address.
        """
        ack = await start_daemon(self, "ack", "--listen", LISTEN)
        reply = await raw_exchange(ack.port, b"tgmr")
        self.assertEqual(reply.data, b"DONE")
        await ack.wait_for(r"received 'tgmr' from 127\.0\.0\.1:\d+$")

    async def test_every_chunk_answered(self):
        """
        The connection stays open and every chunk sent on it gets its own reply.
        """
        ack = await start_daemon(self, "ack", "--listen", LISTEN)
        reply = await raw_exchange(ack.port, b"one", b"two", b"three")
        self.assertEqual(reply.data, b"DONEDONEDONE")
        self.assertFalse(reply.closed)
        for text in ("one", "two", "three"):
            await ack.wait_for(rf"received '{text}' from 127\.0\.0\.1:\d+$")

    async def test_reply_option(self):
        """
        --reply sets the text answered.
        """
        ack = await start_daemon(self, "ack", "--listen", LISTEN, "--reply", "got it")
        reply = await raw_exchange(ack.port, b"tgmr")
        self.assertEqual(reply.data, b"got it")

    async def test_idle_timeout(self):
        """
        A peer that sends nothing is disconnected after --idle-timeout seconds.
        """
        ack = await start_daemon(self, "ack", "--listen", LISTEN, "--idle-timeout", "0.5")
        reply = await raw_exchange(ack.port, b"", until_closed=True)
        self.assertEqual(reply, type(reply)(b"", True))

    async def test_sigterm_exits_zero(self):
        """
        SIGTERM stops the ack server with exit status 0.
        """
        ack = await start_daemon(self, "ack", "--listen", LISTEN)
        self.assertEqual((await raw_exchange(ack.port, b"x")).data, b"DONE")
        ack.send_signal(signal.SIGTERM)
        status = await ack.wait_exit()
        self.assertEqual(status, "exit code 0", ack.output.transcript())
