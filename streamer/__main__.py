"""``python -m streamer --config FILE``: run the server."""

from .cli import main

raise SystemExit(main())
