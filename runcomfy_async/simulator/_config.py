"""The simulator's configuration: frozen dataclasses, defaults that serve both seed models."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

from ._catalog_extra import catalog_models
from ._faults import FaultRule
from ._profile import ModelProfile


@dataclass(frozen=True, slots=True)
class Quirks:
    """Switches between the behaviours RunComfy's docs, mocks and clients disagree on.

    `not_ready`: an unfinished /result answers 200 with the state ("status") or HTTP 400
    `{"error_code": 400005}` ("400005"). `failed_status`: a failed job reads "completed"
    on /status (the documented quirk) or "failed" with an `error`. `errors_as_200`: every API
    error is answered as HTTP 200 with `error_code`. `submit_style`: "full" answers 200 with
    the three URLs, "minimal" answers 202 with only `request_id` and `status`.
    `fresh_404_seconds`: a new request_id answers 404 404001 on status/result for this
    long (seconds on the simulator clock, not scaled), like an eventually consistent store.
    `unknown_model`: a model id the catalog lacks answers HTTP 400 `400001` (RunComfy's
    docs) or HTTP 404 `404001` (what RunComfy's CLI expects). `cancel_style`: cancelling a
    queued request answers `cancelled` at once ("cancelled"), or `cancellation_requested`
    while it still reads `in_queue` for `cancel_delay` seconds (scaled by `time_scale`) and
    then reads `cancelled` ("requested"); it never runs either way. `state_words` renames
    the state words of /status, /result and cancel answers, e.g. `{"in_queue": "pending",
    "in_progress": "processing", "cancelled": "canceled"}`: the words RunComfy's own
    clients accept, for tests that must see them (keys: `STATE_WORDS`).
    """

    not_ready: Literal["status", "400005"] = "status"
    failed_status: Literal["completed", "failed"] = "completed"
    errors_as_200: bool = False
    submit_style: Literal["full", "minimal"] = "full"
    fresh_404_seconds: float = 0.0
    unknown_model: Literal["400001", "404"] = "400001"
    cancel_style: Literal["cancelled", "requested"] = "cancelled"
    cancel_delay: float = 1.0
    state_words: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        unknown = set(self.state_words) - set(STATE_WORDS)
        if unknown:
            raise ValueError(
                f"state_words renames {sorted(unknown)}; the words are {list(STATE_WORDS)}"
            )
        if not all(isinstance(word, str) and word for word in self.state_words.values()):
            raise ValueError("state_words must map each word to a non-empty string")
        if self.cancel_delay < 0:
            raise ValueError(f"cancel_delay must be >= 0, got {self.cancel_delay}")

    def word(self, state: str) -> str:
        """The word answered for `state` (one of STATE_WORDS)."""
        return self.state_words.get(state, state)


#: The state words the simulator answers, which `Quirks.state_words` may rename.
STATE_WORDS = ("in_queue", "in_progress", "completed", "succeeded", "failed", "cancelled")
#: Words RunComfy's own clients accept besides the documented ones.
ALTERNATIVE_STATE_WORDS: Mapping[str, str] = {
    "in_queue": "pending",
    "in_progress": "processing",
    "cancelled": "canceled",
}


def default_models() -> dict[str, ModelProfile]:
    """The simulator's catalog: the seed models, then seven more whose schemas use what
    RunComfy's catalog does (floats, nullable defaults, image/video/audio URIs and lists of
    them, LoRA arrays of objects, nested objects, media `validations`)."""
    return catalog_models()


@dataclass(frozen=True, slots=True)
class SimulatorConfig:
    """Everything a Simulator needs; every duration is in seconds.

    `time_scale` multiplies the job timeline (run times, `queue_delay`, `output_ttl`):
    0.01 makes a 20 s job take 0.2 s. `concurrency` caps how many jobs run at once on the
    account (None: unlimited); the rest wait FIFO. `balance_usd` None means unlimited credit.
    `clock` is the simulator clock (monotonic seconds), injectable for virtual-time tests;
    `wall_clock` (epoch seconds) only anchors the ISO 8601 timestamps in answers.
    `api_key` None accepts any non-empty bearer token. `submit_rate` (submits per second,
    None: no limit) is a token bucket holding up to `submit_burst` submits: a submit with
    no token is answered 429 `{"error_code": 429001}` with `Retry-After` (the seconds until
    the next token, as a decimal; none when `submit_retry_after` is False: RunComfy
    documents no rate-limit header) and creates nothing. `fetch_inputs` makes each submit
    read its file inputs (URLs and data: URIs) as RunComfy does, recording what it got in
    the ledger's `fetched`; an input it cannot read is answered 422 and creates nothing.
    """

    models: Mapping[str, ModelProfile] = field(default_factory=default_models)
    time_scale: float = 1.0
    queue_delay: float = 0.5
    concurrency: int | None = None
    failure_rate: float = 0.0
    seed: int = 0
    quirks: Quirks = field(default_factory=Quirks)
    faults: Sequence[FaultRule] = ()
    api_key: str | None = field(default=None, repr=False)
    balance_usd: float | None = None
    output_ttl: float | None = None
    files_base_url: str | None = None
    submit_rate: float | None = None
    submit_burst: float = 1.0
    submit_retry_after: bool = True
    fetch_inputs: bool = False
    host: str = "127.0.0.1"
    port: int = 0
    clock: Callable[[], float] = field(default=time.monotonic, repr=False)
    wall_clock: Callable[[], float] = field(default=time.time, repr=False)

    def __post_init__(self) -> None:
        if self.time_scale <= 0:
            raise ValueError(f"time_scale must be > 0, got {self.time_scale}")
        if self.queue_delay < 0:
            raise ValueError(f"queue_delay must be >= 0, got {self.queue_delay}")
        if self.concurrency is not None and self.concurrency < 1:
            raise ValueError(f"concurrency must be >= 1 or None, got {self.concurrency}")
        if not 0 <= self.failure_rate <= 1:
            raise ValueError(f"failure_rate must be within [0, 1], got {self.failure_rate}")
        if self.output_ttl is not None and self.output_ttl <= 0:
            raise ValueError(f"output_ttl must be > 0 or None, got {self.output_ttl}")
        if not self.models:
            raise ValueError("models must name at least one model")
        if self.submit_rate is not None and not self.submit_rate > 0:
            raise ValueError(f"submit_rate must be > 0 or None, got {self.submit_rate}")
        if not self.submit_burst >= 1:
            raise ValueError(f"submit_burst must be >= 1, got {self.submit_burst}")
