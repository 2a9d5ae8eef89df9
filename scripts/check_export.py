#!/usr/bin/env python3
"""Check a gradient graph written by `camscope export` against its contract, from Python.

    python3 scripts/check_export.py OUT.onnx [IMAGE] [--model MODEL.onnx] [--score logit|prob]

The contract (README.md, "The export contract"): one ONNX graph with inputs `input` (the
model's image input) and `seed` [N, classes], outputs `scores` [N, classes], `activations`
and `gradients` (both shaped like the target layer), gradients = d(seed . scores)/d(activations).

What is checked:
- `onnx.checker.check_model(full_check=True)` (full_check also runs strict shape inference);
- input and output names, ranks and dims (classes agree; gradients shaped like activations);
- ONNX Runtime (Python, CPU) runs it on IMAGE (preprocessed like the bundled model's card:
  centre crop to the input's aspect, Pillow bicubic resize, (x - 127) / 128, NCHW or NHWC as
  the input's dims say) or, without IMAGE, on seeded random input;
- a zero seed gives zero gradients; a one-hot seed on the top-1 class gives gradients that are
  finite and not all zero, and the same scores;
- with --model, `scores` equal the original model's output to 1e-4 (through a softmax where
  the score kind and the model's last op differ: see `expected_scores`).

Prints one JSON line (`"ok": true|false`, the measured values and any failures) and exits 0
when every check passed, 1 when one failed, 2 on bad arguments or missing packages.

Needs only onnx, onnxruntime and numpy (and pillow with IMAGE). CI installs the pinned ones
(onnx==1.23.2, onnxruntime==1.32.0) into .deps/pycheck with scripts/setup-pycheck:
    PYTHONPATH=.deps/pycheck python3 scripts/check_export.py OUT.onnx samples/tabby/chelsea.png
"""
from __future__ import annotations

import argparse
import json
import re
import sys

try:
    import numpy as np
    import onnx
    import onnxruntime as ort
except ImportError as e:  # one clear line instead of a traceback
    print(f"scripts/check_export.py: {e}; run scripts/setup-pycheck and set PYTHONPATH=.deps/pycheck", file=sys.stderr)
    sys.exit(2)

TOL = 1e-4
MEAN, STD = 127.0, 128.0  # the bundled model's card (models/efficientnet_lite0.toml)


def dims_of(value_info) -> list:
    """Dims of a graph input/output: ints, dim_param strings, or None when unknown."""
    t = value_info.type.tensor_type
    if not t.HasField("shape"):
        return []
    return [d.dim_value if d.HasField("dim_value") else (d.dim_param or None) for d in t.shape.dim]


def preprocess(path: str, layout: str, height: int, width: int) -> np.ndarray:
    """The bundled model's card, without torch: centre crop to the input's aspect ratio
    (offsets floored, as camscope's `imaging::crop_box`), bicubic resize, (x - 127) / 128."""
    from PIL import Image

    img = Image.open(path).convert("RGB")
    w, h = img.size
    target = width / height
    if w / h > target:
        cw, ch = max(1, round(h * target)), h
    else:
        cw, ch = w, max(1, round(w / target))
    left, top = (w - cw) // 2, (h - ch) // 2
    img = img.crop((left, top, left + cw, top + ch)).resize((width, height), Image.BICUBIC)
    x = (np.asarray(img, dtype=np.float32) - np.float32(MEAN)) / np.float32(STD)
    x = x[None] if layout == "NHWC" else x.transpose(2, 0, 1)[None]
    return np.ascontiguousarray(x)


def ends_in_softmax(model: onnx.ModelProto, output: str) -> bool:
    producer = {o: n for n in model.graph.node for o in n.output}
    n = producer.get(output)
    while n is not None and n.op_type == "Identity":
        n = producer.get(n.input[0])
    return n is not None and n.op_type == "Softmax"


