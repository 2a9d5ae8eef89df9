#!/usr/bin/env python3
"""Conformance suite generator: small random-weight classifiers of many families, exported to ONNX, with reference
Grad-CAM maps from an independent implementation, for camscope's Rust tests (tests/data/conformance/index.toml).

Kept in the repository, run by hand (not by CI), from the repository root, with the exact versions of
scripts/requirements-conformance.txt (torch 2.15.0, torchvision 0.29.2, timm 1.0.31, grad-cam 1.5.7, onnx 1.23.2,
onnxruntime 1.32.0, numpy 2.4.6, pillow 13.0.0); about 3.5 minutes on 2 cores:
    /opt/ref/bin/python scripts/conformance.py            # all PyTorch models
    /opt/ref/bin/python scripts/conformance.py vit_cls    # only some (the others' index entries are kept)
The Keras models come from scripts/conformance_keras.py (its own TensorFlow 2.15 venv); both scripts rewrite only
their own [[model]] tables of the shared index.toml (field `generator`).

No weights are downloaded: every model is built with random weights from a fixed seed (torch, numpy and random are
seeded before each model is built). Widths and depths are cut down so every .onnx stays under ~2 MB. Models with
BatchNorm get realistic running statistics first: momentum 1 and one training-mode forward of the 9 photos in
samples/ (preprocessed with the model's card), then eval(); with the initial statistics (mean 0, variance 1) a
random deep CNN's logits are all ~0 and the maps are noise.

Export: torch.onnx.export(model, x, dynamo=False, opset_version=17), input "input" [N,3,H,W], output "logits" (or
"probabilities"/"scores"/"log_probabilities" when the graph ends in an activation), dynamic batch axis "N" on both.
ONNX Runtime's output must equal torch's to 1e-4 on the reference input and on a batch of 2.

Per model, under tests/data/conformance/:
- <name>.onnx, <name>.toml: the model and its camscope card ([input] NCHW, crop/resize/interpolation, pixel_scale,
  mean, std; [output] name and kind).
- <name>_input.npy [1,3,H,W] float32: samples/tabby/chelsea.png preprocessed exactly as the card says (centre crop
  of the largest square, times crop_fraction, rounded half away from zero, offsets floored, as camscope's
  crop_box; Pillow resize with the card's filter; (x * pixel_scale - mean) / std in float32). Both torch and ONNX
  Runtime are fed this tensor.
- <name>_<method>_<class>.npy [h,w] float32: pytorch-grad-cam 1.5.7's map at FEATURE resolution (the grid of the
  reference layer; `get_target_width_height` returns (w, h), so the library's cv2.resize is a same-size copy).
  Methods: gradcam (top-1 and top-2 class), hirescam, gradcam++ and eigencam (top-1). The library's output is
  normalised as it does it: cam = maximum(cam, 0); per layer x = x - min(x); x = x / (1e-7 + max(x)); then again
  in aggregate_multi_layers (maximum(., 0), mean over the one layer, the same min/max scaling): two passes.
  EigenCAM ignores the class and its sign is arbitrary (SVD): <name>_eigencam_projection.npy is the library's raw
  first-component projection (get_2d_projection, before ReLU) to pin the sign.
- <name>_gradcam_<class>_raw.npy [h,w]: Grad-CAM computed by hand from torch autograd on the same layer:
  relu(sum_c mean_hw(dScore/dA)_c * A_c), not normalised. The script asserts that the library's double
  normalisation applied to it equals the library's map (1e-5).
Targets: ClassifierOutputTarget(class) on the pre-activation logit: the models with Sigmoid / LogSoftmax in the
graph are run by the peer with that last activation switched off (for the binary single-logit models class 0 is
the positive class). The log-softmax model also has gradcam maps on the log-probability itself (target
"log-probability", the peer run on the full graph), and the binary logit model one on the negated logit (target
"negated-logit", BinaryClassifierOutputTarget(0), i.e. the negative class).

Target layers are those pytorch-grad-cam's README documents per family: ViT `blocks[-1].norm1` with a
reshape_transform that drops the prefix tokens (class, distillation, registers) and reshapes the patch tokens to
the grid, then to NCHW; torchvision ViT `encoder.layers[-1].ln_1` likewise; Swin `features[-1][-1].norm1`
(torchvision) / `layers[-1].blocks[-1].norm1` (timm), whose [N,H,W,C] output is permuted to NCHW; CNNs the last
feature block (resnet `layer4[-1]`, densenet `features[-1]`, mobilenet `features[-1]`, convnext `stages[-1]`, ...).

The ONNX tensor of the reference layer: ONNX Runtime is run with every node output added as a graph output and each
is compared with the torch forward hook's value (same shape, so the layout is checked) to 1e-4; of the tensors
that match, the last one produced inside the module's export scope (e.g. "/blocks/blocks.1/norm1/..." for
blocks[-1].norm1) is recorded, the others as `layer_aliases` (e.g. a zero Pad after Swin's norm1).

index.toml, one [[model]] table per model:
  name, generator, source, framework, opset, head ("softmax": logits out; "probabilities": ends in Softmax;
  "sigmoid": ends in Sigmoid; "binary": one logit [N,1], no activation; "logsoftmax": ends in LogSoftmax),
  classes, size_bytes, input_shape, layer (ONNX tensor), layer_node, layer_op, layer_module (what the peer
  targeted), layout (of that ONNX tensor: "NCHW", "NHWC" or "tokens" [N,T,C]), extra_tokens (token positions
  dropped before the reshape, empty for none), grid [h, w], channels, top1, top2 (argmax of the pre-activation
  logits), logits (pre-activation row), outputs (the graph's output row, what ONNX Runtime returns), path_ops (op
  types on the path from the layer tensor to the graph output, in graph order), layer_aliases (other tensors with
  the same value), note; and one [[model.map]] per map: method, class, target, file, raw_file (gradcam),
  projection_file (eigencam), normalisation, reference. A model that failed to export has only name, generator,
  source and export_error; one left out on purpose has `skipped` instead.
"""
from __future__ import annotations

