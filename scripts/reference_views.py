#!/usr/bin/env python3
"""Save Pillow's decoded, cropped and resized 224x224 view of each JPEG sample as PNG.

JPEG decoders differ by a few grey levels (Pillow's libjpeg-turbo vs the Rust `image`
crate's zune-jpeg), which moves CAM maps by up to ~0.02 on a normalised scale. The peer
comparison (tests/engine_peer.rs) feeds these lossless views to camscope so that it compares
the explanation methods and gradient graphs, not the JPEG decoders; PNG samples go through
camscope's own decoder unchanged.

Run from the repository root with the export venv (see models/README.md):
    python scripts/reference_views.py
"""
import sys
from pathlib import Path

from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "models"))
from export_efficientnet_lite0 import SIZE  # noqa: E402

OUT = ROOT / "tests" / "data" / "reference" / "views"


def view(path: Path) -> Image.Image:
    img = Image.open(path).convert("RGB")
    w, h = img.size
    s = min(w, h)
    left, top = (w - s) // 2, (h - s) // 2
    return img.crop((left, top, left + s, top + s)).resize((SIZE, SIZE), Image.BICUBIC)


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    for p in sorted((ROOT / "samples").rglob("*.jpg")):
        out = OUT / (p.stem + ".png")
        view(p).save(out)
        print(f"{p.relative_to(ROOT)} -> {out.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