def softmax(x: np.ndarray) -> np.ndarray:
    e = np.exp(x - x.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def expected_scores(score_kind: str, model_gives_probs: bool, output: np.ndarray, scores: np.ndarray):
    """What `scores` must equal, given the original model's output, and the relation's name.

    logit score: the model's output, or, when the model ends in Softmax, the Softmax's input
    (then softmax(scores) must equal the output). prob score: the model's probabilities, or
    softmax of its logits."""
    if score_kind == "logit":
        return (softmax(scores), output, "softmax(scores) = output") if model_gives_probs else (
            scores, output, "scores = output")
    return (scores, output, "scores = output") if model_gives_probs else (
        scores, softmax(output), "scores = softmax(output)")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("export", help="the file `camscope export` wrote")
    ap.add_argument("image", nargs="?", help="a photo to run (default: seeded random input)")
    ap.add_argument("--model", help="the original model, to compare scores with its output")
    ap.add_argument("--score", choices=["logit", "prob"], help="score kind (default: read from the graph's doc)")
    args = ap.parse_args()
    report: dict = {"file": args.export}
    failures: list[str] = []

    def fail(msg: str) -> None:
        failures.append(msg)

    def finish() -> int:
        report["failures"] = failures
        report["ok"] = not failures
        print(json.dumps(report))
        return 0 if not failures else 1

    try:
        model = onnx.load(args.export)
    except Exception as e:  # noqa: BLE001 - any load failure is the file's fault
        fail(f"onnx.load: {e}".splitlines()[0])
        return finish()
    try:
        onnx.checker.check_model(model, full_check=True)
        report["checker"] = "passed"
    except Exception as e:  # noqa: BLE001
        report["checker"] = "failed"
        fail(f"onnx.checker (full_check): {' '.join(str(e).split())[:500]}")

    g = model.graph
    inits = {t.name for t in g.initializer}
    inputs = {i.name: dims_of(i) for i in g.input if i.name not in inits}
    outputs = {o.name: dims_of(o) for o in g.output}
    report["inputs"], report["outputs"] = inputs, outputs
    if list(inputs) != ["input", "seed"]:
        fail(f"inputs are {list(inputs)}, expected ['input', 'seed']")
    if list(outputs) != ["scores", "activations", "gradients"]:
        fail(f"outputs are {list(outputs)}, expected ['scores', 'activations', 'gradients']")
    if failures:
        return finish()
    in_dims, seed_dims = inputs["input"], inputs["seed"]
    classes = seed_dims[1] if len(seed_dims) == 2 else None
    if not isinstance(classes, int) or classes <= 0:
        fail(f"seed dims {seed_dims}: expected [N, classes] with a fixed class count")
        return finish()
    report["classes"] = classes
    if len(outputs["scores"]) != 2 or outputs["scores"][1] != classes:
        fail(f"scores dims {outputs['scores']}: expected [N, {classes}]")
    if len(outputs["activations"]) != 4:
        fail(f"activations dims {outputs['activations']}: expected a 4-D feature map")
    if outputs["gradients"] != outputs["activations"]:
        fail(f"gradients dims {outputs['gradients']} differ from activations dims {outputs['activations']}")
    if len(in_dims) != 4 or not all(isinstance(d, int) for d in in_dims[1:]):
        fail(f"input dims {in_dims}: expected a 4-D image with fixed channel and spatial sizes")
        return finish()
    layout = "NCHW" if in_dims[1] == 3 else "NHWC"
    height, width = (in_dims[2], in_dims[3]) if layout == "NCHW" else (in_dims[1], in_dims[2])
    score_kind = args.score
    if score_kind is None:
        m = re.search(r"score (logit|prob)", model.doc_string or "")
        score_kind = m.group(1) if m else "logit"
    report["layout"], report["score"] = layout, score_kind
    layer = re.search(r"target layer `([^`]*)`", model.doc_string or "")
    report["layer"] = layer.group(1) if layer else None

    if args.image:
        x = preprocess(args.image, layout, height, width)
        report["image"] = args.image
    else:
        shape = [1, 3, height, width] if layout == "NCHW" else [1, height, width, 3]
        x = np.random.default_rng(0).uniform(-1, 1, size=shape).astype(np.float32)
    try:
        sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
        names = ["scores", "activations", "gradients"]
        zero = sess.run(names, {"input": x, "seed": np.zeros((1, classes), np.float32)})
        top = int(np.argmax(zero[0][0]))
        onehot = np.zeros((1, classes), np.float32)
        onehot[0, top] = 1.0
        scores, acts, grads = sess.run(names, {"input": x, "seed": onehot})
    except Exception as e:  # noqa: BLE001
        fail(f"onnxruntime {ort.__version__}: {' '.join(str(e).split())[:500]}")
        return finish()
    report["onnxruntime"] = ort.__version__
    report["top1"] = top
    report["scores_shape"], report["activations_shape"], report["gradients_shape"] = (
        list(scores.shape), list(acts.shape), list(grads.shape))
    if scores.shape != (1, classes):
        fail(f"scores came out {list(scores.shape)}, expected [1, {classes}]")
    if grads.shape != acts.shape:
        fail(f"gradients came out {list(grads.shape)}, activations {list(acts.shape)}")
    for d, want in zip(acts.shape[1:], outputs["activations"][1:]):
        if isinstance(want, int) and d != want:
            fail(f"activations came out {list(acts.shape)}, declared {outputs['activations']}")
            break
    report["zero_seed_gradient_max_abs"] = float(np.abs(zero[2]).max())
    if report["zero_seed_gradient_max_abs"] != 0.0:
        fail("a zero seed gave non-zero gradients")
    report["seed_changes_scores_max_abs"] = float(np.abs(zero[0] - scores).max())
    if report["seed_changes_scores_max_abs"] > 1e-6 * max(1.0, float(np.abs(scores).max())):
        fail("the scores depend on the seed")
    report["gradient_max_abs"] = float(np.abs(grads).max())
    if not np.isfinite(grads).all():
        fail("gradients hold NaN or infinity")
    elif report["gradient_max_abs"] == 0.0:
        fail(f"the gradient of class {top} is zero everywhere")

    if args.model:
        try:
            original = onnx.load(args.model, load_external_data=False)
            out_name = original.graph.output[0].name
            base = ort.InferenceSession(args.model, providers=["CPUExecutionProvider"])
            output = base.run([out_name], {base.get_inputs()[0].name: x})[0]
        except Exception as e:  # noqa: BLE001
            fail(f"{args.model}: {' '.join(str(e).split())[:300]}")
            return finish()
        got, want, relation = expected_scores(score_kind, ends_in_softmax(original, out_name), output, scores)
        err = float(np.abs(got - want).max())
        report["model"], report["relation"], report["scores_vs_model_max_abs"] = args.model, relation, err
        if err > TOL:
            fail(f"{relation} fails: max abs difference {err:.3e} > {TOL}")
    return finish()


if __name__ == "__main__":
    sys.exit(main())