import math
import random
import sys
import time
import tomllib
import traceback
import types
from dataclasses import dataclass, field
from importlib.metadata import version
from pathlib import Path
from typing import Callable

import numpy as np
import onnx
import onnxruntime as ort
import timm
import torch
import torch.nn.functional as F
import torchvision
from PIL import Image
from torch import nn

from pytorch_grad_cam import EigenCAM, GradCAM, GradCAMPlusPlus, HiResCAM
from pytorch_grad_cam.utils.model_targets import BinaryClassifierOutputTarget, ClassifierOutputTarget
from pytorch_grad_cam.utils.svd_on_activations import get_2d_projection

ROOT = Path.cwd()
if not (ROOT / "samples").is_dir() or not (ROOT / "Cargo.toml").is_file():
    sys.exit("run from the repository root")
OUT = ROOT / "tests" / "data" / "conformance"
IMAGE = ROOT / "samples" / "tabby" / "chelsea.png"
GENERATOR = "conformance.py"
SEED = 0
OPSET = 17
TOL = 1e-4

IMAGENET = dict(pixel_scale=1 / 255, mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225))
INCEPTION = dict(pixel_scale=1 / 255, mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5))
METHODS = {"gradcam": GradCAM, "hirescam": HiResCAM, "gradcam++": GradCAMPlusPlus, "eigencam": EigenCAM}


def seed_all(seed: int = SEED) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


# ---------------------------------------------------------------------------------------------- preprocessing


@dataclass
class Prep:
    size: int = 224
    crop_fraction: float = 1.0
    interpolation: str = "bicubic"
    pixel_scale: float = 1 / 255
    mean: tuple = IMAGENET["mean"]
    std: tuple = IMAGENET["std"]
    comment: str = "ImageNet mean/std on the 0..1 scale"


FILTERS = {"bilinear": Image.BILINEAR, "bicubic": Image.BICUBIC, "nearest": Image.NEAREST, "lanczos": Image.LANCZOS}


def round_half_away(v: float) -> int:
    return int(math.floor(v + 0.5))


def preprocess(path: Path, p: Prep) -> np.ndarray:
    """camscope's card preprocessing (src/imaging/mod.rs crop_box/model_view/normalize) in NumPy: [1,3,H,W]."""
    img = Image.open(path).convert("RGB")
    w, h = img.size
    target = p.size / p.size
    if w / h > target:
        cw, ch = max(1, round_half_away(h * target)), h
    else:
        cw, ch = w, max(1, round_half_away(w / target))
    if p.crop_fraction < 1.0:
        cw = max(1, round_half_away(cw * p.crop_fraction))
        ch = max(1, round_half_away(ch * p.crop_fraction))
    left, top = (w - cw) // 2, (h - ch) // 2
    img = img.crop((left, top, left + cw, top + ch)).resize((p.size, p.size), FILTERS[p.interpolation])
    x = np.asarray(img, dtype=np.float32)
    if p.pixel_scale != 1.0:
        x = x * np.float32(p.pixel_scale)
    x = (x - np.asarray(p.mean, dtype=np.float32)) / np.asarray(p.std, dtype=np.float32)
    return np.ascontiguousarray(x.transpose(2, 0, 1)[None])


def sample_photos() -> list[Path]:
    return sorted(q for q in (ROOT / "samples").rglob("*") if q.suffix.lower() in (".png", ".jpg", ".jpeg"))


# ---------------------------------------------------------------------------------------------- models


