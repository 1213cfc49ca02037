"""When a deferred message is tried again (mailproxy/logic/backoff.py): exponential growth from `base`,
capped at `cap`, with equal jitter (half fixed, half random), never under a second."""

from __future__ import annotations

import random

import pytest

from mailproxy.logic.backoff import retry_delay


class Fixed(random.Random):
    """`uniform(a, b)` always at the same fraction of the interval: 0 the lowest, 1 the highest delay."""

    def __init__(self, fraction: float) -> None:
        super().__init__()
        self.fraction = fraction

    def uniform(self, a: float, b: float) -> float:
        return a + (b - a) * self.fraction


LOWEST, HIGHEST = Fixed(0.0), Fixed(1.0)


@pytest.mark.parametrize(("attempt", "ceiling"), [(1, 60), (2, 120), (3, 240), (4, 480), (5, 960)])
def test_the_ceiling_doubles_with_each_attempt(attempt: int, ceiling: int) -> None:
    assert retry_delay(attempt, base=60, cap=3600, rng=HIGHEST) == ceiling
    assert retry_delay(attempt, base=60, cap=3600, rng=LOWEST) == ceiling // 2


@pytest.mark.parametrize("attempt", [0, -3])
def test_an_attempt_under_one_counts_as_the_first(attempt: int) -> None:
    assert retry_delay(attempt, base=60, cap=3600, rng=HIGHEST) == 60


@pytest.mark.parametrize("attempt", [7, 8, 20, 200])
def test_the_delay_is_capped(attempt: int) -> None:
    assert retry_delay(attempt, base=60, cap=3600, rng=HIGHEST) == 3600
    assert retry_delay(attempt, base=60, cap=3600, rng=LOWEST) == 1800


def test_the_jitter_stays_within_the_upper_half_of_the_ceiling() -> None:
    rng = random.Random(1234)
    for attempt in range(1, 12):
        ceiling = min(3600, 60 * 2 ** (attempt - 1))
        delays = {retry_delay(attempt, base=60, cap=3600, rng=rng) for _ in range(200)}
        assert min(delays) >= ceiling // 2 and max(delays) <= ceiling
        assert len(delays) > 1  # random, not fixed


def test_whole_seconds_rounded_down_and_never_under_one() -> None:
    assert retry_delay(1, base=3, cap=100, rng=Fixed(0.5)) == 2  # 1.5 + 0.75, truncated
    assert retry_delay(1, base=0.5, cap=100, rng=HIGHEST) == 1
    assert retry_delay(1, base=0, cap=100, rng=HIGHEST) == 1
    assert isinstance(retry_delay(3, base=7, cap=100), int)


def test_without_an_rng_the_module_random_is_used() -> None:
    random.seed(42)
    first = [retry_delay(4, base=60, cap=3600) for _ in range(5)]
    random.seed(42)
    assert [retry_delay(4, base=60, cap=3600) for _ in range(5)] == first
