"""Run times learnt per model, kept between processes: the per-user cache file."""

from __future__ import annotations

import json
import logging
import math
import os
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ._place import replace_whole

if TYPE_CHECKING:
    from ._journals import BatchJournal
    from ._poll import Scheduler

__all__ = ["JournalRunTimes", "RunTimesFile", "cache_path", "run_times_file"]

logger = logging.getLogger("runcomfy_async")

FORMAT = "runcomfy_async/run-times"
VERSION = 1
KEEP = 64  # samples kept per model (the newest)
MAX_MODELS = 256  # models kept (the most recently updated)
ENV = "RUNCOMFY_RUN_TIMES"  # a file path, or "off"
_OFF = frozenset({"", "0", "off", "false", "no", "none"})

Learnt = dict[str, list[float]]


def cache_path(env: Mapping[str, str], platform: str = sys.platform) -> Path:
    """The per-user cache file: XDG_CACHE_HOME (or ~/.cache) on Linux and other Unixes,
    ~/Library/Caches on macOS, %LOCALAPPDATA% on Windows; then runcomfy_async/run_times.json."""
    home = Path(env.get("HOME") or env.get("USERPROFILE") or Path.home())
    if platform == "win32":
        local = env.get("LOCALAPPDATA")
        base = Path(local) if local else home / "AppData" / "Local"
        return base / "runcomfy_async" / "Cache" / "run_times.json"
    if platform == "darwin":
        return home / "Library" / "Caches" / "runcomfy_async" / "run_times.json"
    xdg = env.get("XDG_CACHE_HOME")
    base = Path(xdg) if xdg and os.path.isabs(xdg) else home / ".cache"
    return base / "runcomfy_async" / "run_times.json"


def run_times_file(
    option: bool | str | os.PathLike[str], env: Mapping[str, str]
) -> RunTimesFile | None:
    """The cache a Client keeps run times in: True is the per-user file (RUNCOMFY_RUN_TIMES,
    a path or `off`, overrides it), False none, a path that file."""
    if option is False:
        return None
    if option is True:
        named = env.get(ENV)
        if named is not None:
            return None if named.strip().lower() in _OFF else RunTimesFile(named)
        return RunTimesFile(cache_path(env))
    return RunTimesFile(option)


class RunTimesFile:
    """Run times per model id in a small JSON file shared by every process of the user.

    Reading never fails: a missing file is empty, a corrupt or foreign one is ignored with
    a warning. Writing merges with what the file holds now (other processes write too),
    keeps the newest `KEEP` samples of the models this process timed, and replaces the
    file atomically (a temporary file in the same folder, then a rename); a failure to
    write is a warning, never an error.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)

    def __repr__(self) -> str:
        return f"RunTimesFile({str(self.path)!r})"

    def load(self) -> Learnt:
        """Samples per model id (seconds, oldest first); {} when there is nothing usable."""
        try:
            text = self.path.read_bytes()
        except FileNotFoundError:
            return {}
        except OSError as exc:
            logger.warning("run times not read from %s: %s", self.path, exc.strerror or exc)
            return {}
        return self._parse(text)

    def _parse(self, text: bytes) -> Learnt:
        try:
            data = json.loads(text)
        except ValueError:
            logger.warning("run times not read from %s: not JSON; it will be replaced", self.path)
            return {}
        if not (_ours(data) and isinstance(data["models"], dict)):
            logger.warning(
                "run times not read from %s: not a run-times file of version %s; it will be "
                "replaced",
                self.path,
                VERSION,
            )
            return {}
        learnt: Learnt = {}
        for model_id, entry in data["models"].items():
            samples = entry.get("samples") if isinstance(entry, dict) else None
            if isinstance(samples, list):
                good = [float(s) for s in samples if _is_seconds(s)]
                if good:
                    learnt[model_id] = good[-KEEP:]
        return learnt

    def save(self, learnt: Mapping[str, Sequence[float]]) -> None:
        """Write the samples of the models named, keeping the others the file holds."""
        if not learnt:
            return
        models = self._entries()
        now = time.time()
        for model_id, samples in learnt.items():
            kept = [round(float(s), 3) for s in samples if _is_seconds(s)][-KEEP:]
            if kept:
                models[model_id] = {"samples": kept, "updated_at": now}
        newest = sorted(models.items(), key=lambda item: -_updated(item[1]))[:MAX_MODELS]
        body = json.dumps({"format": FORMAT, "version": VERSION, "models": dict(newest)})
        try:
            self._replace(body.encode())
        except OSError as exc:
            logger.warning("run times not saved to %s: %s", self.path, exc.strerror or exc)

    def _entries(self) -> dict[str, Any]:
        """What the file holds now, as entries to write back (nothing if it is unusable)."""
        try:
            data = json.loads(self.path.read_bytes())
        except (OSError, ValueError):
            return {}
        if not (_ours(data) and isinstance(data["models"], dict)):
            return {}
        return {
            model_id: entry
            for model_id, entry in data["models"].items()
            if isinstance(model_id, str) and isinstance(entry, dict)
        }

    def _replace(self, body: bytes) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        replace_whole(self.path, body, durable=True)


def _ours(data: Any) -> bool:
    return (
        isinstance(data, dict)
        and data.get("format") == FORMAT
        and data.get("version") == VERSION
        and "models" in data
    )


def _is_seconds(value: object) -> bool:
    return (
        isinstance(value, int | float)
        and not isinstance(value, bool)
        and math.isfinite(value)
        and value >= 0
    )


def _updated(entry: Any) -> float:
    stamp = entry.get("updated_at") if isinstance(entry, dict) else None
    return float(stamp) if isinstance(stamp, int | float) and _is_seconds(stamp) else 0.0


class JournalRunTimes:
    """A batch's run times in its journal: read at its start, saved as runs finish (every
    `every` runs timed) and at its end, so a resumed or shared batch starts warm.

    Neither ever fails the batch: the journal's run times are a hint, its records are not.
    """

    def __init__(self, scheduler: Scheduler, every: int = 20) -> None:
        self._scheduler = scheduler
        self._every = every
        self._saved_at = 0  # runs timed at the last save

    async def load(self, journal: BatchJournal) -> None:
        try:
            self._scheduler.seed(await journal.run_times())
        except Exception as exc:
            logger.warning("run times not read from the batch journal: %r", exc)
        self._saved_at = self._scheduler.timed

    async def tick(self, journal: BatchJournal) -> None:
        if self._scheduler.timed - self._saved_at >= self._every:
            await self.save(journal)

    async def save(self, journal: BatchJournal) -> None:
        timed = self._scheduler.timed
        if timed == self._saved_at:
            return
        self._saved_at = timed
        try:
            await journal.save_run_times(self._scheduler.learnt())
        except Exception as exc:
            logger.warning("run times not saved to the batch journal: %r", exc)
