"""The small preset's freshly built MIL classifier on 64 random 128-px crops of 4 mosaic slides:
head weight spread and initial logits (eval mode). Run with PYTHONPATH pointing at the code to
check: at 2cc2609 it printed weight std 0.564, logits mean 12.29, std 7.23, max 41.10."""

import glob

import numpy as np
import tifffile
import torch

from mixsup.config import load_config
from mixsup.methods.registry import MODES

torch.manual_seed(0)
model = MODES["image"].build_theta1(load_config("small")).eval()
head = model.get_classifier()
print(f"head weight std {float(head.weight.std()):.3f}")
rng = np.random.default_rng(0)
crops = []
for path in sorted(glob.glob("/work/exp/pcm/slides/*.tiff"))[:4]:
    img = tifffile.TiffFile(path).pages[0].asarray()
    for _ in range(16):
        y, x = rng.integers(0, img.shape[0] - 128), rng.integers(0, img.shape[1] - 128)
        crops.append(img[y:y + 128, x:x + 128, :3])
x = torch.from_numpy(np.stack(crops)).permute(0, 3, 1, 2).float() / 255
with torch.no_grad():
    logits = model(x)[:, 0]
print(f"logits mean {logits.mean():.2f} std {logits.std():.2f} min {logits.min():.2f} "
      f"max {logits.max():.2f}")
