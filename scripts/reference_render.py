#!/usr/bin/env python3
"""Reference arrays for camscope's rendering (src/render/): what OpenCV, PyTorch and pytorch-grad-cam compute.

Kept in the repository, run by hand (not by CI); the Rust test tests/render_reference.rs reads the arrays it writes
to tests/data/reference/render/. Run from the repository root with the versions of
scripts/requirements-reference.txt (opencv-python-headless 5.0.0.93, torch 2.15.0, grad-cam 1.5.7, numpy 2.4.6):
    /work/py/venv/bin/python scripts/reference_render.py

Inputs are drawn from a fixed seed and saved beside the outputs, so the Rust side feeds the very same values.
- resize_<h>x<w>_to_<H>x<W>_{in,out}.npy: cv2.resize(x, (W, H), interpolation=cv2.INTER_LINEAR), float32.
- align_<h>x<w>_to_<H>x<W>_{in,out}.npy: torch.nn.UpsamplingBilinear2d(size=(H, W)) (align_corners=True).
  (7x7 -> 224x224 with real activations: the Score-CAM mask written by scripts/reference_cams.py.)
- blend_{image,mask,alpha,peer,plain}.npy: show_cam_on_image(image / 255, mask, use_rgb=True,
  image_weight=1 - alpha) ("peer"), and the same formula without its final division by the maximum ("plain").
- deprocess_{in,out}.npy: pytorch-grad-cam's deprocess_image on a [H, W, 3] float32 array (saved as [3, H, W]
  input and [H, W, 3] uint8 output).
"""
from __future__ import annotations

import sys
from pathlib import Path

import cv2
import numpy as np
import torch
from pytorch_grad_cam.utils.image import deprocess_image, show_cam_on_image

OUT = Path("tests/data/reference/render")


def main() -> None:
    if not Path("src/render").is_dir():
        sys.exit("run from the repository root (src/render/ not found)")
    OUT.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(20261127)
    written = []

    def save(name: str, a: np.ndarray) -> None:
        np.save(OUT / name, np.ascontiguousarray(a))
        written.append(name)

    for (h, w), (hh, ww) in [((7, 7), (224, 224)), ((3, 5), (17, 11)), ((9, 13), (4, 5)), ((1, 4), (3, 9))]:
        x = rng.random((h, w), dtype=np.float32)
        tag = f"{h}x{w}_to_{hh}x{ww}"
        save(f"resize_{tag}_in.npy", x)
        save(f"resize_{tag}_out.npy", cv2.resize(x, (ww, hh), interpolation=cv2.INTER_LINEAR).astype(np.float32))
    # (7x7 -> 224x224 with aligned corners is covered by the Score-CAM mask of scripts/reference_cams.py.)
    for (h, w), (hh, ww) in [((3, 5), (17, 11)), ((2, 3), (2, 8)), ((7, 7), (32, 20))]:
        x = rng.random((h, w), dtype=np.float32)
        tag = f"{h}x{w}_to_{hh}x{ww}"
        with torch.no_grad():
            y = torch.nn.UpsamplingBilinear2d(size=(hh, ww))(torch.from_numpy(x)[None, None])[0, 0].numpy()
        save(f"align_{tag}_in.npy", x)
        save(f"align_{tag}_out.npy", y.astype(np.float32))

    # Blend: an RGB image, a [0, 1] mask, alpha 0.35 (image_weight 0.65).
    # Kept below 200 so the overlay never reaches 1 and the peer's division by the maximum shows.
    image = rng.integers(0, 200, (6, 10, 3), dtype=np.uint8)
    mask = rng.random((6, 10), dtype=np.float32)
    mask[0, 0], mask[0, 1] = 0.0, 1.0
    alpha = 0.35
    peer = show_cam_on_image(np.float32(image) / 255, mask, use_rgb=True, image_weight=1 - alpha)
    heat = cv2.cvtColor(cv2.applyColorMap(np.uint8(255 * mask), cv2.COLORMAP_JET), cv2.COLOR_BGR2RGB)
    plain = np.uint8(255 * ((1 - (1 - alpha)) * (np.float32(heat) / 255) + (1 - alpha) * (np.float32(image) / 255)))
    save("blend_image.npy", image)
    save("blend_mask.npy", mask)
    save("blend_alpha.npy", np.array([alpha], dtype=np.float64))
    save("blend_peer.npy", peer)
    save("blend_plain.npy", plain)

    gb = (rng.standard_normal((5, 7, 3)) * 0.01).astype(np.float32)
    save("deprocess_in.npy", gb.transpose(2, 0, 1))
    save("deprocess_out.npy", deprocess_image(gb))
    total = sum((OUT / n).stat().st_size for n in written)
    print(f"wrote {len(written)} arrays to {OUT}/ ({total / 1e3:.0f} kB; OpenCV {cv2.__version__}, torch {torch.__version__})")


if __name__ == "__main__":
    main()
