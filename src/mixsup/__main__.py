import sys

from mixsup.cli import entry

sys.exit(entry())
