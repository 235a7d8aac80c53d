"""``python -m mixsup``: the ``mixsup`` command."""

import sys

from mixsup.cli import entry

sys.exit(entry())
