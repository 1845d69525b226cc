"""``python -m licensing_harness`` is the ``licensing-harness`` command."""

import sys

from licensing_harness.cli import main

sys.exit(main())
