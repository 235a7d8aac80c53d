"""The Camelyon17 workflow: node classes from heatmap morphology, patient pN stages, kappa.
May import ``train``, ``predict`` and every layer below them."""
