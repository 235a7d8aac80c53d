import sys

from mixsup.cli import main

sys.exit(main())
