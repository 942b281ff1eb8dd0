"""Entry point of `python -m runcomfy_async.simulator`."""

from ._serve import main

raise SystemExit(main())
