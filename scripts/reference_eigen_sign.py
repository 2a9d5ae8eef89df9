#!/usr/bin/env python3
"""Eigen-CAM reference maps with camscope's stated sign convention, for every sample photo (tests/engine_peer.rs).

The sign of a principal component is arbitrary, and pytorch-grad-cam keeps whatever LAPACK returns; camscope
orients the projection so that its correlation with the total activation sum_c A_c over the positions is not
negative (README, src/cam/eigen.rs). So the peer's own map can only be compared where the two signs happen to
agree. This script applies the convention to the peer's projection, so the engine's Eigen-CAM output can be
compared with a reference on every photo, whatever sign LAPACK chose:

- A: the head feature map `/_swish_1/Clip_output_0` [1, 1280, 7, 7] of models/efficientnet_lite0.onnx, from ONNX
  Runtime (Python), on each photo preprocessed by models/export_efficientnet_lite0.py's `preprocess` (as
  scripts/reference_cams.py does).
- p = pytorch-grad-cam 1.5.7's get_2d_projection(A) (the library's EigenCAM projection, before its ReLU).
- p is negated where sum(p * sum_c A_c) < 0 (the convention), then normalised as the library does (ReLU,
  scale_cam_image twice, at feature resolution).

Writes tests/data/reference/eigen_oriented/<image>.npy [7, 7] float32 and index.toml there (image, file, and
whether LAPACK's sign already agreed; where it did, the map must equal the peer's committed EigenCAM map in
tests/data/reference/maps/, which this script asserts to 1e-4).

Run by hand (not by CI) from the repository root, with the PyTorch environment of scripts/requirements-conformance.txt
(grad-cam 1.5.7, onnx 1.23.2, onnxruntime 1.32.0, numpy 2.4.6, pillow 13.0.0, torch 2.15.0); a few seconds:
    /opt/ref/bin/python scripts/reference_eigen_sign.py
"""
from __future__ import annotations

import sys
import tomllib
from importlib.metadata import version
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort

ROOT = Path.cwd()
if not (ROOT / "models" / "export_efficientnet_lite0.py").is_file():
    sys.exit("run from the repository root (models/export_efficientnet_lite0.py not found here)")
sys.path.insert(0, str(ROOT / "models"))

from export_efficientnet_lite0 import preprocess  # noqa: E402
from pytorch_grad_cam.utils.image import scale_cam_image  # noqa: E402
from pytorch_grad_cam.utils.svd_on_activations import get_2d_projection  # noqa: E402

REF = ROOT / "tests" / "data" / "reference"
OUT = REF / "eigen_oriented"
HEAD_TENSOR = "/_swish_1/Clip_output_0"


def main() -> None:
    index = tomllib.loads((REF / "index.toml").read_text())
    m = onnx.load(str(ROOT / "models" / "efficientnet_lite0.onnx"))
    m.graph.output.append(onnx.helper.make_tensor_value_info(HEAD_TENSOR, onnx.TensorProto.FLOAT, None))
    sess = ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"])
    OUT.mkdir(parents=True, exist_ok=True)
    versions = f"grad-cam {version('grad-cam')}, onnxruntime {ort.__version__}, numpy {np.__version__}"
    lines = [
        "# Written by scripts/reference_eigen_sign.py; do not edit.",
        f"# {versions}. Eigen-CAM maps [7, 7] with camscope's sign convention (see the script).",
        "",
    ]
    flipped = 0
    for image in index["image"]:
        a = sess.run([HEAD_TENSOR], {"input": preprocess(ROOT / image["path"])})[0]
        p = get_2d_projection(a)[0]
        total = a[0].sum(axis=0)
        agrees = float((p.astype(np.float64) * total).sum()) >= 0.0
        oriented = p if agrees else -p
        cam = scale_cam_image(scale_cam_image(np.maximum(oriented, 0)[None], (7, 7)))[0].astype(np.float32)
        name = image["name"]
        peer = np.load(REF / "maps" / f"{name}_{image['top'][0]}_eigencam.npy")
        if agrees:
            d = float(np.abs(cam - peer).max())
            assert d <= 1e-4, (name, d)
        flipped += not agrees
        np.save(OUT / f"{name}.npy", cam)
        lines += ["[[image]]", f'name = "{name}"', f'file = "{name}.npy"',
                  f"peer_sign_agrees = {'true' if agrees else 'false'}", ""]
        print(f"{name}: LAPACK's sign {'agrees with' if agrees else 'is opposite to'} the convention")
    (OUT / "index.toml").write_text("\n".join(lines))
    print(f"{flipped} of {len(index['image'])} photos needed the flip; wrote {OUT / 'index.toml'}")


if __name__ == "__main__":
    main()
