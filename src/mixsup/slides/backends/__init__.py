"""One module per slide-reading library; each exposes ``open_backend(path, cache_bytes)``."""
