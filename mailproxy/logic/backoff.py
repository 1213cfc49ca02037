"""When to try a deferred message again: exponential backoff with jitter and a cap."""

from __future__ import annotations

import random


def retry_delay(attempt: int, *, base: float, cap: float, rng: random.Random | None = None) -> int:
    """Seconds to wait after failed attempt number `attempt` (1-based): half fixed, half random (equal jitter)."""
    ceiling = min(cap, base * 2 ** max(0, attempt - 1))
    rand = (rng or random).uniform(0, ceiling / 2)
    return max(1, int(ceiling / 2 + rand))
