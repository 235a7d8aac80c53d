"""The label-budget ablation: which annotated slides keep their pixel labels."""

from __future__ import annotations

import numpy as np


def pick_pixel_slides(labels: dict[str, int | None], n: int, seed: int) -> set[str]:
    """``n`` of the annotated slides (id -> slide label), nested as ``n`` shrinks at one seed
    (the 3 kept are among the 6 kept), with positive and negative slides in their proportion
    and at least one positive where there is one: a budget with no tumour outline teaches θ1
    nothing about tumour."""
    ids = sorted(labels)
    if n >= len(ids):
        return set(ids)
    rng = np.random.default_rng((seed, 13))
    pos = [ids[i] for i in rng.permutation(len(ids)) if labels[ids[i]] == 1]
    rest = [ids[i] for i in rng.permutation(len(ids)) if labels[ids[i]] != 1]
    n_pos = min(len(pos), max(1 if pos else 0, round(n * len(pos) / len(ids))))
    return set(pos[:n_pos]) | set(rest[: n - n_pos])
