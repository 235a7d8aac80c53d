"""Storage: atomic writes, the one boundary where a user's file is read, typed JSON records
and a run's artefacts (checkpoints, weights, arrays). Imports only ``errors``."""
