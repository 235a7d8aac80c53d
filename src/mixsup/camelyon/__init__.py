"""The Camelyon17 workflow: node classes from heatmap morphology, patient pN stages, kappa."""
