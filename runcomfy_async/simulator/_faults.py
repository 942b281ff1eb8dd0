"""Fault rules: which calls misbehave, how, and a seeded, deterministic matcher."""

from __future__ import annotations

import random
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Literal

import msgspec

Endpoint = Literal["submit", "status", "result", "cancel", "catalog", "files", "any"]
Action = Literal[
    "status",
    "status_after_read",
    "reset_before_read",
    "reset_after_read",
    "latency",
    "truncate",
    "error_200",
    "other_model_id",
]


@dataclass(frozen=True, slots=True)
class FaultRule:
    """One misbehaviour, applied to calls of `endpoint` (and `model_id`, when given).

    Fires on the first `times` matching calls, or on each with `probability`, or (neither)
    on every one. Actions:

    - "status": answer HTTP `status_code` with `body` (default `{"error_code",
      "error_message"}`) and a `Retry-After` header when `retry_after` is set (seconds, or
      a string sent verbatim such as an HTTP date). A submit is NOT turned into a job.
    - "status_after_read": handle the call fully (a submit creates its job), then answer
      as "status" does: a server that did the work and reports a failure (a 507, a 520).
    - "reset_before_read": drop the connection without reading the body (no job).
    - "reset_after_read": handle the call fully (a submit creates its job), then drop the
      connection without answering.
    - "latency": handle the call, then wait `seconds` before answering.
    - "truncate": handle the call, then send half the body under the full Content-Length
      and close.
    - "error_200": answer HTTP 200 `{"error_code": error_code, "error_message": ...}`.
    - "other_model_id": handle the call; a /result answer then names `other_model_id` as
      its `model_id` (a result that is not of the model submitted). Only answers that name
      a model (a finished request's) are changed, and only they count as a firing.
    """

    action: Action
    endpoint: Endpoint = "any"
    model_id: str | None = None
    times: int | None = None
    probability: float | None = None
    status_code: int = 503
    retry_after: float | str | None = None
    body: dict[str, Any] | None = None
    seconds: float = 0.0
    error_code: int = 500001
    other_model_id: str = "acme/other-model/text-to-image"

    def __post_init__(self) -> None:
        if self.times is not None and self.times < 0:
            raise ValueError(f"times must be >= 0, got {self.times}")
        if self.probability is not None and not 0 <= self.probability <= 1:
            raise ValueError(f"probability must be within [0, 1], got {self.probability}")
        if self.seconds < 0:
            raise ValueError(f"seconds must be >= 0, got {self.seconds}")
        if not 100 <= self.status_code <= 599:
            raise ValueError(f"status_code must be an HTTP status, got {self.status_code}")

    def error_body(self) -> dict[str, Any]:
        """The JSON body of a "status" or "error_200" answer."""
        if self.action == "error_200":
            return {"error_code": self.error_code, "error_message": "simulated error"}
        if self.body is not None:
            return self.body
        return {
            "error_code": self.status_code * 1000 + 1,
            "error_message": f"simulated HTTP {self.status_code}",
        }

    def retry_after_header(self) -> str | None:
        """The `Retry-After` header value, or None when the rule sets none."""
        if self.retry_after is None or isinstance(self.retry_after, str):
            return self.retry_after
        if float(self.retry_after).is_integer():
            return str(int(self.retry_after))
        return str(self.retry_after)


def parse_rules(data: object) -> list[FaultRule]:
    """Rules from decoded JSON (one rule object or a list of them); ValueError if malformed."""
    items = data if isinstance(data, list) else [data]
    try:
        return msgspec.convert(items, list[FaultRule])
    except msgspec.ValidationError as exc:
        raise ValueError(f"invalid fault rule: {exc}") from exc


def rule_to_json(rule: FaultRule) -> dict[str, Any]:
    """A rule as a JSON-ready dict (the shape `parse_rules` reads)."""
    out: dict[str, Any] = msgspec.to_builtins(rule)
    return out


class _Armed:
    __slots__ = ("fired", "rule")

    def __init__(self, rule: FaultRule) -> None:
        self.rule = rule
        self.fired = 0


class Faults:
    """The active fault rules; the first rule that matches a call and fires wins."""

    def __init__(self, rules: Iterable[FaultRule] = (), *, seed: int | str = 0) -> None:
        self._armed = [_Armed(rule) for rule in rules]
        self._rng = random.Random(seed)

    @property
    def rules(self) -> tuple[FaultRule, ...]:
        """The rules in the order they are tried."""
        return tuple(armed.rule for armed in self._armed)

    def add(self, *rules: FaultRule) -> None:
        """Append rules (tried after the existing ones)."""
        self._armed.extend(_Armed(rule) for rule in rules)

    def clear(self) -> None:
        """Remove every rule: the simulator behaves again."""
        self._armed.clear()

    def match(self, endpoint: str, model_id: str | None) -> FaultRule | None:
        """The rule to apply to this call, counting it as fired; None for a clean call."""
        for armed in self._armed:
            rule = armed.rule
            if rule.endpoint not in ("any", endpoint):
                continue
            if rule.model_id is not None and rule.model_id != model_id:
                continue
            if rule.times is not None and armed.fired >= rule.times:
                continue
            if rule.probability is not None and self._rng.random() >= rule.probability:
                continue
            armed.fired += 1
            return rule
        return None

    def unfire(self, rule: FaultRule) -> None:
        """Take back one firing of `rule`: it matched a call it turned out not to change."""
        for armed in self._armed:
            if armed.rule is rule and armed.fired:
                armed.fired -= 1
                return
