"""`runcomfy batch-status`: a batch's progress and manifest from its journal alone, any host."""

from __future__ import annotations

import argparse
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .._journals import is_postgres
from .manifest import word, write_manifest
from .output import CommandError, usd, writable_folder

__all__ = ["add_shared_batch", "run_batch_status"]


def add_shared_batch(add: Callable[..., argparse.ArgumentParser], batch: Any) -> None:
    """`runcomfy batch`'s --journal F|URL and --batch NAME, and the batch-status command."""
    batch.add_argument(
        "--journal",
        metavar="F|URL",
        help="default: DIR/journal.sqlite; postgresql://... shares the batch (with --batch)",
    )
    batch.add_argument("--batch", metavar="NAME", help="the shared batch of a postgresql journal")
    status = add("batch-status", help="a batch's progress and manifest, from its journal alone")
    status.add_argument("--journal", required=True, metavar="F|URL", help="as for batch")
    status.add_argument("--batch", metavar="NAME", help="the shared batch of a postgresql journal")
    status.add_argument("--manifest", metavar="PATH", help="write the manifest (JSON lines) here")
    status.set_defaults(simulate=False, base_url=None, api_key_file=None)  # needs no key


async def run_batch_status(args: argparse.Namespace) -> int:
    """Print where every input of the batch stands; write the manifest (--manifest)."""
    from .batch import read_rows  # the batch command's module, only when it runs

    journal: Path | str = args.journal
    where = args.journal
    workers: list[tuple[str, int, bool]] = []
    in_flight = None
    if is_postgres(args.journal):
        if not args.batch:
            raise CommandError("a postgresql:// --journal needs --batch NAME")
        from .._pgjournal import PgJournal, redact

        where = f"{redact(args.journal)} (batch {args.batch})"
        shared = PgJournal(args.journal, args.batch)
        try:
            await shared.connect(lease=False)  # a reader: it takes no lease
            workers, in_flight = await shared.workers(), await shared.in_flight()
        finally:
            await shared.close()
    else:
        if args.batch:
            raise CommandError("--batch NAME names a batch of a postgresql:// --journal")
        journal = Path(args.journal)
        if not journal.is_file():
            raise CommandError(f"no such journal: {journal}")
    rows = await read_rows(journal, args.batch)
    words = Counter(word(row) for row in rows)
    spent = sum(row.spent for row in rows)
    order = ("succeeded", "failed", "cancelled", "running", "unknown", "not sent")
    counts = ", ".join(f"{words.get(name, 0)} {name}" for name in order)
    lines = [f"runcomfy batch-status: {len(rows)} inputs: {counts}", f"  journal: {where}"]
    if in_flight is not None:
        lines.append(f"  in flight across the batch's workers: {in_flight}")
    live = [f"{host}:{pid}" for host, pid, alive in workers if alive]
    lapsed = [f"{host}:{pid}" for host, pid, alive in workers if not alive]
    if workers:
        lines.append(f"  workers: {len(live)} live ({', '.join(live) or '-'})")
        if lapsed:
            lines.append(
                f"  lease expired: {', '.join(lapsed)} (their requests are taken over by the "
                "next worker that reads them)"
            )
    lines.append(f"  cost so far: {usd(spent)}")
    if args.manifest:
        manifest = Path(args.manifest)
        writable_folder(manifest.parent, "--manifest")  # created if need be
        write_manifest(manifest, rows, [], resumed=set())
        lines.append(f"  manifest: {manifest}")
    print("\n".join(lines), flush=True)
    return 0
