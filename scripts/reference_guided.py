#!/usr/bin/env python3
"""Reference arrays for Guided Grad-CAM (guided backpropagation) and for BatchNormalization's input gradient, from
independent implementations, for tests/guided_reference.rs (tests/data/guided/index.toml).

Kept in the repository, run by hand (not by CI), from the repository root, with the PyTorch environment of
scripts/requirements-conformance.txt (torch 2.15.0, grad-cam 1.5.7, onnx 1.23.2, onnxruntime 1.32.0, numpy 2.4.6,
pillow 13.0.0, opencv-python-headless 5.0.0.93); about 10 seconds:
    /opt/ref/bin/python scripts/reference_guided.py

Two small random-weight CNNs (fixed seed, no download), input [N, 3, 32, 32], exported with
torch.onnx.export(dynamo=False, opset_version=17), input "input", output "logits", dynamic batch "N"; ONNX Runtime
must give torch's logits to 1e-5:
- guided_relu: Conv-ReLU-MaxPool-Conv-ReLU-Conv(stride 2)-ReLU [16, 8, 8] - global average pool - Linear(5).
  ReLU only, so pytorch-grad-cam's own GuidedBackpropReLUModel (which swaps every torch.nn.ReLU) applies.
- guided_relu6_bn: Conv-ReLU-MaxPool-BN-ReLU6-Conv-ReLU-BN-ReLU6-Conv(stride 2)-ReLU6 [16, 8, 8] - pool -
  Linear(5). ReLU6 exports as Clip(0, 6); no BN follows a Conv directly (the exporter would fold it into the
  Conv), so both stay BatchNormalization nodes. Each has epsilon 1e-3 and running variances of the same order (the
  convolution before it is scaled so that the BN's input has a standard deviation of about 0.03; statistics from
  one training-mode pass over the input with momentum 1): a rule that drops epsilon changes the gradient by tens
  of per cent. BN scales in [1, 4] and shifts in [0, 2], and the last Conv scaled to a standard deviation of 4,
  push some ReLU6 inputs past 6, so Clip's upper bound matters.

The guided rule is camscope's documented one (README, src/cam/guided.rs): at every ReLU *and* every ReLU6-style
Clip the gradient passes only where the forward input is inside the open interval (x > 0 for ReLU, 0 < x < 6 for
ReLU6) *and* the incoming gradient is positive. Written here by hand as torch.autograd.Function's; for guided_relu
it is checked against GuidedBackpropReLUModel (the two must agree to 1e-6) and both are written.

Per model, under tests/data/guided/:
- <name>.onnx, <name>.toml (camscope card), <name>_input.npy [1, 3, 32, 32]: samples/tabby/chelsea.png, Pillow
  bilinear resize of the whole photo to 32x32, (x / 255 - mean) / std with the card's ImageNet mean and std.
- <name>_guided_<class>.npy [3, 32, 32]: the guided-backprop gradient of the class logit w.r.t. the input.
- <name>_guided_peer_<class>.npy [3, 32, 32] (guided_relu only): GuidedBackpropReLUModel(model)(x, class),
  transposed back from [H, W, 3].
- <name>_gradcam_<class>.npy [32, 32]: pytorch-grad-cam's GradCAM at input resolution (its default target size:
  scale_cam_image with cv2.resize, then aggregate_multi_layers' second normalisation), ClassifierOutputTarget.
- <name>_guided_gradcam_<class>.npy [3, 32, 32]: the Guided Grad-CAM image before deprocess_image, as the
  library's cam.py example forms it: gradcam[None] * guided.
- <name>_gradient_<class>.npy [3, 32, 32]: the plain (not guided) input gradient, torch autograd.
Classes: the top-1 and the top-2 logit.

The script also measures, and asserts, that each reference tells a wrong rule apart by far more than the Rust
tests' tolerance (relative to the largest value): the guided gradient against the plain gradient, against the
mask with the gradient's sign flipped (g < 0), and, for guided_relu6_bn, against guided backprop through ReLU
only (the library's behaviour, Clip left plain) and the plain gradient against one with epsilon = 0 in every BN.
"""
from __future__ import annotations

import copy
import random
from importlib.metadata import version
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import torch
from PIL import Image
from torch import nn

