"""The `runcomfy` command line's arguments: the parser of every command and its options."""

from __future__ import annotations

import argparse

from .batch_status import add_shared_batch
from .output import EPILOG

__all__ = ["build_parser"]


def _positive_int(text: str) -> int:
    return int(_positive_float(text, int))


def _positive_float(text: str, kind: type[float] = float) -> float:
    value = kind(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be more than 0, got {text}")
    return value


def build_parser() -> argparse.ArgumentParser:
    from .._version import __version__

    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--simulate", action="store_true", help="use an in-process simulator (no key, no network)"
    )
    common.add_argument("--api-key-file", metavar="PATH", help="read the API key from PATH")
    common.add_argument("--base-url", metavar="URL", help="the API base URL (e.g. a simulator)")
    common.add_argument(
        "--uploads",
        metavar="URL",
        help="upload local file inputs over the inline cap to this store prefix "
        "(s3://bucket/inputs/; credentials from the store's environment)",
    )
    as_json = argparse.ArgumentParser(add_help=False)
    as_json.add_argument("--json", action="store_true", help="print one JSON object")
    inputs = argparse.ArgumentParser(add_help=False)
    inputs.add_argument("model_id", metavar="MODEL_ID")
    inputs.add_argument(
        "-i",
        "--input",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="an input, read as its schema type (text stays text); NAME=@PATH reads VALUE "
        "from a file (repeatable)",
    )
    inputs.add_argument("--input-json", metavar="JSON", help="every input as one JSON object")

    parser = argparse.ArgumentParser(
        prog="runcomfy",
        description="Run RunComfy models from the command line.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"runcomfy {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    add = commands.add_parser
    run = add("run", parents=[inputs, common, as_json], help="run a model, print output URLs")
    run.add_argument("--out", metavar="DIR", help="download the outputs into DIR")
    run.add_argument("--timeout", type=_positive_float, metavar="S", help="give up after S s")
    add("submit", parents=[inputs, common, as_json], help="queue a request, print its id")
    lookups = {}
    for name, what in (
        ("status", "print a request's state"),
        ("result", "print a request's output URLs (--out DIR: download them)"),
        ("wait", "wait for a request, print its output URLs (--out DIR: download them)"),
        ("cancel", "cancel a queued request"),
    ):
        lookups[name] = add(name, parents=[common, as_json], help=what)
        lookups[name].add_argument("request_id", metavar="REQUEST_ID")
    for name in ("result", "wait"):
        lookups[name].add_argument("--out", metavar="DIR", help="download the outputs into DIR")
    lookups["wait"].add_argument(
        "--timeout", type=_positive_float, metavar="S", help="give up after S s"
    )
    batch = add("batch", parents=[common], help="run a model over a file of inputs")
    batch.add_argument("model_id", metavar="MODEL_ID")
    batch.add_argument("file", metavar="PROMPTS.txt|INPUTS.jsonl")
    batch.add_argument(
        "--out",
        required=True,
        metavar="DIR|URL",
        help="a folder for outputs and manifest.jsonl, or an object-store prefix for the "
        "outputs (s3://bucket/renders/; the [storage] extra)",
    )
    batch.add_argument(
        "--state",
        metavar="DIR",
        help="with --out URL: the folder of journal, manifest and gallery "
        "(default: runcomfy-state/BUCKET/PREFIX)",
    )
    add_shared_batch(add, batch)  # --journal F|URL, --batch NAME; the batch-status command
    batch.add_argument("--max-in-flight", type=_positive_int, default=32, metavar="N")
    batch.add_argument("--max-cost", type=float, metavar="USD", help="refuse to start above")
    batch.add_argument(
        "--resubmit-unknown", action="store_true", help="resend submits of unknown outcome"
    )
    batch.add_argument("--timeout", type=_positive_float, metavar="S", help="for the batch")
    batch.add_argument(
        "--retry-failed", action="store_true", help="resubmit inputs whose request ran and failed"
    )
    batch.add_argument(
        "--name-template",
        metavar="T",
        help="output file names: {index} {line} {slug} {key} {n} {request_id} {ext}",
    )
    batch.add_argument(
        "--no-preflight",
        dest="preflight",
        action="store_false",
        help="skip fetching file inputs' headers to check the model's media rules first",
    )
    models = add("models", help="model catalog").add_subparsers(
        dest="models_command", metavar="COMMAND", required=True
    )
    listing = models.add_parser(
        "list", parents=[common], help="every model: id, category, price and unit"
    )
    listing.add_argument("--search", metavar="TEXT", help="only ids or names containing TEXT")
    listing.add_argument("--category", metavar="C", help="only models of category C")
    listing.add_argument("--json", action="store_true", help="one JSON object per model")
    info = models.add_parser(
        "info", parents=[common, as_json], help="the whole input shape, its rules and the price"
    )
    info.add_argument("model_id", metavar="MODEL_ID")
    codegen = models.add_parser(
        "codegen", parents=[common], help="write a typed input class from the catalog schema"
    )
    codegen.add_argument("model_id", metavar="MODEL_ID")
    codegen.add_argument("-o", "--out", metavar="FILE", help="default: print it")
    codegen.add_argument("--force", action="store_true", help="replace FILE if it exists")
    codegen.add_argument("--class-name", metavar="NAME", help="default: from the model id")
    add(
        "simulator",
        help="serve a local RunComfy simulator: `runcomfy simulator --help` lists its options",
        add_help=False,
    )
    return parser
