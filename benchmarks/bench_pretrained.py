"""Does the packaged ImageNet EfficientNet-Lite0 help on pathology? A linear probe on real
PatchCamelyon patches (train -> valid): frozen encoder features, logistic regression, for
random initialisation vs the packaged weights under both candidate input normalisations, all in
the same run. Prints accuracy, AUC and the ratio of the pretrained AUC-above-chance to the
random one.

    python benchmarks/bench_pretrained.py [--pcam ../shared/data/pcam] [--n 1000]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.preprocessing import StandardScaler

from mixsup.models.encoders import HALF, IMAGENET_MEAN, IMAGENET_STD
from mixsup.models.factory import build_classifier
from mixsup.synth.pcam import load_banks


def sample(bank, n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    k = n // 2
    normal = bank.normal[rng.choice(len(bank.normal), k, replace=False)]
    tumor = bank.tumor[rng.choice(len(bank.tumor), k, replace=False)]
    return np.concatenate([normal, tumor]), np.repeat([0, 1], k)


@torch.inference_mode()
def features(model: torch.nn.Module, imgs: np.ndarray, mean, std) -> np.ndarray:
    model.input_norm.mean.copy_(torch.tensor(mean).view(1, 3, 1, 1))
    model.input_norm.std.copy_(torch.tensor(std).view(1, 3, 1, 1))
    out = []
    for a in range(0, len(imgs), 128):
        x = torch.from_numpy(imgs[a:a + 128]).permute(0, 3, 1, 2).float() / 255
        out.append(model.forward_head(model.forward_features(model.input_norm(x)),
                                      pre_logits=True))
    return torch.cat(out).numpy()


def probe(train_x, train_y, test_x, test_y) -> tuple[float, float]:
    scaler = StandardScaler().fit(train_x)
    clf = LogisticRegression(max_iter=2000, C=0.1).fit(scaler.transform(train_x), train_y)
    p = clf.predict_proba(scaler.transform(test_x))[:, 1]
    return float(((p >= 0.5) == test_y).mean()), float(roc_auc_score(test_y, p))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--pcam", default=str(Path(__file__).resolve().parents[2] / "shared" /
                                          "data" / "pcam"))
    ap.add_argument("--n", type=int, default=1000, help="patches per split (half tumour)")
    args = ap.parse_args()
    torch.manual_seed(0)
    banks = load_banks(args.pcam)
    rng = np.random.default_rng(0)
    tr_x, tr_y = sample(banks["train"], args.n, rng)
    va_x, va_y = sample(banks["valid"], args.n, rng)
    rows = []
    for name, pretrained, (mean, std) in [
            ("random init", False, (IMAGENET_MEAN, IMAGENET_STD)),
            ("packaged, ImageNet mean/std", True, (IMAGENET_MEAN, IMAGENET_STD)),
            ("packaged, (x-0.5)/0.5", True, (HALF, HALF))]:
        model = build_classifier("efficientnet_lite0", pretrained).eval()
        t0 = time.perf_counter()
        acc, auc = probe(features(model, tr_x, mean, std), tr_y,
                         features(model, va_x, mean, std), va_y)
        rows.append((name, acc, auc))
        print(f"{name:<30} accuracy {acc:.3f}  AUC {auc:.3f}  ({time.perf_counter() - t0:.0f} s)",
              flush=True)
    base = rows[0][2] - 0.5
    for name, _, auc in rows[1:]:
        print(f"{name}: AUC above chance {auc - 0.5:.3f} vs random init {base:.3f} "
              f"-> ratio {(auc - 0.5) / max(base, 1e-9):.2f}")


if __name__ == "__main__":
    main()