from pytorch_grad_cam import GradCAM
from pytorch_grad_cam.guided_backprop import GuidedBackpropReLUModel
from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

ROOT = Path.cwd()
if not (ROOT / "samples" / "tabby" / "chelsea.png").is_file():
    raise SystemExit("run from the repository root (samples/tabby/chelsea.png not found here)")
OUT = ROOT / "tests" / "data" / "guided"
SIZE = 32
MEAN = [0.485, 0.456, 0.406]
STD = [0.229, 0.224, 0.225]
SEED = 14
EPS = 1e-3
# The Rust tests' tolerance (relative): a wrong rule must move the result by at least 100 times this.
TOLERANCE = 1e-4


class GuidedClip(torch.autograd.Function):
    """clamp(x, lo, hi) whose backward passes g where lo < x < hi and g > 0 (hi = None: no upper bound)."""

    @staticmethod
    def forward(ctx, x, lo, hi, flip):
        ctx.save_for_backward(x)
        ctx.lo, ctx.hi, ctx.flip = lo, hi, flip
        return x.clamp(lo, hi) if hi is not None else x.clamp(min=lo)

    @staticmethod
    def backward(ctx, g):
        (x,) = ctx.saved_tensors
        inside = x > ctx.lo
        if ctx.hi is not None:
            inside &= x < ctx.hi
        sign = (g < 0) if ctx.flip else (g > 0)
        return g * (inside & sign).to(g.dtype), None, None, None


class Guided(nn.Module):
    def __init__(self, hi, flip=False):
        super().__init__()
        self.hi, self.flip = hi, flip

    def forward(self, x):
        return GuidedClip.apply(x, 0.0, self.hi, self.flip)


def swapped(model: nn.Module, relu: bool, relu6: bool, flip: bool = False) -> nn.Module:
    """A copy of `model` with its ReLU and/or ReLU6 modules replaced by the guided ones."""
    m = copy.deepcopy(model)

    def walk(mod):
        # Not named_children(): it yields a module shared by several slots once (GuidedBackpropReLUModel leaves
        # one ReLU instance in every slot it restores).
        for name, child in list(mod._modules.items()):
            if relu and type(child) is nn.ReLU:
                setattr(mod, name, Guided(None, flip))
            elif relu6 and type(child) is nn.ReLU6:
                setattr(mod, name, Guided(6.0, flip))
            else:
                walk(child)

    walk(m)
    return m.eval()


class Net(nn.Module):
    def __init__(self, with_bn: bool):
        super().__init__()
        if with_bn:
            # No BatchNormalization right after a Conv: the exporter would fold it into the Conv's weights.
            layers = [
                nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                nn.BatchNorm2d(8, eps=EPS, momentum=1.0), nn.ReLU6(),
                nn.Conv2d(8, 12, 3, padding=1), nn.ReLU(),
                nn.BatchNorm2d(12, eps=EPS, momentum=1.0), nn.ReLU6(),
                nn.Conv2d(12, 16, 3, padding=1, stride=2), nn.ReLU6(),
            ]
        else:
            layers = [
                nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                nn.Conv2d(8, 12, 3, padding=1), nn.ReLU(),
                nn.Conv2d(12, 16, 3, padding=1, stride=2), nn.ReLU(),
            ]
        self.features = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(16, 5)

    def forward(self, x):
        return self.fc(torch.flatten(self.pool(self.features(x)), 1))


def seed_all() -> None:
    random.seed(SEED)
    np.random.seed(SEED)
    torch.manual_seed(SEED)


def photo() -> np.ndarray:
    img = Image.open(ROOT / "samples" / "tabby" / "chelsea.png").convert("RGB").resize((SIZE, SIZE), Image.BILINEAR)
    x = np.asarray(img, dtype=np.float32) / np.float32(255.0)
    x = (x - np.float32(MEAN)) / np.float32(STD)
    return np.ascontiguousarray(x.transpose(2, 0, 1)[None]).astype(np.float32)


