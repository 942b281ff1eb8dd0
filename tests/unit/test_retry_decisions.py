"""The one table of retry decisions (call kind x how an attempt ended), row by row."""

from __future__ import annotations

import pytest

from runcomfy_async._retry import REFUSALS, CallKind, Decision, Happened, decide

RETRY, RAISE, UNKNOWN = Decision.RETRY, Decision.RAISE, Decision.UNKNOWN_OUTCOME
SUBMIT, READS = CallKind.SUBMIT, (CallKind.STATUS, CallKind.RESULT, CallKind.CANCEL)
A, E = Happened.ANSWERED, Happened.EMBEDDED_ERROR

# (how it ended, status, decision for a submit, decision for status/result/cancel)
TABLE: list[tuple[Happened, int | None, Decision, Decision]] = [
    (Happened.CONNECT_FAILED, None, RETRY, RETRY),  # not a byte left
    (Happened.SEND_FAILED, None, UNKNOWN, RETRY),  # reset after sending
    (Happened.TIMED_OUT, None, UNKNOWN, RETRY),
    (Happened.UNREADABLE, 200, UNKNOWN, RETRY),  # a 2xx cut short or garbled
    (A, 429, RETRY, RETRY),  # an explicit refusal: wait and go again
    (E, 429, RETRY, RETRY),  # 429001 inside a 200
    # explicit refusals of a submit: no job exists, final
    *[(A, code, RAISE, RAISE) for code in (400, 401, 402, 403, 404, 409, 413, 422)],
    (E, 400, RAISE, RAISE),  # 400002 inside a 200
    # a job may exist: never resent; transient for reads
    (A, 408, UNKNOWN, RETRY),
    *[(A, code, UNKNOWN, RETRY) for code in (500, 502, 503, 504, 507, 520, 522, 524, 530, 599)],
    (E, 500, UNKNOWN, RETRY),  # 500001 inside a 200
    # a job may exist; final for reads (a retry will not change them)
    (A, 501, UNKNOWN, RAISE),
    (A, 505, UNKNOWN, RAISE),
    # not an answer the SDK understands: unknown for a submit, final for reads
    *[(A, code, UNKNOWN, RAISE) for code in (100, 101, 199, 301, 302, 307, 308, 399)],
    *[(A, code, UNKNOWN, RAISE) for code in (418, 444, 460, 499)],  # gateway oddities
    (E, None, UNKNOWN, RAISE),  # an error_code inside a 200 that names no status
]


@pytest.mark.parametrize(
    ("happened", "status", "on_submit", "on_read"),
    TABLE,
    ids=[f"{h.name.lower()}-{s}" for h, s, _, _ in TABLE],
)
def test_decision_row(
    happened: Happened, status: int | None, on_submit: Decision, on_read: Decision
) -> None:
    assert decide(SUBMIT, happened, status) is on_submit
    for kind in (*READS, CallKind.CATALOG):
        assert decide(kind, happened, status) is on_read


@pytest.mark.parametrize("status", range(100, 600))
def test_every_status_answering_a_submit_is_a_refusal_or_an_unknown_outcome(status: int) -> None:
    """No HTTP status makes a submit retried except 429 (nothing created), and only the
    explicit refusals are final: everything else may follow a job that exists."""
    decision = decide(SUBMIT, A, status)
    if status == 429:
        assert decision is RETRY
    elif status in REFUSALS:
        assert 400 <= status < 500
        assert status != 408
        assert decision is RAISE
    else:
        assert decision is UNKNOWN
