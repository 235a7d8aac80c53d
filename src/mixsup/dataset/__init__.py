"""A dataset's slides with their labels: every slide tiled (``tiles``) and ``mixsup
validate``; the one layer that knows both. May import ``slides``, ``labels`` and below."""
