"""``python -m caffelite train|test|time|device_query ...`` (the ``caffelite`` command)."""
import sys

from .cli import main

sys.exit(main())
