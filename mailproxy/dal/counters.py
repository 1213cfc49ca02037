"""Delivery counters behind /metrics: atomic DynamoDB `ADD`s on a few config items, so that a scrape reads a
bounded number of items (one per tenant and account) and never the messages table.

Items: `pk = METRICS`, `sk = <tenant>#<account>` for what happens to a tenant's messages on one account
(queued, sent, errors, deferred, rate_limited; bounced_hard, bounced_soft, complaints from the bouncer),
and `sk = <tenant>` for what has no account where it happens (unsent messages removed). Tenant ids hold no
`#` (models.TenantId), so the first `#` splits the key.

Counters are best effort: writers aggregate their increments (one update per pair per sender batch or API
request) and a failed update is logged and given up, never retried into a double count; the messages table
stays the truth (docs/operations.md, "Grafana: the original's dashboard")."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field

from aws_lambda_powertools import Logger
from botocore.exceptions import BotoCoreError, ClientError

from mailproxy.dal.dynamo import DynamoDBClient, all_items, pages

METRICS_PK = "METRICS"

logger = Logger(child=True)


@dataclass
class Tally:
    """Increments collected in memory, written by one `MetricCounters.add`: (tenant, account or None) ->
    field -> amount."""

    counts: dict[tuple[str, str | None], Counter[str]] = field(default_factory=dict)

    def count(self, tenant_id: str, account_id: str | None, name: str, amount: int = 1) -> None:
        if amount:
            self.counts.setdefault((tenant_id, account_id), Counter())[name] += amount

    def __bool__(self) -> bool:
        return any(self.counts.values())


@dataclass(frozen=True)
class PairCounts:
    """The counters of one tenant and account (`account_id` None: the tenant's own counters)."""

    tenant_id: str
    account_id: str | None
    counts: dict[str, int]

    def get(self, name: str) -> int:
        return self.counts.get(name, 0)


def _sk(tenant_id: str, account_id: str | None) -> str:
    return tenant_id if account_id is None else f"{tenant_id}#{account_id}"


class MetricCounters:
    def __init__(self, dynamodb: DynamoDBClient, table: str) -> None:
        self._db = dynamodb
        self._table = table

    def add(self, tally: Tally) -> int:
        """One atomic `ADD` per (tenant, account) of `tally`. Best effort: a failing update is logged and
        dropped (never raised: the mail it counts is already stored or sent); returns how many failed."""
        failed = 0
        for (tenant_id, account_id), counts in tally.counts.items():
            amounts = {name: amount for name, amount in counts.items() if amount}
            if not amounts:
                continue
            names = {f"#{name}": name for name in amounts}
            try:
                self._db.update_item(
                    TableName=self._table,
                    Key={"pk": {"S": METRICS_PK}, "sk": {"S": _sk(tenant_id, account_id)}},
                    UpdateExpression="ADD " + ", ".join(f"#{name} :{name}" for name in amounts),
                    ExpressionAttributeNames=names,
                    ExpressionAttributeValues={f":{name}": {"N": str(amount)} for name, amount in amounts.items()},
                )
            except (ClientError, BotoCoreError) as exc:
                failed += 1
                logger.warning(
                    "metric counters not updated; /metrics under-counts these",
                    extra={
                        "tenant_id": tenant_id,
                        "account_id": account_id,
                        "counts": amounts,
                        "error": type(exc).__name__,
                    },
                )
        return failed

    def count_each(self, name: str, pairs: Iterable[tuple[str, str | None]]) -> int:
        """Add 1 to `name` for every (tenant, account) of `pairs`, one update per distinct pair."""
        tally = Tally()
        for tenant_id, account_id in pairs:
            tally.count(tenant_id, account_id, name)
        return self.add(tally)

    def read(self) -> list[PairCounts]:
        """Every counter item: one Query on the metrics partition (a page per 1 MB, some thousand pairs)."""
        found = []
        for item in all_items(
            self._db,
            "query",
            TableName=self._table,
            KeyConditionExpression="pk = :pk",
            ExpressionAttributeValues={":pk": {"S": METRICS_PK}},
        ):
            tenant_id, separator, account_id = str(item.pop("sk")).partition("#")
            item.pop("pk")
            counts = {name: int(value) for name, value in item.items() if isinstance(value, int | float)}
            found.append(PairCounts(tenant_id, account_id if separator else None, counts))
        return found

    def forget_tenant(self, tenant_id: str) -> None:
        """Remove a deleted tenant's counters, so that a tenant created later under the same id starts at 0."""
        for page in pages(
            self._db,
            "query",
            TableName=self._table,
            KeyConditionExpression="pk = :pk AND begins_with(sk, :tenant)",
            ExpressionAttributeValues={":pk": {"S": METRICS_PK}, ":tenant": {"S": tenant_id}},
            ProjectionExpression="pk, sk",
        ):
            for key in page["Items"]:
                sk = key["sk"]["S"]
                if sk == tenant_id or sk.startswith(f"{tenant_id}#"):  # not another tenant named acme2
                    self._db.delete_item(TableName=self._table, Key=key)
