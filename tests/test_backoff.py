"""
Tests for L{netproxy.backoff}: a failing peer waits one second, doubled for
each failure in a row up to thirty, and is up again once it answers.
"""

from twisted.trial.unittest import SynchronousTestCase

from netproxy.backoff import BackOff, retry_wait


class RetryWaitTests(SynchronousTestCase):
    """
    L{retry_wait} doubles from the first retry up to the longest wait.
    """

    def test_doubles_up_to_max(self):
        """The waits after 1 to 7 failures in a row are 1, 2, 4, 8, 16, 30 and 30 seconds."""
        self.assertEqual([retry_wait(failures) for failures in range(1, 8)], [1, 2, 4, 8, 16, 30, 30])

    def test_own_bounds(self):
        """The first retry and the longest wait can be chosen."""
        self.assertEqual([retry_wait(failures, 0.5, 3) for failures in range(1, 5)], [0.5, 1, 2, 3])

    def test_huge_failure_count(self):
        """A peer down for very long (many thousand failures) still waits the longest wait, no overflow."""
        self.assertEqual(retry_wait(10 ** 6), 30)

    def test_no_failures(self):
        """Asked about zero failures (a caller's mistake) it answers the first retry, not half of it."""
        self.assertEqual(retry_wait(0), 1)


class BackOffTests(SynchronousTestCase):
    """
    L{BackOff} holds one peer's up/down state.
    """

    def test_up_at_first(self):
        """A new peer is available."""
        self.assertTrue(BackOff().available(0))

    def test_down_until_retry(self):
        """After a failure at 100, the peer is unavailable until 101, then available again."""
        state = BackOff()
        self.assertEqual(state.failed(100), 1)
        self.assertEqual((state.available(100.5), state.available(101)), (False, True))

    def test_failures_in_a_row_double(self):
        """Each failure in a row doubles the wait."""
        state = BackOff()
        waits = [state.failed(0) for _ in range(4)]
        self.assertEqual((waits, state.retry_at), ([1, 2, 4, 8], 8))

    def test_answered_resets(self):
        """An answer clears the failures, and says whether the peer was down."""
        state = BackOff()
        state.failed(0)
        state.failed(0)
        self.assertTrue(state.answered())
        self.assertEqual((state.failures, state.retry_at), (0, None))
        self.assertFalse(state.answered())
        self.assertEqual(state.failed(0), 1)
