"""The decisions themselves, with explicit time (µs): burst, steady rate, windows, leases."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from apishield.ratelimit import algorithms as alg

S = 1_000_000
T0 = 1_800_000_000 * S  # some unix time, in µs


def test_gcra_allows_the_burst_back_to_back_then_refuses() -> None:
    # 100/minute, burst 20: one request costs 0.6 s; 20 may come at once after a quiet time.
    interval, burst = 600_000, 20
    tat = None
    results = []
    for _ in range(25):
        decision, tat = alg.gcra(T0, tat, interval, burst)
        results.append(decision)
    assert [d.allowed for d in results] == [True] * 20 + [False] * 5
    assert [d.remaining for d in results[:20]] == list(range(19, -1, -1))
    refused = results[20]
    assert refused.remaining == 0
    assert refused.retry_us == interval  # the next slot opens one interval later
    assert refused.reset_us == 20 * interval  # whole again after 12 s of quiet


def test_gcra_refills_at_the_steady_rate() -> None:
    interval, burst = 600_000, 20
    tat = None
    for _ in range(20):
        _, tat = alg.gcra(T0, tat, interval, burst)
    assert not alg.gcra(T0 + interval - 1, tat, interval, burst)[0].allowed
    decision, tat = alg.gcra(T0 + interval, tat, interval, burst)
    assert decision.allowed and decision.remaining == 0
    # After a quiet burst-length, the whole burst is back.
    decision, _ = alg.gcra(T0 + 21 * interval, tat, interval, burst)
    assert decision.allowed and decision.remaining == burst - 1


def test_gcra_refund_gives_a_slot_back() -> None:
    interval, burst = 1 * S, 2
    _, tat = alg.gcra(T0, None, interval, burst)
    _, tat = alg.gcra(T0, tat, interval, burst)
    assert not alg.gcra(T0, tat, interval, burst)[0].allowed
    tat = alg.gcra_refund(T0, tat, interval)
    assert alg.gcra(T0, tat, interval, burst)[0].allowed
    assert alg.gcra_refund(T0, T0 + interval, interval) is None  # full again: nothing to keep


@settings(max_examples=200, deadline=None)
@given(
    burst=st.integers(1, 50),
    interval=st.integers(1000, 5 * S),
    gaps=st.lists(st.integers(0, 3 * S), min_size=1, max_size=200),
)
def test_gcra_never_admits_more_than_burst_plus_elapsed(
    burst: int, interval: int, gaps: list[int]
) -> None:
    now, tat, allowed = T0, None, 0
    for gap in gaps:
        now += gap
        decision, tat = alg.gcra(now, tat, interval, burst)
        allowed += decision.allowed
        # Conformance of GCRA: in any span from the start, at most burst + span/interval.
        assert allowed <= burst + (now - T0) // interval


def test_sliding_window_is_exact_within_a_window() -> None:
    window, limit = 60 * S, 100
    state = None
    allowed = 0
    for i in range(150):
        decision, state = alg.sliding_window(T0 + i * 1000, state, window, limit)
        allowed += decision.allowed
    assert allowed == 100


def test_sliding_window_weighs_the_previous_window() -> None:
    window, limit = 10 * S, 10
    start = (T0 // window) * window  # a window boundary
    state = None
    for _ in range(10):
        _, state = alg.sliding_window(start, state, window, limit)
    # A quarter into the next window, 75% of the previous 10 still count: 2 more fit.
    later = start + window + window // 4
    results = []
    for _ in range(4):
        decision, state = alg.sliding_window(later, state, window, limit)
        results.append(decision.allowed)
    assert results == [True, True, False, False]
    refused, _ = alg.sliding_window(later, state, window, limit)
    # 10 x 0.75 + 2 + 1 > 10; it fits once the weight is down to 0.7, 0.5 s later.
    assert refused.retry_us == window // 20
    assert alg.sliding_window(later + refused.retry_us, state, window, limit)[0].allowed


def test_sliding_window_retry_when_the_current_window_is_full() -> None:
    window, limit = 10 * S, 5
    start = (T0 // window) * window
    state = None
    for _ in range(5):
        _, state = alg.sliding_window(start + S, state, window, limit)
    refused, _ = alg.sliding_window(start + S, state, window, limit)
    # Next window starts in 9 s; there the 5 weigh 5*(1-t/10): one slot frees after t = 2 s.
    assert refused.retry_us == 9 * S + 2 * S
    assert alg.sliding_window(start + S + refused.retry_us, state, window, limit)[0].allowed


def test_fixed_window_is_calendar_aligned() -> None:
    day = 86_400 * S
    midnight = (T0 // day + 1) * day
    state = None
    for _ in range(3):
        decision, state = alg.fixed_window(midnight - 5 * S, state, day, 3)
    refused, _ = alg.fixed_window(midnight - 5 * S, state, day, 3)
    assert not refused.allowed and refused.retry_us == 5 * S
    assert alg.fixed_window(midnight, state, day, 3)[0].allowed


def test_concurrency_leases_expire() -> None:
    leases: dict[str, int] = {}
    first, leases = alg.concurrency(T0, leases, 2, "a", 10 * S)
    second, leases = alg.concurrency(T0, leases, 2, "b", 10 * S)
    third, leases = alg.concurrency(T0, leases, 2, "c", 10 * S)
    assert (first.allowed, second.allowed, third.allowed) == (True, True, False)
    assert third.retry_us == alg.CONCURRENCY_RETRY_US
    # A gateway that died holding both slots frees them when the leases expire.
    assert alg.concurrency(T0 + 10 * S, leases, 2, "d", 10 * S)[0].allowed
