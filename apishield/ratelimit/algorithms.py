"""Rate-limit decisions as pure functions of (now, stored state): no clock, no I/O.

Every time is an integer number of microseconds, so that the in-process storage and the Redis
scripts (``redis_scripts.py``, which mirror these functions line for line) reach the same
decision from the same state. Integer arithmetic also keeps the decisions exact: a limit of 100
allows the 100th request and refuses the 101st, whatever the float rounding would have said.

- **GCRA** (generic cell rate algorithm, ITU-T I.371; the same arithmetic as a token bucket):
  the state is one number, the theoretical arrival time ``tat``. ``interval`` is the time one
  request "costs", ``burst`` how many may arrive back to back after a quiet period.
- **Sliding window** (the weighted two-window counter): the state is the current window's index
  and count and the previous window's count; the previous count is weighted by how much of it
  still overlaps the sliding window. Two integers of state instead of a log of timestamps.
- **Fixed window**: calendar-aligned windows (a ``/day`` window starts at 00:00 UTC), for quotas.
- **Concurrency**: leases held by requests in flight, each with an expiry, so that a gateway
  process that dies with requests in flight cannot hold the slots forever.
"""

from __future__ import annotations

from typing import NamedTuple

CONCURRENCY_RETRY_US = 1_000_000


class Decision(NamedTuple):
    """One limit's answer: allowed or not, what is left, and when things change (µs)."""

    allowed: bool
    remaining: int
    reset_us: int  # until the limit is whole again
    retry_us: int  # until a refused request would be allowed; 0 when allowed


def gcra(
    now: int, tat: int | None, interval: int, burst: int, cost: int = 1
) -> tuple[Decision, int]:
    """GCRA: the decision and the ``tat`` to store when the request is allowed."""
    base = now if tat is None or tat < now else tat
    new_tat = base + interval * cost
    allow_at = new_tat - interval * burst
    if now < allow_at:
        remaining = max(0, (interval * burst - (base - now)) // interval)
        return Decision(False, remaining, base - now, allow_at - now), base
    remaining = (interval * burst - (new_tat - now)) // interval
    return Decision(True, remaining, new_tat - now, 0), new_tat


def gcra_refund(now: int, tat: int | None, interval: int, cost: int = 1) -> int | None:
    """Give back ``cost`` requests; None when the bucket is full again (nothing to store)."""
    if tat is None:
        return None
    new_tat = tat - interval * cost
    return new_tat if new_tat > now else None


SlidingState = tuple[int, int, int]  # (window index, current count, previous count)


def _sliding_counts(now: int, state: SlidingState | None, window: int) -> tuple[int, int, int]:
    index = now // window
    if state is None:
        return index, 0, 0
    stored, current, previous = state
    if stored == index:
        return index, current, previous
    if stored == index - 1:
        return index, 0, current
    return index, 0, 0


def sliding_window(
    now: int, state: SlidingState | None, window: int, limit: int, cost: int = 1
) -> tuple[Decision, SlidingState]:
    """Weighted two-window counter: ``previous * overlap + current + cost <= limit``."""
    index, current, previous = _sliding_counts(now, state, window)
    overlap = window - (now - index * window)  # previous window's share, in µs of `window`
    # Compared after multiplying by `window`, so the test stays in integers.
    used = previous * overlap + current * window
    if used + cost * window <= limit * window:
        current += cost
        used += cost * window
        remaining = (limit * window - used) // window
        return Decision(
            True, remaining, _sliding_reset(now, index, window, current, previous), 0
        ), (
            index,
            current,
            previous,
        )
    remaining = max(0, (limit * window - used) // window)
    if current + cost > limit:
        # Not before the next window; there `current` becomes the weighted previous count.
        wait = (index + 1) * window - now
        if current > 0 and limit >= cost:
            wait += max(0, -(-(window * (current - (limit - cost))) // current))
        retry = wait
    else:
        # Later in this window, once enough of `previous` has slid out.
        needed_overlap = (limit - current - cost) * window // previous
        retry = max(1, overlap - needed_overlap)
    reset = _sliding_reset(now, index, window, current, previous)
    return Decision(False, remaining, reset, retry), (index, current, previous)


def _sliding_reset(now: int, index: int, window: int, current: int, previous: int) -> int:
    if current > 0:
        return (index + 2) * window - now
    if previous > 0:
        return (index + 1) * window - now
    return 0


def sliding_refund(
    now: int, state: SlidingState | None, window: int, cost: int = 1
) -> SlidingState | None:
    """Give back ``cost`` in the current window (a refund after the window moved is dropped)."""
    if state is None or state[0] != now // window:
        return None
    return state[0], max(0, state[1] - cost), state[2]


FixedState = tuple[int, int]  # (window index, count)


def fixed_window(
    now: int, state: FixedState | None, window: int, limit: int, cost: int = 1
) -> tuple[Decision, FixedState]:
    """Calendar-aligned window: at most ``limit`` per window, all back at the window's end."""
    index = now // window
    count = state[1] if state is not None and state[0] == index else 0
    end = (index + 1) * window - now
    if count + cost <= limit:
        count += cost
        return Decision(True, limit - count, end, 0), (index, count)
    return Decision(False, max(0, limit - count), end, end), (index, count)


def fixed_refund(
    now: int, state: FixedState | None, window: int, cost: int = 1
) -> FixedState | None:
    if state is None or state[0] != now // window:
        return None
    return state[0], max(0, state[1] - cost)


def concurrency(
    now: int, leases: dict[str, int], limit: int, member: str, lease: int
) -> tuple[Decision, dict[str, int]]:
    """At most ``limit`` unexpired leases; the new lease expires ``lease`` µs from now."""
    live = {m: expiry for m, expiry in leases.items() if expiry > now}
    if len(live) + 1 > limit:
        # Slots come back when requests finish, not when leases expire: ask for a retry soon.
        return Decision(False, 0, 0, CONCURRENCY_RETRY_US), live
    live[member] = now + lease
    return Decision(True, limit - len(live), 0, 0), live
