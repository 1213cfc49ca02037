"""A small IAM policy matcher: does a statement allow (action, resource)?

moto enforces IAM *actions* but not resources (docs: ../shared/NOTES.md), so the rehearsal checks every
recorded call against the function's synthesized statements itself. The rules kept here are the ones IAM
applies to identity policies without conditions:

* actions match case-insensitively, with ``*`` (any run of characters) and ``?`` (one character);
* resources (ARNs) match case-sensitively with the same wildcards; ``*`` alone matches everything;
* ``NotAction`` / ``NotResource`` invert the match of their element;
* an explicit ``Deny`` that matches wins over every ``Allow``.

Conditions are not evaluated: a statement with a ``Condition`` is treated as matching (the rehearsal's
statements have none; ``has_condition`` lets the caller say so).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

__all__ = ["Decision", "Statement", "action_matches", "decide", "resource_matches", "statements_of"]


@lru_cache(maxsize=4096)
def _pattern(glob: str, case_sensitive: bool) -> re.Pattern[str]:
    parts = []
    for char in glob:
        if char == "*":
            parts.append(".*")
        elif char == "?":
            parts.append(".")
        else:
            parts.append(re.escape(char))
    return re.compile("".join(parts), 0 if case_sensitive else re.IGNORECASE | re.DOTALL)


def action_matches(pattern: str, action: str) -> bool:
    """``s3:Get*`` matches ``s3:GetObject``; service prefixes and names compare case-insensitively."""
    return _pattern(pattern, False).fullmatch(action) is not None


def resource_matches(pattern: str, resource: str) -> bool:
    """``arn:aws:s3:::bucket/contents/*`` matches ``arn:aws:s3:::bucket/contents/a/b.json``."""
    if pattern == "*":
        return True
    return _pattern(pattern, True).fullmatch(resource) is not None


def _strings(value: Any) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str):
        return (value,)
    return tuple(str(item) for item in value)


@dataclass(frozen=True)
class Statement:
    """One IAM statement with its elements as tuples of strings (references already resolved)."""

    effect: str
    actions: tuple[str, ...] = ()
    resources: tuple[str, ...] = ()
    not_actions: tuple[str, ...] = ()
    not_resources: tuple[str, ...] = ()
    sid: str | None = None
    origin: str = ""  # the policy it comes from (a logical id, a managed policy ARN)
    index: int = 0  # its position in that policy
    has_condition: bool = False

    @classmethod
    def from_json(cls, raw: dict[str, Any], *, origin: str = "", index: int = 0) -> Statement:
        return cls(
            effect=str(raw.get("Effect", "Allow")),
            actions=_strings(raw.get("Action")),
            resources=_strings(raw.get("Resource")),
            not_actions=_strings(raw.get("NotAction")),
            not_resources=_strings(raw.get("NotResource")),
            sid=raw.get("Sid"),
            origin=origin,
            index=index,
            has_condition=bool(raw.get("Condition")),
        )

    def matches_action(self, action: str) -> bool:
        if self.not_actions:
            return not any(action_matches(p, action) for p in self.not_actions)
        return any(action_matches(p, action) for p in self.actions)

    def matches_resource(self, resource: str) -> bool:
        if self.not_resources:
            return not any(resource_matches(p, resource) for p in self.not_resources)
        return any(resource_matches(p, resource) for p in self.resources)

    def matches(self, action: str, resource: str) -> bool:
        return self.matches_action(action) and self.matches_resource(resource)

    @property
    def label(self) -> str:
        name = f"{self.origin}[{self.index}]"
        return f"{name} ({self.sid})" if self.sid else name


@dataclass(frozen=True)
class Decision:
    allowed: bool
    allowed_by: tuple[Statement, ...] = ()
    denied_by: Statement | None = None


def decide(statements: Iterable[Statement], action: str, resource: str) -> Decision:
    """IAM's rule for one principal's identity policies: an explicit Deny wins, else any Allow, else deny."""
    allows: list[Statement] = []
    for statement in statements:
        if not statement.matches(action, resource):
            continue
        if statement.effect == "Deny":
            return Decision(False, denied_by=statement)
        allows.append(statement)
    return Decision(bool(allows), allowed_by=tuple(allows))


def statements_of(document: dict[str, Any], *, origin: str) -> list[Statement]:
    """The statements of a policy document (a single statement object is accepted too)."""
    raw: Sequence[Any] | dict[str, Any] = document.get("Statement", [])
    items = [raw] if isinstance(raw, dict) else list(raw)
    return [Statement.from_json(item, origin=origin, index=i) for i, item in enumerate(items)]
