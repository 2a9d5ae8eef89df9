#!/usr/bin/env python3
"""Time the peer, pytorch-grad-cam 1.5.7, on the bundled model's weights, to compare with
`camscope bench` (same photo, same 2 threads).

Figures (medians): torch forward, GradCAM per image (forward + backward + map, the library's
own call at 224x224), ScoreCAM per image (batch_size 32). Prints one JSON line.

Run from the repository root with the reference venv (scripts/requirements-reference.txt):
    python scripts/bench_peer.py [--image samples/espresso/coffee.png] [--runs 20] [--scorecam-runs 1]
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "models"))
sys.path.insert(0, str(ROOT / "scripts"))
from export_efficientnet_lite0 import build_model, preprocess  # noqa: E402
from reference_cams import install_head_activation  # noqa: E402
from pytorch_grad_cam import GradCAM, ScoreCAM  # noqa: E402
from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget  # noqa: E402


def median_ms(fn, runs: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--image", default=str(ROOT / "samples/espresso/coffee.png"))
    ap.add_argument("--runs", type=int, default=20)
    ap.add_argument("--scorecam-runs", type=int, default=1)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    model = build_model()
    head = install_head_activation(model)
    x = torch.from_numpy(preprocess(Path(args.image)))
    with torch.no_grad():
        cls = int(model(x).argmax())
    targets = [ClassifierOutputTarget(cls)]

    def forward():
        with torch.no_grad():
            model(x)

    gradcam = GradCAM(model=model, target_layers=[head])
    scorecam = ScoreCAM(model=model, target_layers=[head])
    scorecam.batch_size = 32
    out = {
        "peer": "pytorch-grad-cam 1.5.7",
        "threads": args.threads,
        "torch_forward_ms": median_ms(forward, args.runs),
        "gradcam_ms": median_ms(lambda: gradcam(input_tensor=x, targets=targets), args.runs),
        "scorecam_ms": median_ms(lambda: scorecam(input_tensor=x, targets=targets), args.scorecam_runs),
    }
    print(json.dumps(out))


if __name__ == "__main__":
    main()
