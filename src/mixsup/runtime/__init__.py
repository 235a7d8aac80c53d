"""Where and how code runs: devices and seeds (``device``), torchrun (``dist``), progress
output and parallel runs. May import ``config``, ``storage`` and ``errors``."""
