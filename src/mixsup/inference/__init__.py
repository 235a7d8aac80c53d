"""Scoring with trained models, shared by training (E-step, MIL, θ2 validation) and
prediction: θ1's patch maps, top-K, θ2's slide score and the MIL aggregate. May import
``methods`` and every layer below it; never ``train``."""
