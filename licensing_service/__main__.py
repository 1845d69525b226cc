"""``python -m licensing_service`` is the ``licensing-service`` command."""

import sys

from licensing_service.cli import main

sys.exit(main())
