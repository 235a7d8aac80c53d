"""``mixsup experiment``: runs, folds, paired comparisons and the label-budget curve. May
import ``train``, ``predict`` and every layer below them."""
