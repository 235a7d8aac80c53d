"""``mixsup predict`` (``engine``) and the QuPath export of its folder. May import
``evaluate``, ``inference``, ``methods`` and below; never ``train``."""