class SmallCNN(nn.Module):
    """conv-bn-relu x5 (stride 2 each): 224 -> 7x7x64; `features[-1]` is the last ReLU."""

    def __init__(self, outputs: int, flatten_head: bool = False):
        super().__init__()
        chans = [3, 8, 16, 32, 64, 64]
        blocks = []
        for cin, cout in zip(chans[:-1], chans[1:]):
            blocks += [nn.Conv2d(cin, cout, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU()]
        self.features = nn.Sequential(*blocks)
        self.flatten_head = flatten_head
        if flatten_head:
            self.pool = nn.MaxPool2d(2, ceil_mode=True)  # 7x7 -> 4x4, then Flatten + Linear (no global pool)
            self.fc = nn.Linear(64 * 4 * 4, outputs)
        else:
            self.pool = nn.AdaptiveAvgPool2d(1)
            self.fc = nn.Linear(64, outputs)

    def forward(self, x):
        return self.fc(torch.flatten(self.pool(self.features(x)), 1))


def densenet(classes: int) -> nn.Module:
    """torchvision DenseNet with the final ReLU made out-of-place: its forward's F.relu(..., inplace=True) would
    overwrite the activation pytorch-grad-cam stores from `features[-1]` (norm5; .cpu().detach() shares storage
    on CPU), so the peer's A would silently be relu(norm5) while the ONNX tensor is norm5's output."""
    m = torchvision.models.DenseNet(growth_rate=8, block_config=(2, 2, 2, 2), num_init_features=16, num_classes=classes)

    def forward(self, x):
        out = F.relu(self.features(x), inplace=False)
        out = F.adaptive_avg_pool2d(out, (1, 1))
        return self.classifier(torch.flatten(out, 1))

    m.forward = types.MethodType(forward, m)
    return m


def maxvit() -> nn.Module:
    from dataclasses import replace

    from timm.models import maxxvit

    base = maxxvit.model_cfgs["maxvit_tiny_tf"]
    cfg = replace(
        base,
        embed_dim=(16, 32, 48, 64),
        depths=(1, 1, 1, 1),
        stem_width=16,
        transformer_cfg=replace(base.transformer_cfg, dim_head=8),
    )
    return maxxvit.MaxxVit(cfg, img_size=224, num_classes=10)


def tv_vit() -> nn.Module:
    """torchvision ViT zero-initialises its head (all logits 0, every Grad-CAM map 0): re-draw it N(0, 0.05)."""
    m = torchvision.models.vision_transformer.VisionTransformer(
        image_size=224, patch_size=16, num_layers=2, num_heads=2, hidden_dim=64, mlp_dim=128, num_classes=10
    )
    nn.init.normal_(m.heads.head.weight, std=0.05)
    return m


def eva(exportable: bool) -> nn.Module:
    """timm Eva; with exportable=True built under timm.layers.set_exportable(True) (timm's own switch for ONNX
    export: attention without F.scaled_dot_product_attention)."""
    from timm.layers import config as timm_config
    from timm.models.eva import Eva

    saved = timm_config.is_exportable()
    timm_config.set_exportable(exportable)
    try:
        return Eva(
            img_size=224,
            patch_size=16,
            embed_dim=64,
            depth=2,
            num_heads=2,
            use_rot_pos_emb=True,
            global_pool="avg",
            head_init_scale=1.0,
            num_classes=10,
        )
    finally:
        timm_config.set_exportable(saved)


def vit(**kw) -> nn.Module:
    from timm.models.vision_transformer import VisionTransformer

    args = dict(img_size=224, patch_size=16, embed_dim=64, depth=2, num_heads=2, num_classes=10)
    args.update(kw)
    return VisionTransformer(**args)


def tokens_to_nchw(prefix: int, h: int, w: int):
    def transform(t):
        t = t[:, prefix:, :]
        return t.reshape(t.size(0), h, w, t.size(2)).permute(0, 3, 1, 2)

    transform.doc = f"drop {prefix} prefix token(s), reshape to {h}x{w}, permute to NCHW"
    return transform


def nhwc_to_nchw(t):
    return t.permute(0, 3, 1, 2)


nhwc_to_nchw.doc = "permute NHWC to NCHW"


@dataclass
class Spec:
    name: str
    source: str
    build: Callable[[], nn.Module]
    layer_module: str  # attribute path of the target module, e.g. "blocks[-1].norm1"
    head: str = "softmax"  # softmax | sigmoid | binary | logsoftmax | probabilities
    prep: Prep = field(default_factory=Prep)
    transform: Callable | None = None
    extra_tokens: list = field(default_factory=list)
    transformer: bool = False
    note: str = ""
    skipped: str = ""


def S(*a, **k) -> Spec:
    return Spec(*a, **k)


TIMM_VIT_PREP = Prep(interpolation="bicubic", crop_fraction=0.9, **INCEPTION, comment="timm ViT: mean = std = 0.5")
TV_PREP = Prep(interpolation="bilinear", crop_fraction=0.875, comment="torchvision: resize-256/crop-224 ratio, bilinear")

SPECS: list[Spec] = [
    S(
        "vit_cls",
        "timm 1.0.31 VisionTransformer(patch_size=16, embed_dim=64, depth=2, num_heads=2, class_token=True, "
        "global_pool='token', num_classes=10)",
        lambda: vit(global_pool="token"),
        "blocks[-1].norm1",
        prep=TIMM_VIT_PREP,
        transform=tokens_to_nchw(1, 14, 14),
        extra_tokens=[0],
        transformer=True,
    ),
    S(
        "deit_distilled",
        "timm 1.0.31 VisionTransformerDistilled(patch_size=16, embed_dim=64, depth=2, num_heads=2, num_classes=10); "
        "eval output (head(cls) + head_dist(dist)) / 2",
        lambda: __import__("timm.models.deit", fromlist=["VisionTransformerDistilled"]).VisionTransformerDistilled(
            img_size=224, patch_size=16, embed_dim=64, depth=2, num_heads=2, num_classes=10
        ),
        "blocks[-1].norm1",
        prep=Prep(interpolation="bicubic", crop_fraction=0.875, comment="DeiT: ImageNet mean/std"),
        transform=tokens_to_nchw(2, 14, 14),
        extra_tokens=[0, 1],
        transformer=True,
        note="two prefix tokens (class, distillation); the output averages the two heads.",
    ),
    S(
        "vit_reg",
        "timm 1.0.31 VisionTransformer(patch_size=16, embed_dim=64, depth=2, num_heads=2, class_token=True, "
        "reg_tokens=4, global_pool='token', num_classes=10) (DINOv2-with-registers token layout)",
        lambda: vit(reg_tokens=4, global_pool="token"),
        "blocks[-1].norm1",
        prep=TIMM_VIT_PREP,
        transform=tokens_to_nchw(5, 14, 14),
        extra_tokens=[0, 1, 2, 3, 4],
        transformer=True,
        note="token order: class, 4 registers, 196 patches.",
    ),
    S(
        "vit_gap",
        "timm 1.0.31 VisionTransformer(patch_size=16, embed_dim=64, depth=2, num_heads=2, class_token=False, "
        "global_pool='avg', num_classes=10)",
        lambda: vit(class_token=False, global_pool="avg"),
        "blocks[-1].norm1",
        prep=TIMM_VIT_PREP,
        transform=tokens_to_nchw(0, 14, 14),
        extra_tokens=[],
        transformer=True,
        note="no prefix tokens; head: mean over tokens, fc_norm, Linear.",
    ),
    S(
        "vit_dinov2",
        "timm 1.0.31 VisionTransformer(patch_size=14, embed_dim=64, depth=2, num_heads=2, init_values=0.1 "
        "(LayerScale), class_token=True, dynamic_img_size=False, global_pool='token', num_classes=10) "
        "(DINOv2-style: patch 14, layer scale)",
        lambda: vit(patch_size=14, init_values=0.1, dynamic_img_size=False, global_pool="token"),
        "blocks[-1].norm1",
        prep=Prep(interpolation="bicubic", crop_fraction=0.875, comment="DINOv2: ImageNet mean/std"),
        transform=tokens_to_nchw(1, 16, 16),
        extra_tokens=[0],
        transformer=True,
        note="patch 14 at 224: a 16x16 grid; LayerScale multiplies on the residual branches.",
    ),
    S(
        "eva",
        "timm 1.0.31 Eva(patch_size=16, embed_dim=64, depth=2, num_heads=2, use_rot_pos_emb=True, "
        "global_pool='avg', head_init_scale=1.0, num_classes=10) built under timm.layers.set_exportable(True) "
        "(EVA-02-style: rotary position embedding)",
        lambda: eva(True),
        "blocks[-1].norm1",
        prep=TIMM_VIT_PREP,
        transform=tokens_to_nchw(1, 14, 14),
        extra_tokens=[0],
        transformer=True,
        note="class token present but the head averages the patch tokens only; built with timm's exportable flag "
        "(the default fused-attention build fails to export: see eva_fused).",
    ),
    S(
        "eva_fused",
        "timm 1.0.31 Eva(...same as eva...) with timm's default fused attention (F.scaled_dot_product_attention)",
        lambda: eva(False),
        "blocks[-1].norm1",
        prep=TIMM_VIT_PREP,
        transform=tokens_to_nchw(1, 14, 14),
        extra_tokens=[0],
        transformer=True,
    ),
    S(
        "tv_vit",
        "torchvision 0.29.2 VisionTransformer(image_size=224, patch_size=16, num_layers=2, num_heads=2, "
        "hidden_dim=64, mlp_dim=128, num_classes=10) (vit_b_16 shrunk; nn.MultiheadAttention)",
        tv_vit,
        "encoder.layers[-1].ln_1",
        prep=TV_PREP,
        transform=tokens_to_nchw(1, 14, 14),
        extra_tokens=[0],
        transformer=True,
        note="torchvision's encoder uses nn.MultiheadAttention (the legacy exporter inlines it); torchvision "
        "zero-initialises the head, re-drawn N(0, 0.05) here.",
    ),
    S(
        "swin",
        "torchvision 0.29.2 SwinTransformer(patch_size=[4,4], embed_dim=24, depths=[2,2,2], num_heads=[2,2,4], "
        "window_size=[7,7], num_classes=10) (swin_t shrunk: 3 stages)",
        lambda: torchvision.models.swin_transformer.SwinTransformer(
            patch_size=[4, 4], embed_dim=24, depths=[2, 2, 2], num_heads=[2, 2, 4], window_size=[7, 7], num_classes=10
        ),
        "features[-1][-1].norm1",
        prep=Prep(interpolation="bicubic", crop_fraction=224 / 232, comment="swin_t: ImageNet mean/std"),
        transform=nhwc_to_nchw,
        transformer=True,
        note="channels-last feature maps [N,H,W,C]; the last block of each stage uses a shifted window (Roll).",
    ),
    S(
        "timm_swin",
        "timm 1.0.31 SwinTransformer(patch_size=4, window_size=7, embed_dim=24, depths=(2,2,2), num_heads=(2,2,4), "
        "num_classes=10)",
        lambda: __import__("timm.models.swin_transformer", fromlist=["SwinTransformer"]).SwinTransformer(
            img_size=224, patch_size=4, window_size=7, embed_dim=24, depths=(2, 2, 2), num_heads=(2, 2, 4), num_classes=10
        ),
        "layers[-1].blocks[-1].norm1",
        prep=Prep(interpolation="bicubic", crop_fraction=0.9, comment="timm swin: ImageNet mean/std"),
        transform=nhwc_to_nchw,
        transformer=True,
        note="channels-last [N,H,W,C] like torchvision's.",
    ),
    S(
        "maxvit",
        "timm 1.0.31 MaxxVit(maxvit_tiny_tf config with embed_dim=(16,32,48,64), depths=(1,1,1,1), "
        "stem_width=16, dim_head=8), num_classes=10",
        maxvit,
        "stages[-1]",
        prep=Prep(interpolation="bicubic", crop_fraction=0.95, **INCEPTION, comment="maxvit tf: mean = std = 0.5"),
        transformer=True,
        note="MBConv + block/grid attention, tanh-approximated GELU, Einsum relative position bias, a Linear-Tanh "
        "pre-logits head; the stage output is NCHW (a Transpose back from channels-last).",
    ),
    S(
        "resnet",
        "timm 1.0.31 ResNet(block=BasicBlock, layers=[1,1,1,1], channels=(16,32,64,128), num_classes=10)",
        lambda: timm.models.resnet.ResNet(
            block=timm.models.resnet.BasicBlock, layers=[1, 1, 1, 1], channels=(16, 32, 64, 128), num_classes=10
        ),
        "layer4[-1]",
        prep=Prep(interpolation="bicubic", crop_fraction=0.95, comment="timm resnet: ImageNet mean/std"),
    ),
    S(
        "mobilenet_v3_small",
        "torchvision 0.29.2 mobilenet_v3_small(width_mult=0.5, num_classes=10)",
        lambda: torchvision.models.mobilenet_v3_small(width_mult=0.5, num_classes=10),
        "features[-1]",
        prep=TV_PREP,
        note="Hardswish/Hardsigmoid; squeeze-excitation; a Linear-Hardswish-Linear classifier.",
    ),
    S(
        "efficientnet_b0",
        "timm 1.0.31 _gen_efficientnet('efficientnet_b0', channel_multiplier=0.25, depth_multiplier=0.5, "
        "num_classes=10)",
        lambda: timm.models.efficientnet._gen_efficientnet(
            "efficientnet_b0", channel_multiplier=0.25, depth_multiplier=0.5, pretrained=False, num_classes=10
        ),
        "bn2",
        prep=Prep(interpolation="bicubic", crop_fraction=0.875, comment="timm efficientnet: ImageNet mean/std"),
        note="bn2 is BatchNormAct2d (BN folded into conv_head by the exporter, then SiLU as Sigmoid*Mul).",
    ),
    S(
        "densenet",
        "torchvision 0.29.2 DenseNet(growth_rate=8, block_config=(2,2,2,2), num_init_features=16, num_classes=10)",
        lambda: densenet(10),
        "features[-1]",
        prep=TV_PREP,
        note="features[-1] is norm5 (BatchNormalization, before the functional ReLU); the reference forward's "
        "final ReLU is made out-of-place (see densenet() in the script) so the peer sees norm5's output.",
    ),
    S(
        "convnext",
        "timm 1.0.31 ConvNeXt(depths=(1,1,1,1), dims=(16,32,64,128), ls_init_value=0.5, num_classes=10)",
        lambda: timm.models.convnext.ConvNeXt(
            depths=(1, 1, 1, 1), dims=(16, 32, 64, 128), ls_init_value=0.5, num_classes=10
        ),
        "stages[-1]",
        prep=Prep(interpolation="bicubic", crop_fraction=0.875, comment="timm convnext: ImageNet mean/std"),
        note="LayerNorm2d, GELU (Erf), layer scale; head: pool, LayerNorm2d, Linear. Layer scale starts at 0.5, "
        "not timm's 1e-6, which leaves every block an identity to 1e-4 (the stage output would equal the "
        "downsample conv's).",
    ),
    S(
        "inception_v3",
        "torchvision 0.29.2 Inception3",
        None,
        "Mixed_7c",
        skipped="torchvision/timm Inception3 has no width option: 27M parameters, ~95 MB as ONNX (over the "
        "suite's 3 MB per file); not exported.",
    ),
    S(
        "multilabel_densenet",
        "torchvision 0.29.2 DenseNet(growth_rate=8, block_config=(2,2,2,2), num_init_features=16, num_classes=14) "
        "+ nn.Sigmoid() (chest X-ray style multi-label head)",
        lambda: densenet(14),
        "features[-1]",
        head="sigmoid",
        prep=TV_PREP,
        note="graph ends in Sigmoid; references target the logit before it.",
    ),
    S(
        "binary_logit",
        "SmallCNN (conv-bn-relu x5, GAP, Linear(64, 1)): one logit [N,1], no activation",
        lambda: SmallCNN(1),
        "features[-1]",
        head="binary",
        prep=Prep(comment="ImageNet mean/std"),
        note="class 0 = the positive class (ClassifierOutputTarget(0)); the negated-logit map is the negative class.",
    ),
    S(
        "binary_sigmoid",
        "SmallCNN (conv-bn-relu x5, GAP, Linear(64, 1)) + nn.Sigmoid(): [N,1] probability",
        lambda: SmallCNN(1),
        "features[-1]",
        head="sigmoid",
        prep=Prep(comment="ImageNet mean/std"),
        note="single sigmoid output; references target the logit before the Sigmoid.",
    ),
    S(
        "logsoftmax",
        "SmallCNN (conv-bn-relu x5, MaxPool 2 -> 4x4, Flatten, Linear(1024, 10)) + nn.LogSoftmax(dim=1)",
        lambda: SmallCNN(10, flatten_head=True),
        "features[-1]",
        head="logsoftmax",
        prep=Prep(comment="ImageNet mean/std"),
        note="no global pooling: MaxPool + Flatten + Linear after the layer; graph ends in LogSoftmax.",
    ),
]

HEAD_ACT = {"sigmoid": nn.Sigmoid, "logsoftmax": lambda: nn.LogSoftmax(dim=1), "probabilities": lambda: nn.Softmax(1)}
OUTPUT_NAME = {"softmax": "logits", "binary": "logits", "sigmoid": "scores", "logsoftmax": "log_probabilities",
               "probabilities": "probabilities"}
CARD_KIND = {"softmax": "logits", "binary": None, "sigmoid": "sigmoid", "logsoftmax": "logits",
             "probabilities": "probabilities"}


def attach_head(model: nn.Module, head: str):
    """Give the model its graph-final activation; returns a switch (True: with it, False: logits only). The
    model's own forward is wrapped (not the model), so ONNX scopes stay /features/..., not /core/features/...."""
    if head not in HEAD_ACT:
        return lambda on: None
    model.head_act = HEAD_ACT[head]()
    logits_forward = model.forward
    state = {"on": True}

    def forward(x):
        y = logits_forward(x)
        return model.head_act(y) if state["on"] else y

    model.forward = forward

    def switch(on: bool):
        state["on"] = on

    return switch


def resolve(model: nn.Module, path: str) -> nn.Module:
    obj = model
    for part in path.replace("]", "").replace("[", ".").split("."):
        obj = obj[int(part)] if part.lstrip("-").isdigit() else getattr(obj, part)
    return obj


def calibrate_batchnorm(model: nn.Module, prep: Prep) -> int:
    bns = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if not bns:
        return 0
    batch = torch.from_numpy(np.concatenate([preprocess(p, prep) for p in sample_photos()]))
    for bn in bns:
        bn.reset_running_stats()
        bn.momentum = 1.0
    model.train()
    with torch.no_grad():
        model(batch)
    for bn in bns:
        bn.momentum = 0.1
    model.eval()
    return len(bns)


# ---------------------------------------------------------------------------------------------- ONNX helpers


def all_outputs_session(model_proto: onnx.ModelProto) -> ort.InferenceSession:
    m = onnx.ModelProto()
    m.CopyFrom(model_proto)
    existing = {o.name for o in m.graph.output}
    for node in m.graph.node:
        for o in node.output:
            if o and o not in existing:
                m.graph.output.append(onnx.ValueInfoProto(name=o))
                existing.add(o)
    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    return ort.InferenceSession(m.SerializeToString(), so, providers=["CPUExecutionProvider"])


def scope_of(module_path: str, model: nn.Module) -> str:
    """The legacy exporter's scope for a module: named_modules' dotted name, e.g. blocks.1.norm1 ->
    "/blocks/blocks.1/norm1/" (torch 2.x nests the full dotted prefixes)."""
    target = resolve(model, module_path)
    for name, mod in model.named_modules():
        if mod is target:
            return name
    raise KeyError(module_path)


def find_layer_tensor(model_proto, x, value, dotted):
    sess = all_outputs_session(model_proto)
    names = [o.name for o in sess.get_outputs()]
    values = sess.run(None, {sess.get_inputs()[0].name: x})
    producer = {o: n for n in model_proto.graph.node for o in n.output}
    hits = []
    bound = TOL * max(1.0, float(np.max(np.abs(value))))
    for name, v in zip(names, values):
        if name not in producer or not isinstance(v, np.ndarray) or v.dtype != np.float32 or v.shape != value.shape:
            continue
        d = float(np.max(np.abs(v - value)))
        if d <= bound:
            hits.append((name, producer[name], d))
    if not hits:
        raise RuntimeError(f"no ONNX tensor equals the hooked output of {dotted} {tuple(value.shape)}")
    # Legacy exporter scopes: a child's scope is its attribute name, a numbered child's is "<parent>.<index>":
    # blocks.1.norm1 -> "/blocks/blocks.1/norm1/LayerNormalization" (a ModuleList called in a loop may leave
    # its level out: "/blocks.1/norm1/..."). A node is inside the module if the last two components of the
    # module's scope appear in a row in the node's scope.
    comps = []
    for part in dotted.split("."):
        comps.append(f"{comps[-1]}.{part}" if part.isdigit() and comps else part)
    want = comps[-2:]

    def inside(node):
        scope = node.name.split("/")[1:-1]
        return any(scope[i : i + len(want)] == want for i in range(len(scope)))

    scoped = [h for h in hits if inside(h[1])]
    chosen = (scoped or hits)[-1]
    return chosen, hits


def path_ops(model_proto, tensor):
    nodes = list(model_proto.graph.node)
    downstream = {tensor}
    after = []
    for n in nodes:
        if any(i in downstream for i in n.input):
            after.append(n)
            downstream.update(o for o in n.output if o)
    needed = {o.name for o in model_proto.graph.output}
    on_path = []
    for n in reversed(after):
        if any(o in needed for o in n.output):
            on_path.append(n)
            needed.update(n.input)
    seen = []
    for n in reversed(on_path):
        if n.op_type not in seen:
            seen.append(n.op_type)
    return seen


# ---------------------------------------------------------------------------------------------- references


def lib_normalise(cam: np.ndarray) -> np.ndarray:
    """pytorch-grad-cam 1.5.7's normalisation of a single-layer map: scale_cam_image twice (see module doc)."""
    x = np.maximum(cam, 0)
    for _ in range(2):
        x = np.maximum(x, 0)
        x = x - np.min(x)
        x = x / (1e-7 + np.max(x))
    return np.float32(x)


def hooked_forward(model, layer, x):
    """Forward with the layer's output captured (cloned) and its gradient retained."""
    store = {}

    def hook(_m, _i, out):
        if out.requires_grad:
            out.retain_grad()
        store["out"] = out

    h = layer.register_forward_hook(hook)
    try:
        y = model(x)
    finally:
        h.remove()
    return y, store["out"]


def hand_gradcam(model, layer, transform, x, score_fn):
    """relu(sum_c mean_hw(dScore/dA) * A) from torch autograd, at feature resolution."""
    model.zero_grad()
    xt = torch.from_numpy(x)
    y, out = hooked_forward(model, layer, xt)
    score_fn(y).backward()
    a, g = out.detach(), out.grad.detach()
    if transform is not None:
        a, g = transform(a), transform(g)
    a, g = a[0].numpy().astype(np.float64), g[0].numpy().astype(np.float64)
    w = g.mean(axis=(1, 2))
    return np.float32(np.maximum((w[:, None, None] * a).sum(0), 0))


def peer_map(method, model, layer, transform, x, target, grid):
    cam = METHODS[method](model=model, target_layers=[layer], reshape_transform=transform)
    cam.get_target_width_height = lambda _t: (grid[1], grid[0])
    try:
        out = cam(input_tensor=torch.from_numpy(x), targets=[target])[0]
    finally:
        cam.activations_and_grads.release()
    return np.float32(out)


def eigen_projection(model, layer, transform, x):
    with torch.no_grad():
        _, out = hooked_forward(model, layer, torch.from_numpy(x))
    a = out if transform is None else transform(out)
    return np.float32(get_2d_projection(a.numpy())[0])


# ---------------------------------------------------------------------------------------------- index


def toml_value(v):
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, np.integer)):
        return str(int(v))
    if isinstance(v, (float, np.floating)):
        f = float(v)
        if math.isnan(f):
            return "nan"
        if math.isinf(f):
            return "inf" if f > 0 else "-inf"
        return repr(f)
    if isinstance(v, str):
        return '"' + v.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(toml_value(x) for x in v) + "]"
    raise TypeError(type(v))


