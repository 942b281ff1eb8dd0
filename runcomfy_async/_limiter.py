"""Client-wide paces: the fixed cap (`max_calls_per_second`) and the one learnt from 429s."""

from __future__ import annotations

import math
from collections import deque

import anyio

from ._retry import Clock, Sleep


class RateLimiter:
    """Token bucket shared by every call of a client (submits, polls, results, cancels).

    Callers are served in arrival order: a lock makes each wait its turn, so one slow
    caller cannot be overtaken indefinitely.
    """

    def __init__(self, rate: float, *, burst: float | None = None, clock: Clock, sleep: Sleep):
        if not (rate > 0 and math.isfinite(rate)):
            raise ValueError("max_calls_per_second must be a positive number")
        self.rate = rate
        self.burst = max(1.0, burst if burst is not None else rate)
        self._clock = clock
        self._sleep = sleep
        self._tokens = self.burst
        self._stamp = clock()
        self._lock = anyio.Lock()

    def _refill(self) -> None:
        now = self._clock()
        self._tokens = min(self.burst, self._tokens + (now - self._stamp) * self.rate)
        self._stamp = now

    async def acquire(self) -> None:
        """Wait until one call may be sent, and take its token."""
        async with self._lock:
            self._refill()
            if self._tokens < 1.0:
                await self._sleep((1.0 - self._tokens) / self.rate)
                self._refill()
                # We held the lock, so the token is ours; a loop until the float reached
                # 1.0 exactly could spin on waits too small to move the clock.
                self._tokens = max(self._tokens, 1.0)
            self._tokens -= 1.0


class Ticket:
    """What `AdaptiveRate.acquire` hands a call: its scope, pace epoch and send time."""

    __slots__ = ("epoch", "pulled", "scope", "sent")

    def __init__(self, scope: _Pace, epoch: int, sent: float, pulled: bool) -> None:
        self.scope = scope
        self.epoch = epoch
        self.sent = sent
        self.pulled = pulled  # sent early, at a time a Retry-After gave


class _Pace:
    """One scope's learnt pace (see AdaptiveRate)."""

    __slots__ = (
        "admits",
        "capped",
        "clean",
        "epoch",
        "good",
        "history",
        "last",
        "late",
        "limited",
        "limited_at",
        "lock",
        "ok",
        "peak",
        "pull",
        "rate",
        "sent",
        "since",
        "trust",
        "wait",
        "window",
    )

    def __init__(self) -> None:
        self.rate: float | None = None  # calls/s let through; None: not throttled
        self.epoch = 0  # bumped by every judgement: a rate is judged by calls sent under it
        self.since = -math.inf  # when the first call of this epoch was let through
        self.sent = self.ok = self.limited = 0  # this epoch's calls and their answers
        # (sent/s, refused share, admitted/s, admitted) of the last epochs
        self.history: deque[tuple[float, float, float, int]] = deque(maxlen=4)
        self.last = -math.inf  # when the last call was let through
        self.late = 0.0  # how late it was let through (seconds)
        self.capped = False  # a limit was met since throttling began
        self.good: float | None = None  # the highest rate that went with few 429s
        self.peak: float | None = None  # the most the server admitted lately (calls/s)
        self.wait = 0  # clean epochs to hold before probing past `good` again
        self.clean = 0  # clean epochs held so far
        self.trust = 0  # epochs to leave an unbinding pace be, its 429s not about it
        self.pull: float | None = None  # when a Retry-After says the server takes one again
        self.limited_at = -math.inf  # when the last 429 came
        self.window: deque[float] = deque()  # let-through times of the last WINDOW seconds
        self.admits: deque[float] = deque()  # admitted answers' times, the last ADMITS s
        self.lock = anyio.Lock()


