"""runcomfy_async: an asyncio SDK for the RunComfy Model API.

import runcomfy_async as rc
from runcomfy_async import models

async with rc.Client() as client:
    result = await client.run(models.Wan22TextToImage(prompt="a red fox"))
    print(result.output.urls)
"""

from . import models  # registers the typed inputs, so dict inputs to their ids are checked
from ._batch import Batch
from ._client import Client
from ._config import DEFAULT_BASE_URL, Timeouts
from ._cost import CostEstimate, estimate_cost
from ._errors import (
    APIError,
    AuthenticationError,
    BadRequestError,
    ConfigurationError,
    DownloadError,
    InsufficientBalanceError,
    InvalidInputError,
    JournalBusyError,
    JournalMismatchError,
    ModelMismatchError,
    NotFoundError,
    PermissionDeniedError,
    PreflightError,
    RateLimitError,
    RequestCancelledError,
    RequestFailedError,
    RunComfyError,
    ServerError,
    SubmissionUnknownError,
    TransportError,
    TransportTimeoutError,
    UnexpectedResponseError,
    UnknownModelError,
    UploadError,
    WaitTimeoutError,
)
from ._files import LocalFile, Uploader
from ._inputs import ModelInput
from ._items import Change, Item, Numbered, Progress
from ._journal import JournalRow, read_journal
from ._policy import PollPolicy
from ._request import Request
from ._retry import RetryPolicy
from ._sink import DownloadedFile
from ._sync import BlockingBatch, BlockingIterator, SyncClient
from ._telemetry import Telemetry
from ._version import __version__
from ._wire import CancelOutcome, ModelInfo, Output, Result, State, Status

__all__ = [
    "DEFAULT_BASE_URL",
    "APIError",
    "AuthenticationError",
    "BadRequestError",
    "Batch",
    "BlockingBatch",
    "BlockingIterator",
    "CancelOutcome",
    "Change",
    "Client",
    "ConfigurationError",
    "CostEstimate",
    "DownloadError",
    "DownloadedFile",
    "InsufficientBalanceError",
    "InvalidInputError",
    "Item",
    "JournalBusyError",
    "JournalMismatchError",
    "JournalRow",
    "LocalFile",
    "ModelInfo",
    "ModelInput",
    "ModelMismatchError",
    "NotFoundError",
    "Numbered",
    "Output",
    "PermissionDeniedError",
    "PollPolicy",
    "PreflightError",
    "Progress",
    "RateLimitError",
    "Request",
    "RequestCancelledError",
    "RequestFailedError",
    "Result",
    "RetryPolicy",
    "RunComfyError",
    "ServerError",
    "State",
    "Status",
    "SubmissionUnknownError",
    "SyncClient",
    "Telemetry",
    "Timeouts",
    "TransportError",
    "TransportTimeoutError",
    "UnexpectedResponseError",
    "UnknownModelError",
    "UploadError",
    "Uploader",
    "WaitTimeoutError",
    "__version__",
    "estimate_cost",
    "models",
    "read_journal",
]

# Public names report the module users import them from (`runcomfy_async.NotFoundError` in
# reprs and tracebacks, and pickles that find them there), as httpx and anyio do. Classes
# with annotations keep theirs: msgspec and typing.get_type_hints resolve those in the
# module `__module__` names.
for _name in __all__:
    _value = globals()[_name]
    if isinstance(_value, type) and "__annotations__" in vars(_value):
        continue
    if isinstance(_value, type) or callable(_value):
        _value.__module__ = __name__
del _name, _value
