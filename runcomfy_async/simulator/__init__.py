"""A faithful local simulator of the RunComfy Model API, for tests and benchmarks.

It imports nothing else from runcomfy_async: the client is tested against it.

```python
from runcomfy_async.simulator import Simulator, SimulatorConfig

async with Simulator(SimulatorConfig(time_scale=0.01, concurrency=4)) as sim:
    ...  # sim.url, sim.ledger, sim.faults, sim.now()
```
"""

from ._catalog import CatalogEntry, validate
from ._config import (
    ALTERNATIVE_STATE_WORDS,
    STATE_WORDS,
    Quirks,
    SimulatorConfig,
    default_models,
)
from ._engine import Engine, Job, JobState
from ._faults import FaultRule, Faults, parse_rules
from ._ledger import Call, Ledger
from ._profile import RUNWAY_IMAGE_TO_VIDEO, WAN_TEXT_TO_IMAGE, ModelProfile
from ._serve import add_arguments, config_from_args, main, serve
from ._simulator import Simulator

__all__ = [
    "ALTERNATIVE_STATE_WORDS",
    "RUNWAY_IMAGE_TO_VIDEO",
    "STATE_WORDS",
    "WAN_TEXT_TO_IMAGE",
    "Call",
    "CatalogEntry",
    "Engine",
    "FaultRule",
    "Faults",
    "Job",
    "JobState",
    "Ledger",
    "ModelProfile",
    "Quirks",
    "Simulator",
    "SimulatorConfig",
    "add_arguments",
    "config_from_args",
    "default_models",
    "main",
    "parse_rules",
    "serve",
    "validate",
]
