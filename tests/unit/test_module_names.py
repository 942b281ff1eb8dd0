"""Public names report the module users import them from."""

from __future__ import annotations

import pickle
import traceback

import runcomfy_async as rc


def test_errors_and_classes_show_their_public_module() -> None:
    error = rc.NotFoundError("request r-1 not found", status_code=404, request_id="r-1")
    shown = "".join(traceback.format_exception(error))
    assert shown.startswith("runcomfy_async.NotFoundError: request r-1")
    assert "_errors" not in shown
    assert repr(rc.Client).startswith("<class 'runcomfy_async.Client'>")
    assert rc.JournalMismatchError.__module__ == "runcomfy_async"
    assert rc.read_journal.__module__ == "runcomfy_async"


def test_a_pickled_error_is_found_under_its_public_name() -> None:
    error = rc.RunComfyError("boom")
    assert b"runcomfy_async._errors" not in pickle.dumps(error)
    assert type(pickle.loads(pickle.dumps(error))) is rc.RunComfyError