def write_index(entries, generator):
    """Replace this generator's [[model]] tables in index.toml, keeping the other generator's."""
    path = OUT / "index.toml"
    kept = []
    if path.is_file():
        kept = [m for m in tomllib.loads(path.read_text()).get("model", []) if m.get("generator") != generator]
    models = kept + entries
    order = {"conformance.py": 0, "conformance_keras.py": 1}
    models.sort(key=lambda m: order.get(m.get("generator"), 2))
    out = [
        "# Conformance suite index: one [[model]] per exported classifier, read by the Rust tests.",
        "# Written by scripts/conformance.py (PyTorch models) and scripts/conformance_keras.py (Keras models);",
        "# the field meanings are documented at the top of scripts/conformance.py. Do not edit by hand.",
        "",
    ]
    for m in models:
        out.append("[[model]]")
        for k, v in m.items():
            if k != "map":
                out.append(f"{k} = {toml_value(v)}")
        for mp in m.get("map", []):
            out.append("[[model.map]]")
            for k, v in mp.items():
                out.append(f"{k} = {toml_value(v)}")
        out.append("")
    path.write_text("\n".join(out))


def write_card(spec: Spec, out_name: str) -> None:
    p = spec.prep
    kind = CARD_KIND[spec.head]
    lines = [
        f"# camscope model card for {spec.name}.onnx (conformance suite; written by scripts/{GENERATOR}).",
        f"# Preprocessing: {p.comment}; crop_fraction {p.crop_fraction:.4g}, {p.interpolation}, RGB, NCHW.",
        f'name = "{spec.name} (random weights)"',
        "",
        "[input]",
        'name = "input"',
        'layout = "NCHW"',
        f"height = {p.size}",
        f"width = {p.size}",
        'resize = "center-crop"',
        f"crop_fraction = {float(p.crop_fraction)!r}",
        f'interpolation = "{p.interpolation}"',
        f"pixel_scale = {float(p.pixel_scale)!r}",
        f"mean = [{', '.join(repr(float(v)) for v in p.mean)}]",
        f"std = [{', '.join(repr(float(v)) for v in p.std)}]",
        "",
        "[output]",
        f'name = "{out_name}"',
    ]
    if kind is None:
        lines.append("# one logit [N,1] (no activation in the graph): kind left to camscope's default")
    else:
        lines.append(f'kind = "{kind}"')
    (OUT / f"{spec.name}.toml").write_text("\n".join(lines) + "\n")