def calibrate(model: Net, x: torch.Tensor) -> None:
    """Scale the convolution before each BN so the BN's input has a standard deviation of ~0.03 (variance ~
    epsilon; ReLU and MaxPool are positively homogeneous, so scaling the Conv scales that input), the last one so
    its output has a standard deviation of 4 (some ReLU6 inputs beyond 6); then set the BN statistics."""
    layers = list(model.features)
    bns = [m for m in layers if isinstance(m, nn.BatchNorm2d)]
    convs = [m for m in layers if isinstance(m, nn.Conv2d)]
    feeding = [[c for c in convs if layers.index(c) < layers.index(bn)][-1] for bn in bns]
    with torch.no_grad():
        for bn in bns:
            bn.weight.uniform_(1.0, 4.0)
            bn.bias.uniform_(0.0, 2.0)
        for _ in range(3):
            seen = {}
            hooks = [bn.register_forward_hook(lambda m, i, o: seen.__setitem__(id(m), i[0])) for bn in bns]
            hooks.append(convs[-1].register_forward_hook(lambda m, i, o: seen.__setitem__("last", o)))
            model.train()
            model(x)
            for h in hooks:
                h.remove()
            for bn, conv in zip(bns, feeding):
                k = 0.03 / float(seen[id(bn)].std())
                conv.weight.mul_(k)
                conv.bias.mul_(k)
            k = 4.0 / float(seen["last"].std())
            convs[-1].weight.mul_(k)
            convs[-1].bias.mul_(k)
        model.train()
        model(x)  # momentum 1: the running statistics are this pass's
        model.eval()
        seen = []
        h = convs[-1].register_forward_hook(lambda m, i, o: seen.append(o))
        model(x)
        h.remove()
    for i, bn in enumerate(bns):
        v = bn.running_var
        print(f"  BN {i}: running variance {float(v.min()):.2e}..{float(v.max()):.2e}, epsilon {bn.eps:.0e}")
    o = seen[0]
    print(f"  last ReLU6 input: {float((o > 6).float().mean()):.1%} above 6, {float((o < 0).float().mean()):.1%} below 0")


def input_gradient(model: nn.Module, x: torch.Tensor, cls: int) -> np.ndarray:
    x = x.clone().requires_grad_(True)
    model(x)[0, cls].backward()
    return x.grad[0].numpy().astype(np.float32)


def rel(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a - b).max() / np.abs(b).max())


def export(model: nn.Module, x: torch.Tensor, name: str) -> str:
    path = OUT / f"{name}.onnx"
    torch.onnx.export(
        model, x, str(path), dynamo=False, opset_version=17, input_names=["input"], output_names=["logits"],
        dynamic_axes={"input": {0: "N"}, "logits": {0: "N"}},
    )
    m = onnx.load(str(path))
    onnx.checker.check_model(m)
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    for batch in (x, torch.cat([x, x.flip(-1)])):
        with torch.no_grad():
            want = model(batch).numpy()
        got = sess.run(["logits"], {"input": batch.numpy()})[0]
        assert np.abs(got - want).max() < 1e-5, (name, np.abs(got - want).max())
    # The Grad-CAM layer: the tensor the global average pool reads.
    pool = [n for n in m.graph.node if n.op_type in ("GlobalAveragePool", "ReduceMean")]
    assert len(pool) == 1, [n.op_type for n in m.graph.node]
    ops = [n.op_type for n in m.graph.node]
    print(f"  {name}.onnx: {path.stat().st_size} bytes, ops {ops}")
    return pool[0].input[0]


def write_card(name: str) -> None:
    (OUT / f"{name}.toml").write_text(
        f"# camscope model card for {name}.onnx (written by scripts/reference_guided.py).\n"
        f'name = "{name} (random weights)"\n\n'
        "[input]\n"
        'name = "input"\nlayout = "NCHW"\n'
        f"height = {SIZE}\nwidth = {SIZE}\n"
        'resize = "stretch"\ninterpolation = "bilinear"\n'
        "pixel_scale = 0.00392156862745098\n"
        f"mean = {MEAN}\nstd = {STD}\n\n"
        '[output]\nname = "logits"\nkind = "logits"\n'
    )


def save(rel_name: str, a: np.ndarray) -> str:
    a = np.ascontiguousarray(a, dtype=np.float32)
    assert np.isfinite(a).all(), rel_name
    np.save(OUT / rel_name, a)
    return rel_name


