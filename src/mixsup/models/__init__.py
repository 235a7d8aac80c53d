"""Networks only: no file or slide I/O here."""