# ---------------------------------------------------------------------------------------------- main


def run_spec(spec: Spec) -> dict:
    base = dict(name=spec.name, generator=GENERATOR, source=spec.source)
    if spec.skipped:
        return dict(base, skipped=spec.skipped)
    seed_all()
    model = spec.build()
    model.eval()
    n_bn = calibrate_batchnorm(model, spec.prep)
    switch = attach_head(model, spec.head)
    layer = resolve(model, spec.layer_module)
    dotted = scope_of(spec.layer_module, model)
    x = preprocess(IMAGE, spec.prep)
    xt = torch.from_numpy(x)

    switch(True)
    with torch.no_grad():
        outputs, hooked = hooked_forward(model, layer, xt)
        outputs, hooked = outputs[0].numpy(), hooked.clone().numpy()
        x2 = torch.from_numpy(np.concatenate([x, preprocess(sample_photos()[0], spec.prep)]))
        outputs2 = model(x2).numpy()
    switch(False)
    with torch.no_grad():
        logits = model(xt)[0].numpy()
    switch(True)

    out_name = OUTPUT_NAME[spec.head]
    onnx_path = OUT / f"{spec.name}.onnx"
    try:
        torch.onnx.export(
            model,
            (xt,),
            str(onnx_path),
            dynamo=False,
            opset_version=OPSET,
            input_names=["input"],
            output_names=[out_name],
            dynamic_axes={"input": {0: "N"}, out_name: {0: "N"}},
        )
        model_proto = onnx.load(str(onnx_path))
        onnx.checker.check_model(model_proto)
        sess = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
        got = sess.run(None, {"input": x})[0][0]
        got2 = sess.run(None, {"input": x2.numpy()})[0]
    except Exception as e:  # noqa: BLE001 - recorded in the index
        onnx_path.unlink(missing_ok=True)
        msg = "".join(traceback.format_exception_only(type(e), e)).strip().splitlines()
        print(f"{spec.name}: EXPORT FAILED: {msg[0]}")
        return dict(base, export_error=" | ".join(msg)[:600])
    d1, d2 = float(np.max(np.abs(got - outputs))), float(np.max(np.abs(got2 - outputs2)))
    assert d1 <= TOL and d2 <= TOL, f"{spec.name}: ONNX Runtime differs from torch by {d1} / {d2} (batch 2)"

    (tensor, node, tdiff), hits = find_layer_tensor(model_proto, x, hooked, dotted)
    if hooked.ndim == 3:
        layout = "tokens"
    elif spec.transform is nhwc_to_nchw:
        layout = "NHWC"
    else:
        layout = "NCHW"
    with torch.no_grad():
        a = torch.from_numpy(hooked)
        a = spec.transform(a) if spec.transform is not None else a
    channels, grid = int(a.shape[1]), [int(a.shape[2]), int(a.shape[3])]

    order = np.argsort(-logits)
    top1, top2 = int(order[0]), int(order[1]) if logits.shape[0] > 1 else None
    if top2 is not None:
        gap = float(logits[top1] - logits[top2])
        assert gap > 1e-4 * max(1.0, float(np.abs(logits).max())), f"{spec.name}: top-1/top-2 tie ({gap})"
        if logits.shape[0] > 2:
            gap = float(logits[top2] - logits[int(order[2])])
            assert gap > 1e-4 * max(1.0, float(np.abs(logits).max())), f"{spec.name}: top-2/top-3 tie ({gap})"

    for method in METHODS:  # maps of an earlier run (another top-2 class) must not linger
        for stale in OUT.glob(f"{spec.name}_{method}_*.npy"):
            stale.unlink()
    np.save(OUT / f"{spec.name}_input.npy", x)
    write_card(spec, out_name)

    # (method, class, target label, peer target, score function for the hand-computed map, peer with activation)
    jobs = []
    for cls in [c for c in (top1, top2) if c is not None]:
        jobs.append(("gradcam", cls, "logit", ClassifierOutputTarget(cls), (lambda c: lambda y: y[0, c])(cls), False))
    for method in ("hirescam", "gradcam++", "eigencam"):
        jobs.append((method, top1, "logit", ClassifierOutputTarget(top1), None, False))
    if spec.head == "logsoftmax":
        jobs.append(("gradcam", top1, "log-probability", ClassifierOutputTarget(top1), lambda y: y[0, top1], True))
    if spec.head == "binary":
        jobs.append(("gradcam", 0, "negated-logit", BinaryClassifierOutputTarget(0), lambda y: -y[0, 0], False))

    maps = []
    tdoc = getattr(spec.transform, "doc", "none")
    for method, cls, target_label, target, score_fn, with_act in jobs:
        switch(with_act)
        ref = peer_map(method, model, layer, spec.transform, x, target, grid)
        assert ref.shape == tuple(grid), (spec.name, method, ref.shape, grid)
        assert np.isfinite(ref).all() and ref.max() > 0.5, f"{spec.name} {method}: degenerate map"
        suffix = "" if target_label == "logit" else f"_{target_label}"
        f = f"{spec.name}_{method}_{cls}{suffix}.npy"
        np.save(OUT / f, ref)
        entry = {
            "method": method,
            "class": cls,
            "target": "none (class-independent)" if method == "eigencam" else target_label,
            "file": f,
        }
        if score_fn is not None:
            raw = hand_gradcam(model, layer, spec.transform, x, score_fn)
            mine = lib_normalise(raw)
            d = float(np.max(np.abs(mine - ref)))
            assert d <= 1e-5, f"{spec.name} {method} {cls}: hand-computed Grad-CAM differs from the peer by {d}"
            rf = f"{spec.name}_{method}_{cls}{suffix}_raw.npy"
            np.save(OUT / rf, raw)
            entry["raw_file"] = rf
        if method == "eigencam":
            pf = f"{spec.name}_eigencam_projection.npy"
            np.save(OUT / pf, eigen_projection(model, layer, spec.transform, x))
            entry["projection_file"] = pf
        entry["normalisation"] = "pytorch-grad-cam: relu, then (x - min) / (1e-7 + max) twice"
        peer_target = {"logit": f"ClassifierOutputTarget({cls})", "log-probability": f"ClassifierOutputTarget({cls}) "
                       "on the LogSoftmax output", "negated-logit": "BinaryClassifierOutputTarget(0)"}[target_label]
        entry["reference"] = (f"pytorch-grad-cam {version('grad-cam')} {METHODS[method].__name__}, {peer_target}, "
                              f"target layer {spec.layer_module}, reshape_transform: {tdoc}")
        maps.append(entry)
    switch(True)

    entry = dict(
        base,
        framework=f"torch {torch.__version__.split('+')[0]}, torchvision {torchvision.__version__.split('+')[0]}, "
        f"timm {timm.__version__}, legacy exporter (dynamo=False)",
        opset=OPSET,
        head=spec.head,
        classes=int(logits.shape[0]),
        size_bytes=onnx_path.stat().st_size,
        input_shape=[1, 3, spec.prep.size, spec.prep.size],
        layer=tensor,
        layer_node=node.name,
        layer_op=node.op_type,
        layer_module=spec.layer_module,
        layer_shape=list(hooked.shape),
        layout=layout,
        extra_tokens=spec.extra_tokens,
        grid=grid,
        channels=channels,
        top1=top1,
    )
    if top2 is not None:
        entry["top2"] = top2
    entry.update(
        logits=[float(v) for v in logits],
        outputs=[float(v) for v in outputs],
        path_ops=path_ops(model_proto, tensor),
        layer_max_abs_diff=tdiff,
        ort_max_abs_diff=max(d1, d2),
    )
    aliases = [h[0] for h in hits if h[0] != tensor]
    if aliases:
        entry["layer_aliases"] = aliases
    note = spec.note
    if n_bn:
        note = (note + " " if note else "") + f"BatchNorm statistics set from the samples/ photos ({n_bn} layers)."
    if note:
        entry["note"] = note
    entry["map"] = maps
    print(f"{spec.name}: {onnx_path.stat().st_size / 1e6:.2f} MB, {tensor} [{node.op_type}, {layout}, "
          f"{list(hooked.shape)}] grid {grid}, top1 {top1}, ort diff {max(d1, d2):.1e}, path {entry['path_ops']}")
    return entry


def main() -> None:
    torch.set_num_threads(2)
    OUT.mkdir(parents=True, exist_ok=True)
    print(f"torch {torch.__version__}, torchvision {torchvision.__version__}, timm {timm.__version__}, grad-cam "
          f"{version('grad-cam')}, onnx {onnx.__version__}, onnxruntime {ort.__version__}, numpy {np.__version__}, "
          f"pillow {version('pillow')}")
    only = set(sys.argv[1:])
    t0 = time.time()
    entries = [run_spec(s) for s in SPECS if not only or s.name in only]
    if only:
        path = OUT / "index.toml"
        old = tomllib.loads(path.read_text()).get("model", []) if path.is_file() else []
        done = {e["name"] for e in entries}
        names = [s.name for s in SPECS]
        entries += [m for m in old if m.get("generator") == GENERATOR and m["name"] not in done]
        entries.sort(key=lambda m: names.index(m["name"]) if m["name"] in names else len(names))
    write_index(entries, GENERATOR)
    total = sum(f.stat().st_size for f in OUT.glob("*.onnx"))
    print(f"done in {time.time() - t0:.0f} s; all .onnx together {total / 1e6:.1f} MB")


if __name__ == "__main__":
    main()