def main() -> None:
    torch.set_num_threads(2)
    OUT.mkdir(parents=True, exist_ok=True)
    versions = (
        f"torch {torch.__version__}, grad-cam {version('grad-cam')}, onnx {onnx.__version__}, "
        f"onnxruntime {ort.__version__}, numpy {np.__version__}"
    )
    print(versions)
    x_np = photo()
    x = torch.from_numpy(x_np)
    entries = []
    for name, with_bn in (("guided_relu", False), ("guided_relu6_bn", True)):
        print(name)
        seed_all()
        model = Net(with_bn)
        if with_bn:
            calibrate(model, x)
        model.eval()
        layer = export(model, x, name)
        write_card(name)
        save(f"{name}_input.npy", x_np)
        with torch.no_grad():
            logits = model(x)[0].numpy()
        top = [int(i) for i in np.argsort(-logits)[:2]]
        maps = []
        for cls in top:
            guided = input_gradient(swapped(model, relu=True, relu6=True), x, cls)
            plain = input_gradient(model, x, cls)
            flipped = input_gradient(swapped(model, relu=True, relu6=True, flip=True), x, cls)
            # What the tests must be able to see.
            checks = {"plain gradient": rel(plain, guided), "mask g < 0": rel(flipped, guided)}
            if with_bn:
                checks["ReLU only guided"] = rel(input_gradient(swapped(model, relu=True, relu6=False), x, cls), guided)
                no_eps = swapped(model, relu=False, relu6=False)
                for m in no_eps.modules():
                    if isinstance(m, nn.BatchNorm2d):
                        m.eps = 0.0
                checks["BN epsilon 0 (plain gradient)"] = rel(input_gradient(no_eps, x, cls), plain)
            print(f"  class {cls}: a wrong rule moves the result by (relative) " +
                  ", ".join(f"{k} {v:.2f}" for k, v in checks.items()))
            assert all(v > 100 * TOLERANCE for v in checks.values()), checks
            entry = {"class": cls, "guided": save(f"{name}_guided_{cls}.npy", guided),
                     "gradient": save(f"{name}_gradient_{cls}.npy", plain)}
            if not with_bn:
                # On a copy: the library swaps the ReLUs back as ONE shared module, on which a Grad-CAM hook
                # would fire three times.
                peer = GuidedBackpropReLUModel(copy.deepcopy(model), device="cpu")(x.clone(), target_category=cls)
                peer = np.ascontiguousarray(peer.transpose(2, 0, 1)).astype(np.float32)
                d = np.abs(peer - guided).max()
                print(f"  class {cls}: hand-written guided backprop vs GuidedBackpropReLUModel: {d:.1e}")
                assert d <= 1e-6 * np.abs(guided).max(), d
                entry["guided_peer"] = save(f"{name}_guided_peer_{cls}.npy", peer)
            target_layer = model.features[-1]
            assert sum(m is target_layer for m in model.modules()) == 1
            with GradCAM(model=model, target_layers=[target_layer]) as cam:
                gray = cam(input_tensor=x.clone(), targets=[ClassifierOutputTarget(cls)])[0]
            assert gray.shape == (SIZE, SIZE), gray.shape
            entry["gradcam"] = save(f"{name}_gradcam_{cls}.npy", gray)
            entry["guided_gradcam"] = save(f"{name}_guided_gradcam_{cls}.npy", gray[None] * guided)
            maps.append(entry)
        entries.append({"name": name, "layer": layer, "top": top, "logits": logits.tolist(), "maps": maps})

    lines = [
        "# Written by scripts/reference_guided.py; do not edit.",
        f"# {versions}. Paths are relative to this folder.",
        "",
    ]
    for e in entries:
        lines += ["[[model]]", f'name = "{e["name"]}"', f'layer = "{e["layer"]}"', f"top = {e['top']}",
                  "logits = [" + ", ".join(f"{v:.7g}" for v in e["logits"]) + "]", ""]
        for m in e["maps"]:
            lines.append("[[model.map]]")
            lines += [f"{k} = {v}" if isinstance(v, int) else f'{k} = "{v}"' for k, v in m.items()]
            lines.append("")
    (OUT / "index.toml").write_text("\n".join(lines))
    print(f"wrote {OUT / 'index.toml'}")


if __name__ == "__main__":
    main()