class AdaptiveRate:
    """The client-wide pace learnt from 429s: every call of a scope passes through it.

    Not throttled until a 429 comes; then calls go one by one, `1 / rate` seconds apart, in
    arrival order, from `beta` times the rate they went at. The rate is judged in epochs,
    by the calls sent under it (at least `dwell` seconds and 6 answers, or 3 x `dwell`):
    sent per second (S), admitted (A: answers other than 429), refused share (f).

    - No 429 while the pace binds (S >= 0.8 x rate): raised, x1.25 until a limit was met,
      then by `probe` (x2, up to it, while far under the most the server admitted lately);
      past the last rate that worked only after a hold that doubles with each failed probe.
      A probe fails at its first 429, back to that rate at once: against a strict limit
      calls a little too fast are refused every other one. Not binding and no 429 for
      `quiet` seconds: unpaced again.
    - 429s (f >= 20 %) while it binds: compared with a recent epoch whose S differed by a
      third or so. Admissions steady while sends moved (or, none admitted, refusals moving
      with sends): the server has a limit, and the rate goes to the admitted rate of the
      last 2 s (back to the last rate that worked, when a probe past it failed). Answers
      following sends: the 429s are not about the pace (a server refusing each call a few
      times), the rate goes well past the fastest tried and is left be for a while. With
      nothing to compare, halving is the experiment; with nothing of the epoch admitted
      (an outage of 429s), halving too. f < 20 %: held (the knee, jitter).
    - 429s while it does not bind: the same experiment at half the calls sent, unless it
      was lately found not to be about the pace.

    A 429's Retry-After is information too: the server takes a call again at answer +
    Retry-After, so the next call goes then instead of a whole gap later, and a refusal
    for arriving a little early (jitter against a strict server) costs that, not a slot.
    A call let through late (a busy event loop) lets the next go that much sooner, up to
    half a gap. Scopes are independent paces: RunComfy may limit submits apart from polls.
    """

    WINDOW = 1.0  # seconds over which the send rate is measured at the first 429
    ADMITS = 2.0  # seconds over which the admitted rate is measured
    F_KNEE = 0.2  # refused share below which a binding rate is held
    FEW = 4  # admitted calls an epoch needs to be compared with another

    def __init__(
        self,
        *,
        clock: Clock,
        sleep: Sleep,
        min_rate: float = 0.5,
        beta: float = 0.85,
        dwell: float = 0.2,
        probe: float = 1.1,
        margin: float = 0.0,
        quiet: float = 2.0,
    ) -> None:
        self._clock = clock
        self._sleep = sleep
        self._min_rate = min_rate
        self._beta = beta
        self._dwell = dwell
        self._probe = probe
        self._margin = margin
        self._quiet = quiet
        self._paces: dict[str, _Pace] = {}

    def rate(self, scope: str) -> float | None:
        """Calls per second now allowed in `scope`; None when it is not throttled."""
        pace = self._paces.get(scope)
        return None if pace is None else pace.rate

    async def acquire(self, scope: str) -> Ticket:
        """Wait for this call's turn in `scope`'s pace; the ticket goes to `answered`."""
        pace = self._paces.get(scope)
        if pace is None:
            pace = self._paces[scope] = _Pace()
        due = -math.inf
        if pace.rate is not None or pace.lock.locked():
            async with pace.lock:  # in arrival order; the head waits for the pace
                while True:
                    now = self._clock()
                    due = self._due(pace)
                    if due <= now:
                        break
                    # In steps, so a 429 answered meanwhile (a Retry-After) counts at once.
                    step = 0.1 / pace.rate if pace.rate is not None else 0.0
                    await self._sleep(min(due - now, step, 0.05))
        now = self._clock()
        pulled = pace.pull is not None and pace.pull <= now
        pace.pull = None  # a Retry-After tells of the one next call, not of later ones
        # Late (a busy event loop): the next goes that much sooner, so the pace holds on
        # average, as in GCRA.
        late = now - due if pace.rate is not None and math.isfinite(due) and not pulled else 0.0
        pace.late = min(late, 0.5 / pace.rate) if pace.rate is not None else 0.0
        if pace.sent == 0:
            pace.since = now
        pace.sent += 1
        pace.last = now
        pace.window.append(now)
        _forget(pace.window, now - self.WINDOW)
        return Ticket(pace, pace.epoch, now, pulled)

    def answered(
        self, ticket: Ticket, *, rate_limited: bool, retry_after: float | None = None
    ) -> None:
        """The call holding `ticket` was answered: with a 429 (`rate_limited`, and the
        server's Retry-After in seconds if it gave one) or otherwise."""
        pace, now = ticket.scope, self._clock()
        if not rate_limited:
            pace.admits.append(now)
            _forget(pace.admits, now - self.ADMITS)
        else:
            pace.limited_at = now
            if retry_after is not None and ticket.sent == pace.last and not ticket.pulled:
                # Nothing was sent since: the next call may go when the server said.
                pace.pull = now + retry_after
        if ticket.epoch != pace.epoch:
            return  # sent under an earlier pace: already answered for
        if pace.rate is None:
            if rate_limited:  # the first 429: start just under the rate calls went at
                _forget(pace.window, now - self.WINDOW)
                # Over the last second, or since the first call if the client just began.
                span = min(self.WINDOW, max(now - pace.window[0], 0.25)) if pace.window else 1.0
                sent = len(pace.window) / span
                pace.peak = self._admitted(pace, now)
                self._next(pace, max(self._min_rate, self._beta * sent))
            return
        if rate_limited:
            pace.limited += 1
            if pace.good is not None and pace.rate > pace.good and pace.capped:
                # A probe past the last rate that worked met a 429: it failed. Back at once:
                # against a strict limit, calls a little too fast are refused every other
                # one, so judging the probe over a whole epoch cost half an epoch's calls.
                pace.clean = 0
                self._probe_failed(pace)
                self._next(pace, pace.good)
                return
        else:
            pace.ok += 1
        answers = pace.ok + pace.limited
        span = now - pace.since
        if span < self._dwell or (answers < 6 and span < 3 * self._dwell):
            return  # too soon to judge this epoch's rate
        self._judge(pace, now, span)

    def _due(self, pace: _Pace) -> float:
        """When the next call may go (-inf: now)."""
        if pace.rate is None:
            return -math.inf
        gap = 1.0 / pace.rate
        due = pace.last + gap - pace.late
        if pace.pull is not None:  # the server said when it takes one again: go then
            due = min(due, pace.pull)
        return due

    def _judge(self, pace: _Pace, now: float, span: float) -> None:
        rate = pace.rate
        assert rate is not None
        lately = self._admitted(pace, now)  # calls/s admitted over the last ADMITS s
        sent = pace.sent / span
        refused = pace.limited / (pace.ok + pace.limited)
        binding = sent >= 0.8 * rate
        new = rate
        if binding and refused < self.F_KNEE and (pace.good is None or rate > pace.good):
            pace.good, pace.wait = rate, 0  # a rate that works
        if pace.limited == 0:
            if binding:
                pace.clean += 1
                if pace.clean > pace.wait:
                    pace.clean = 0
                    if not pace.capped:
                        new = rate * 1.25
                    elif pace.peak is not None and 1.25 * rate <= pace.peak:
                        # Far under what the server admitted lately (a cut during an outage
                        # of 429s that let a few calls through): regain it quickly, not
                        # x1.1 an epoch (from 3.7 calls/s to 500: a minute).
                        new = min(2.0 * rate, pace.peak)
                    else:
                        new = rate * self._probe
            elif now - pace.limited_at >= self._quiet:
                self._next(pace, None)  # well under the pace, no 429 for a while: unpaced
                return
        elif not binding and refused >= self.F_KNEE:
            if pace.trust > 0:  # lately found not to be about the pace: leave it be
                pace.trust -= 1
            else:  # the experiment: would half the calls meet as many refusals?
                new = 0.5 * sent
        elif binding and refused >= self.F_KNEE:
            admitted = pace.ok / span
            followed = None  # did the server's answers follow the send rate?
            for old_sent, old_refused, old_admitted, old_ok in reversed(pace.history):
                ratio = math.log(sent / old_sent)
                if abs(ratio) >= 0.25:
                    # A few admissions tell nothing: 1 call in each of two epochs read as
                    # "admissions did not follow", and a strict 5/s server was hammered at
                    # 556 calls/s for 3 s. Too few to compare: the experiment below.
                    few, most = min(pace.ok, old_ok), max(pace.ok, old_ok)
                    if few >= self.FEW:  # admissions steady while sends moved: a limit
                        followed = math.log(admitted / old_admitted) / ratio < 0.5
                    elif few == 0 and most >= self.FEW:  # admissions began or stopped
                        followed = (1 if pace.ok else -1) * ratio < 0
                    elif most == 0:  # none admitted: did fewer calls meet fewer refusals?
                        followed = (refused - old_refused) * math.copysign(1.0, ratio) >= 0.05
                    break
            if followed is False:
                # Slowing down did not help: these 429s are not about the pace. Well past
                # the fastest rate tried: a pace too fast for the server is cut in one step.
                new = 4.0 * max(rate, *(old[0] for old in pace.history))
                pace.trust = min(2 * pace.trust + 4, 32)
            elif pace.ok == 0:
                # Nothing of this epoch admitted: an outage (everything refused) tells no
                # rate the server takes. Halve, and stay uncapped so the pace regrows at
                # x1.25 an epoch once calls get through. Cutting to the admitted rate of the
                # last ADMITS seconds (nil, or the few answered before the outage: 3.7/s
                # for 500 requests) left the client crawling, capped, at x1.1 an epoch of
                # seconds, long after a 2 s outage of 429s had ended.
                new = 0.5 * rate
                pace.capped, pace.clean, pace.wait, pace.good = False, 0, 0, None
            else:
                pace.capped, pace.clean, pace.trust = True, 0, 0
                target = (1.0 - self._margin) * lately
                if pace.good is not None and pace.good < rate:
                    # A probe past a rate that worked failed: back to it, probe later.
                    new = max(pace.good, target)
                    self._probe_failed(pace)
                else:
                    new = target if followed else max(target, 0.5 * rate)
                    pace.good, pace.wait = None, 0
        pace.history.append((sent, refused, pace.ok / span, pace.ok))
        pace.peak = max(pace.peak or 0.0, lately)
        self._next(pace, max(self._min_rate, new))

    @staticmethod
    def _probe_failed(pace: _Pace) -> None:
        """A probe past the last rate that worked met 429s: hold longer before the next,
        and forget the peak that invited it."""
        pace.wait = min(2 * pace.wait + 1, 8)
        pace.peak = None

    def _admitted(self, pace: _Pace, now: float) -> float:
        """Calls per second the server admitted lately (answers other than 429)."""
        _forget(pace.admits, now - self.ADMITS)
        times = pace.admits
        if len(times) >= 3 and times[-1] > times[0]:
            return (len(times) - 1) / (times[-1] - times[0])
        return len(times) / self.ADMITS

    def _next(self, pace: _Pace, rate: float | None) -> None:
        """Start a new epoch under `rate`."""
        pace.rate = rate
        pace.epoch += 1
        pace.sent = pace.ok = pace.limited = 0
        if rate is None:
            pace.history.clear()
            pace.pull = pace.good = pace.peak = None
            pace.capped, pace.wait, pace.clean, pace.trust = False, 0, 0, 0


def _forget(times: deque[float], before: float) -> None:
    while times and times[0] < before:
        times.popleft()
