#!/usr/bin/env python3
"""Write the EXIF-orientation fixtures of tests/decode.rs under tests/data/exif/ (not run by CI).

For each EXIF orientation 1..8, one small asymmetric photo crop (the tabby sample) is stored as
a JPEG tagged with that orientation, its pixels pre-transformed by the inverse operation so that
every file shows the same upright cat once the tag is applied. Beside each JPEG:

  orient-N.upright.png  Pillow's ImageOps.exif_transpose of the JPEG, as decoded by Pillow
                        (the expected output of camscope's decode, up to JPEG-decoder differences)
  orient-N.raw.png      the JPEG as stored, decoded by Pillow with no transpose (--ignore-exif)

Lossless files with an orientation too (exact comparisons): png-6.png (PNG eXIf chunk),
webp-8.webp (lossless WebP with an EXIF chunk), tiff-3.tif (TIFF Orientation tag); Pillow's
exif_transpose of each equals upright.png, the crop itself. For the end-to-end check: espresso-upright.jpg and espresso-rot6.jpg (the
espresso sample, stored rotated with Orientation 6). And bad/float32.tif, a greyscale 32-bit
float TIFF, which camscope cannot read.

Run: python3 -m venv /opt/pil && /opt/pil/bin/pip install pillow numpy
     /opt/pil/bin/python scripts/gen_exif_fixtures.py
(Pillow 13.0.0 wrote the committed files.)
"""

import pathlib

import numpy as np
from PIL import Image, ImageOps

ROOT = pathlib.Path(__file__).resolve().parent.parent
OUT = ROOT / "tests" / "data" / "exif"

# The operation that stores an upright image so that orientation N shows it upright again:
# the inverse of what exif_transpose applies for N.
T = Image.Transpose
INVERSE = {
    1: None,
    2: T.FLIP_LEFT_RIGHT,
    3: T.ROTATE_180,
    4: T.FLIP_TOP_BOTTOM,
    5: T.TRANSPOSE,
    6: T.ROTATE_90,
    7: T.TRANSVERSE,
    8: T.ROTATE_270,
}


def stored(upright, orientation):
    op = INVERSE[orientation]
    return upright if op is None else upright.transpose(op)


def exif_with(orientation):
    exif = Image.Exif()
    exif[0x0112] = orientation
    return exif


def save_pair(path, expected):
    """`expected` (a PIL image) as a lossless PNG beside `path`."""
    expected.convert("RGB").save(path.with_suffix(".upright.png"))


def main():
    OUT.mkdir(parents=True, exist_ok=True)
    cat = Image.open(ROOT / "samples" / "tabby" / "chelsea.png").convert("RGB")
    # An odd, non-square size: 45x30 exercises partial JPEG blocks and a swap of width and height.
    upright = cat.crop((60, 20, 60 + 270, 20 + 180)).resize((45, 30), Image.Resampling.BICUBIC)
    for n in range(1, 9):
        jpg = OUT / f"orient-{n}.jpg"
        stored(upright, n).save(jpg, quality=90, exif=exif_with(n))
        with Image.open(jpg) as im:
            assert im.getexif().get(0x0112) == n
            im.convert("RGB").save(OUT / f"orient-{n}.raw.png")
            save_pair(jpg, ImageOps.exif_transpose(im))
    upright.save(OUT / "upright.png")
    for n, name, kwargs in [(6, "png-6.png", {}), (8, "webp-8.webp", {"lossless": True}), (3, "tiff-3.tif", {})]:
        path = OUT / name
        stored(upright, n).save(path, exif=exif_with(n), **kwargs)
        with Image.open(path) as im:
            assert im.getexif().get(0x0112) == n, name
            transposed = ImageOps.exif_transpose(im)
            assert np.array_equal(np.asarray(transposed.convert("RGB")), np.asarray(upright)), name
    espresso = Image.open(ROOT / "samples" / "espresso" / "coffee.png").convert("RGB")
    espresso = espresso.resize((espresso.width // 2, espresso.height // 2), Image.Resampling.BICUBIC)
    espresso.save(OUT / "espresso-upright.jpg", quality=90)
    stored(espresso, 6).save(OUT / "espresso-rot6.jpg", quality=90, exif=exif_with(6))
    bad = ROOT / "tests" / "data" / "bad"
    Image.fromarray(np.linspace(0, 1, 64, dtype=np.float32).reshape(8, 8), mode="F").save(bad / "float32.tif")
    for p in sorted(OUT.iterdir()):
        print(p.relative_to(ROOT), p.stat().st_size)


if __name__ == "__main__":
    main()
