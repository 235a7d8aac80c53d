"""Pictures: stitched heatmaps, the heatmap figure and plots without pyplot. May import
``runtime``, ``config``, ``storage`` and ``errors``."""
