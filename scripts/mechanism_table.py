"""Which half of the method moved θ1: per round, mixed minus pixel (same seed, same round 0)
on held-out slides, from `mixsup rounds RUN --split test` outputs saved as <mode>_seed<s>.txt.

    python scripts/mechanism_table.py FOLDER
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

COLUMNS = ("recall", "precision", "neg_fraction", "topk_auc")


def parse(path: Path) -> dict[int, dict[str, float]]:
    """round -> the columns above, from one `mixsup rounds` printout."""
    rows = {}
    for line in path.read_text().splitlines():
        parts = line.split()
        if len(parts) == 11 and parts[1].isdigit():
            rows[int(parts[1])] = {"recall": float(parts[3]), "precision": float(parts[4]),
                                   "neg_fraction": float(parts[6]), "topk_auc": float(parts[8])}
    return rows


def main(folder: Path) -> None:
    seeds = sorted({int(p.stem.rsplit("seed", 1)[1]) for p in folder.glob("mixed_seed*.txt")
                    if (folder / p.name.replace("mixed", "pixel")).is_file()})
    mixed = {s: parse(folder / f"mixed_seed{s}.txt") for s in seeds}
    pixel = {s: parse(folder / f"pixel_seed{s}.txt") for s in seeds}
    seeds = [s for s in seeds if mixed[s] and pixel[s]]  # a printout still being written: left out
    if not seeds:
        sys.exit(f"{folder}: no seed has both a mixed and a pixel printout with rounds")
    print(f"seeds {seeds}; mean over seeds, and mixed - pixel with its per-seed signs")
    print(f"{'round':>5} {'measure':<13} {'mixed':>8} {'pixel':>8} {'mixed-pixel':>12} "
          f"{'seeds mixed higher':>19}")
    for r in sorted(set.intersection(*(set(x[s]) for x in (mixed, pixel) for s in seeds))):
        for c in COLUMNS:
            m = np.array([mixed[s][r][c] for s in seeds])
            p = np.array([pixel[s][r][c] for s in seeds])
            print(f"{r:>5} {c:<13} {m.mean():>8.4f} {p.mean():>8.4f} {(m - p).mean():>+12.4f} "
                  f"{int((m > p).sum()):>12}/{len(seeds)}")


if __name__ == "__main__":
    main(Path(sys.argv[1]))
