from feedhandler.sync import ResyncLimiter


def test_resync_requests_back_off_exponentially_to_a_cap():
    limiter = ResyncLimiter(1, first_s=0.5, max_s=4.0)
    now, waits = 0.0, []
    for _ in range(6):
        assert limiter.allowed(0, now)
        limiter.requested(0, now)
        waits.append(limiter.wait_s(0, now))
        assert not limiter.allowed(0, now + waits[-1] - 0.01)
        now += waits[-1]
    assert waits == [0.5, 1.0, 2.0, 4.0, 4.0, 4.0]


def test_a_book_quiet_long_enough_starts_its_backoff_over():
    limiter = ResyncLimiter(2, first_s=0.5, max_s=60.0, reset_s=300.0)
    for now in (0.0, 0.5, 1.5):
        limiter.requested(0, now)
    limiter.requested(0, 400.0)
    assert limiter.wait_s(0, 400.0) == 0.5
    assert limiter.allowed(1, 0.0)  # books are limited independently
