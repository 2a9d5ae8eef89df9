#!/usr/bin/env python3
"""Peer timings for transformer Grad-CAM: pytorch-grad-cam 1.5.7 GradCAM per image on full-size ViT-B/16 and Swin-T
(torchvision architectures, random seeded weights: no weights can be downloaded here), plus the plain torch forward
and ONNX Runtime's forward, all on 2 threads; also the suite's shrunk vit_cls and swin (scripts/conformance.py).

Run by hand from the repository root with the versions of scripts/requirements-conformance.txt (section 1):
    /opt/ref/bin/python scripts/bench_peer_transformers.py [--out /tmp/big] [--reps 10]
It exports the full-size models (NOT committed: ~330 MB and ~110 MB) with their camscope cards, for timing
camscope on the same files:
    /tmp/big/vit_b_16.onnx + vit_b_16.toml, /tmp/big/swin_t.onnx + swin_t.toml
(torch.onnx.export(dynamo=False, opset_version=17), input "input" [N,3,224,224], output "logits", batch axis N;
ONNX Runtime's output is checked against torch's to 1e-4), and writes the figures to <out>/bench_peer.json.

Peer setup (pytorch-grad-cam's documented usage for these families):
- vit_b_16: target layer `encoder.layers[-1].ln_1`, reshape_transform drops the class token and reshapes the
  196 patch tokens to 14x14, then NCHW. torchvision zero-initialises the head; it is re-drawn N(0, 0.02) so the
  gradients are not all zero (timing is the same either way).
- swin_t: target layer `features[-1][-1].norm1` ([N,7,7,768], channels-last), reshape_transform permutes to NCHW.
- The CAM object is built once; each timed call is `cam(input_tensor=x, targets=[ClassifierOutputTarget(top1)])`
  with the library's default output (upsampled to 224x224 with cv2, as users run it). One warm-up call, then the
  median of --reps calls. torch.set_num_threads(2); ONNX Runtime intra_op_num_threads=2.
Input: samples/tabby/chelsea.png with each card's preprocessing (scripts/conformance.py preprocess).
The machine's 1-minute load average is recorded before and after each model: figures taken while other processes
compete for the 2 cores are not comparable (OpenMP threads spin; a 0.16 M-parameter ViT forward went from 5 ms to
190 ms under a load of 4).
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort
import torch
import torchvision
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))
import conformance as C  # noqa: E402  (run from the repository root: it checks)

from pytorch_grad_cam import GradCAM  # noqa: E402
from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget  # noqa: E402

VIT_PREP = C.Prep(interpolation="bilinear", crop_fraction=0.875, comment="torchvision vit_b_16: resize 256, crop 224, bilinear, ImageNet mean/std")
SWIN_PREP = C.Prep(interpolation="bicubic", crop_fraction=224 / 232, comment="torchvision swin_t: resize 232, crop 224, bicubic, ImageNet mean/std")


def big_vit() -> nn.Module:
    m = torchvision.models.vit_b_16(weights=None)
    nn.init.normal_(m.heads.head.weight, std=0.02)
    return m


def big_swin() -> nn.Module:
    return torchvision.models.swin_t(weights=None)


def median_time(fn, reps: int) -> float:
    fn()
    times = []
    for _ in range(reps):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def write_card(path: Path, title: str, prep: C.Prep) -> None:
    path.write_text(
        "\n".join(
            [
                f"# camscope model card for {path.with_suffix('.onnx').name} (random weights; scripts/bench_peer_transformers.py).",
                f"# {prep.comment}.",
                f'name = "{title}"',
                "",
                "[input]",
                'name = "input"',
                'layout = "NCHW"',
                "height = 224",
                "width = 224",
                'resize = "center-crop"',
                f"crop_fraction = {prep.crop_fraction!r}",
                f'interpolation = "{prep.interpolation}"',
                f"pixel_scale = {prep.pixel_scale!r}",
                f"mean = [{', '.join(repr(float(v)) for v in prep.mean)}]",
                f"std = [{', '.join(repr(float(v)) for v in prep.std)}]",
                "",
                "[output]",
                'name = "logits"',
                'kind = "logits"',
                "",
            ]
        )
    )


def export(model: nn.Module, x: np.ndarray, path: Path) -> None:
    torch.onnx.export(
        model,
        (torch.from_numpy(x),),
        str(path),
        dynamo=False,
        opset_version=17,
        input_names=["input"],
        output_names=["logits"],
        dynamic_axes={"input": {0: "N"}, "logits": {0: "N"}},
    )


def bench(name, model, layer, transform, prep, reps, export_to=None):
    x = C.preprocess(C.IMAGE, prep)
    xt = torch.from_numpy(x)
    with torch.no_grad():
        logits = model(xt)[0].numpy()
    top1 = int(np.argmax(logits))
    row = {"model": name, "params": sum(p.numel() for p in model.parameters()), "top1": top1,
           "loadavg_1min_before": os.getloadavg()[0]}
    if export_to is not None:
        t = time.perf_counter()
        export(model, x, export_to)
        row["export_s"] = round(time.perf_counter() - t, 1)
        row["onnx"] = str(export_to)
        row["onnx_mb"] = round(export_to.stat().st_size / 1e6, 1)
        onnx_path = export_to
    else:
        onnx_path = C.OUT / f"{name}.onnx"
    so = ort.SessionOptions()
    so.intra_op_num_threads = 2
    so.inter_op_num_threads = 1
    sess = ort.InferenceSession(str(onnx_path), so, providers=["CPUExecutionProvider"])
    got = sess.run(None, {"input": x})[0][0]
    row["ort_vs_torch"] = float(np.max(np.abs(got - logits)))
    assert row["ort_vs_torch"] <= 1e-4, row

    def fwd():
        with torch.no_grad():
            model(xt)

    row["torch_forward_ms"] = 1e3 * median_time(fwd, reps)
    row["ort_forward_ms"] = 1e3 * median_time(lambda: sess.run(None, {"input": x}), reps)
    cam = GradCAM(model=model, target_layers=[layer], reshape_transform=transform)
    targets = [ClassifierOutputTarget(top1)]
    row["gradcam_ms"] = 1e3 * median_time(lambda: cam(input_tensor=xt, targets=targets), reps)
    cam.activations_and_grads.release()
    row["reps"] = reps
    row["loadavg_1min_after"] = os.getloadavg()[0]
    print(
        f"{name:10s} params {row['params'] / 1e6:6.2f} M  torch fwd {row['torch_forward_ms']:8.1f} ms  "
        f"ORT fwd {row['ort_forward_ms']:8.1f} ms  pytorch-grad-cam GradCAM {row['gradcam_ms']:8.1f} ms/image  "
        f"(load {row['loadavg_1min_before']:.1f} -> {row['loadavg_1min_after']:.1f})",
        flush=True,
    )
    return row


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default="/tmp/big")
    ap.add_argument("--reps", type=int, default=10)
    ap.add_argument("--no-big", action="store_true", help="only the suite's shrunk models")
    args = ap.parse_args()
    torch.set_num_threads(2)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    rows = []

    specs = {s.name: s for s in C.SPECS}
    for name in ("vit_cls", "swin"):
        s = specs[name]
        C.seed_all()
        m = s.build().eval()
        rows.append(bench(name, m, C.resolve(m, s.layer_module), s.transform, s.prep, args.reps))

    if not args.no_big:
        C.seed_all()
        vit = big_vit().eval()
        write_card(out / "vit_b_16.toml", "torchvision vit_b_16 (random weights)", VIT_PREP)
        rows.append(
            bench("vit_b_16", vit, vit.encoder.layers[-1].ln_1, C.tokens_to_nchw(1, 14, 14), VIT_PREP, args.reps,
                  out / "vit_b_16.onnx")
        )
        del vit
        C.seed_all()
        swin = big_swin().eval()
        write_card(out / "swin_t.toml", "torchvision swin_t (random weights)", SWIN_PREP)
        rows.append(
            bench("swin_t", swin, swin.features[-1][-1].norm1, C.nhwc_to_nchw, SWIN_PREP, args.reps,
                  out / "swin_t.onnx")
        )
    meta = {
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
        "onnxruntime": ort.__version__,
        "threads": 2,
        "cpu": next((ln.split(":", 1)[1].strip() for ln in open("/proc/cpuinfo") if ln.startswith("model name")), "?"),
    }
    (out / "bench_peer.json").write_text(json.dumps({"meta": meta, "rows": rows}, indent=1))
    print(f"written {out / 'bench_peer.json'}")


if __name__ == "__main__":
    main()
