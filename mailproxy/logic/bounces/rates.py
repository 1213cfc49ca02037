"""Complaint rates per SMTP account, from the delivery counters (dal/counters.py): complaints over sent since
the counters began. SES reviews an account at a 0.1 % complaint rate and may pause it at 0.5 %; the bouncer
publishes the highest rate so that one alarm watches every account (stacks/monitoring.py)."""

from __future__ import annotations

from dataclasses import dataclass

from mailproxy.services import Services

# Below this many sent messages one complaint would read as a high rate: such accounts are not rated yet.
MIN_SENT_FOR_A_RATE = 100


@dataclass(frozen=True)
class AccountRate:
    tenant_id: str
    account_id: str
    sent: int
    complaints: int

    @property
    def percent(self) -> float:
        return 100.0 * self.complaints / self.sent


def complaint_rates(services: Services) -> list[AccountRate]:
    """Every account with enough sent mail for a rate, highest rate first (one Query on the counters)."""
    rates = [
        AccountRate(pair.tenant_id, pair.account_id, pair.get("sent"), pair.get("complaints"))
        for pair in services.counters.read()
        if pair.account_id is not None and pair.get("sent") >= MIN_SENT_FOR_A_RATE
    ]
    return sorted(rates, key=lambda rate: rate.percent, reverse=True)
