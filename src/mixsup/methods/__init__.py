"""The training methods: a typed ``Mode`` per method (``segmenter``, ``topk_mil``, ``abmil``),
their table (``registry``) and the bundle a run exports. May import ``models`` and below; a
method's trainer and scorer, above this layer, are imported inside its ``Mode`` methods."""
