"""Pathology foundation models as timm builds: one row each, the name a config's ``encoder``
takes. mixsup never downloads their weights; the user puts the file where ``weights`` says.

Rows hold plain values only (YAML could hold the same): ``mlp_layer`` names one of
``encoders.MLP_LAYERS``, ``act_layer`` is resolved by timm itself. Token pooling is timm's
default (the class token): Virchow's own embedding concatenates it with the mean patch token,
which a one-logit classifier does not need.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class Recipe:
    timm_name: str
    kwargs: Mapping[str, object]
    input_size: int  # patches are resized to this side on the device
    weights: str  # where a user downloads the weights file
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD


_VIRCHOW = {"img_size": 224, "init_values": 1e-5, "mlp_ratio": 5.3375,
            "dynamic_img_size": True, "mlp_layer": "swiglu_packed", "act_layer": "silu"}
_H_OPTIMUS = {"img_size": 224, "init_values": 1e-5, "dynamic_img_size": False}
_H_OPTIMUS_MEAN = (0.707223, 0.578729, 0.703617)
_H_OPTIMUS_STD = (0.211883, 0.230117, 0.177517)

RECIPES: dict[str, Recipe] = {
    "uni": Recipe("vit_large_patch16_224",
                  {"img_size": 224, "patch_size": 16, "init_values": 1e-5,
                   "dynamic_img_size": True}, 224,
                  "MahmoodLab/UNI on Hugging Face: pytorch_model.bin"),
    "uni2-h": Recipe("vit_giant_patch14_224",
                     {"img_size": 224, "patch_size": 14, "depth": 24, "num_heads": 24,
                      "init_values": 1e-5, "embed_dim": 1536, "mlp_ratio": 2.66667 * 2,
                      "no_embed_class": True, "mlp_layer": "swiglu_packed",
                      "act_layer": "silu", "reg_tokens": 8, "dynamic_img_size": True}, 224,
                     "MahmoodLab/UNI2-h on Hugging Face: pytorch_model.bin"),
    "virchow": Recipe("vit_huge_patch14_224", _VIRCHOW, 224,
                      "paige-ai/Virchow on Hugging Face: pytorch_model.bin"),
    "virchow2": Recipe("vit_huge_patch14_224", {**_VIRCHOW, "reg_tokens": 4}, 224,
                       "paige-ai/Virchow2 on Hugging Face: pytorch_model.bin"),
    "h-optimus-0": Recipe("vit_giant_patch14_reg4_dinov2", _H_OPTIMUS, 224,
                          "bioptimus/H-optimus-0 on Hugging Face: pytorch_model.bin",
                          _H_OPTIMUS_MEAN, _H_OPTIMUS_STD),
    "h-optimus-1": Recipe("vit_giant_patch14_reg4_dinov2", _H_OPTIMUS, 224,
                          "bioptimus/H-optimus-1 on Hugging Face: pytorch_model.bin",
                          _H_OPTIMUS_MEAN, _H_OPTIMUS_STD),
    "prov-gigapath": Recipe("vit_giant_patch14_dinov2",
                            {"img_size": 224, "in_chans": 3, "patch_size": 16,
                             "embed_dim": 1536, "depth": 40, "num_heads": 24,
                             "init_values": 1e-5, "mlp_ratio": 5.33334}, 224,
                            "prov-gigapath/prov-gigapath on Hugging Face: pytorch_model.bin"),
}
