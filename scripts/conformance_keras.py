#!/usr/bin/env python3
"""Keras part of the conformance suite (see scripts/conformance.py for the PyTorch part and the index format).

Run by hand (not by CI), from the repository root, in its own virtual environment (TensorFlow 2.15 / Keras 2 and
tf2onnx 1.17, which supports TF 2.13-2.15; tf2onnx 1.17 wants onnx 1.18.0 and numpy < 2), exact versions in
scripts/requirements-conformance.txt:
    python3.11 -m venv /opt/tf
    /opt/tf/bin/pip install "tensorflow-cpu==2.15.1" "tf2onnx==1.17.0" "onnx==1.18.0" "numpy==1.26.4" \
        "onnxruntime==1.20.1" "pillow==13.0.0"
    /opt/tf/bin/python scripts/conformance_keras.py
It takes about a minute on 2 cores.

Models (random seeded weights, `weights=None`; the files stay under 2 MB each). Every BatchNormalization's moving
statistics are set from the batch statistics of the photos in samples/ before export (see calibrate_batchnorm):
with the initial statistics a random deep net's logits are all ~1e-6 and every map would be noise.
- keras_mobilenetv2: the keras.io tutorial's shape, a Sequential wrapping an application backbone:
  Sequential([MobileNetV2(alpha=0.35, weights=None, include_top=False, input_shape=(224, 224, 3)),
  GlobalAveragePooling2D(), Dropout(0.2), Dense(10, activation="softmax")]) at 224x224, exported with opset 13. The reference
  layer is the backbone's last conv block output `out_relu` (ReLU6, a Clip in ONNX). Input x / 127.5 - 1.
- keras_swish: a small EfficientNet-shaped functional model whose activations are Activation("swish") (tf2onnx
  writes x * Sigmoid(x)), with the rescaling inside the model (Rescaling(1/255) and Normalization layers, so
  the card feeds raw 0..255 pixels), depthwise convs and a squeeze-excitation block; reference layer
  `top_activation`. Opset 17.
- keras_densenet_relu: a DenseNet-shaped functional model whose conv blocks are nested keras Models that each
  contain layers named `bn`, `relu` and `conv`, and whose top level ends in BatchNormalization "bn" +
  Activation("relu", name="relu") like DenseNet121: the layer name `relu` exists both at the top level (the
  reference layer) and inside every block, so a lookup by layer name must not take the first `.../relu/...`
  node. Input (x/255 - ImageNet mean) / ImageNet std (pixel_scale = 1/255 on the card). Opset 17.

Reference maps: the keras.io Grad-CAM tutorial's formula (fchollet, "Grad-CAM class activation visualization"),
computed in TensorFlow with tf.GradientTape, with the last Dense's activation removed first
(`model.layers[-1].activation = None`, as the tutorial does), so the target is the pre-softmax logit:
    grads = tape.gradient(preds[:, class], A)          # A = the layer's output, NHWC
    pooled = reduce_mean(grads, axis=(0, 1, 2))
    heatmap = squeeze(A[0] @ pooled[:, None])          # [h, w]
    heatmap = maximum(heatmap, 0) / reduce_max(heatmap)
Note the tutorial's normalisation divides by the max only (no min subtraction); the saved `_raw` map is
maximum(heatmap, 0) before that division. For the Sequential-wrapped backbone, where `get_layer` on the outer
model cannot reach `out_relu`, the tape runs the backbone as Model(backbone.input, [out_relu, backbone.output])
followed by the outer model's remaining layers (the tutorial's approach applied to the nested model); the
script asserts those logits equal the model's own.

The ONNX tensor of the reference layer is found by running ONNX Runtime with every node output added as a graph
output and comparing with the Keras layer's value (in NHWC or transposed to NCHW; tf2onnx moves the layout
transposes to the input, so inner tensors are NCHW) to 1e-4; the index records it and its layout.

Writes into tests/data/conformance/ the same files as conformance.py (<name>.onnx, .toml, _input.npy, maps) and
replaces the `generator = "conformance_keras.py"` entries of index.toml, keeping the others.
"""
from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")

import random  # noqa: E402
import sys  # noqa: E402
import tomllib  # noqa: E402
from importlib.metadata import version  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import onnx  # noqa: E402
import onnxruntime as ort  # noqa: E402
import tensorflow as tf  # noqa: E402
import tf2onnx  # noqa: E402
from PIL import Image  # noqa: E402
from tensorflow import keras  # noqa: E402
from tensorflow.keras import layers  # noqa: E402

ROOT = Path.cwd()
if not (ROOT / "samples").is_dir() or not (ROOT / "Cargo.toml").is_file():
    sys.exit("run from the repository root")
OUT = ROOT / "tests" / "data" / "conformance"
IMAGE = ROOT / "samples" / "tabby" / "chelsea.png"
GENERATOR = "conformance_keras.py"
SEED = 0


def seed_all(seed: int = SEED) -> None:
    random.seed(seed)
    np.random.seed(seed)
    tf.random.set_seed(seed)
    keras.utils.set_random_seed(seed)


def preprocess(path: Path, size: int, pixel_scale: float, mean, std) -> np.ndarray:
    """camscope's card preprocessing: centre square crop (offsets floored), Pillow bicubic resize, RGB,
    (x * pixel_scale - mean) / std in float32, NHWC [1, size, size, 3]."""
    img = Image.open(path).convert("RGB")
    w, h = img.size
    s = min(w, h)
    left, top = (w - s) // 2, (h - s) // 2
    img = img.crop((left, top, left + s, top + s)).resize((size, size), Image.BICUBIC)
    x = np.asarray(img, dtype=np.float32)
    if pixel_scale != 1.0:
        x = x * np.float32(pixel_scale)
    x = (x - np.asarray(mean, dtype=np.float32)) / np.asarray(std, dtype=np.float32)
    return np.ascontiguousarray(x[None])


# ---------------------------------------------------------------------------------------------- models


def build_mobilenetv2():
    backbone = keras.applications.MobileNetV2(alpha=0.35, weights=None, include_top=False, input_shape=(224, 224, 3))
    model = keras.Sequential(
        [backbone, layers.GlobalAveragePooling2D(), layers.Dropout(0.2), layers.Dense(10, activation="softmax")]
    )
    return model, [backbone.name, "out_relu"]


def build_swish():
    def se_block(x, filters, name):
        s = layers.GlobalAveragePooling2D(keepdims=True, name=name + "_se_squeeze")(x)
        s = layers.Conv2D(max(4, filters // 4), 1, activation="swish", name=name + "_se_reduce")(s)
        s = layers.Conv2D(filters, 1, activation="sigmoid", name=name + "_se_expand")(s)
        return layers.Multiply(name=name + "_se_excite")([x, s])

    def mb_block(x, filters_in, filters_out, stride, name):
        h = layers.Conv2D(filters_in * 4, 1, use_bias=False, name=name + "_expand_conv")(x)
        h = layers.BatchNormalization(name=name + "_expand_bn")(h)
        h = layers.Activation("swish", name=name + "_expand_activation")(h)
        h = layers.DepthwiseConv2D(3, strides=stride, padding="same", use_bias=False, name=name + "_dwconv")(h)
        h = layers.BatchNormalization(name=name + "_bn")(h)
        h = layers.Activation("swish", name=name + "_activation")(h)
        h = se_block(h, filters_in * 4, name)
        h = layers.Conv2D(filters_out, 1, use_bias=False, name=name + "_project_conv")(h)
        h = layers.BatchNormalization(name=name + "_project_bn")(h)
        if stride == 1 and filters_in == filters_out:
            h = layers.Add(name=name + "_add")([h, x])
        return h

    inp = keras.Input((96, 96, 3), name="input")
    x = layers.Rescaling(1.0 / 255.0, name="rescaling")(inp)
    norm = layers.Normalization(
        axis=-1, mean=[0.485, 0.456, 0.406], variance=[0.229**2, 0.224**2, 0.225**2], name="normalization"
    )
    x = norm(x)
    x = layers.Conv2D(16, 3, strides=2, padding="same", use_bias=False, name="stem_conv")(x)
    x = layers.BatchNormalization(name="stem_bn")(x)
    x = layers.Activation("swish", name="stem_activation")(x)
    x = mb_block(x, 16, 16, 1, "block1a")
    x = mb_block(x, 16, 24, 2, "block2a")
    x = mb_block(x, 24, 32, 2, "block3a")
    x = mb_block(x, 32, 32, 1, "block3b")
    x = mb_block(x, 32, 48, 2, "block4a")
    x = layers.Conv2D(128, 1, use_bias=False, name="top_conv")(x)
    x = layers.BatchNormalization(name="top_bn")(x)
    x = layers.Activation("swish", name="top_activation")(x)
    x = layers.GlobalAveragePooling2D(name="avg_pool")(x)
    x = layers.Dropout(0.2, name="top_dropout")(x)
    out = layers.Dense(10, activation="softmax", name="predictions")(x)
    return keras.Model(inp, out, name="swishnet"), ["top_activation"]


def build_densenet_relu():
    def conv_block(channels_in, growth, name):
        """A DenseNet conv block as a nested Model whose layers are named bn / relu / conv."""
        i = keras.Input((None, None, channels_in))
        h = layers.BatchNormalization(epsilon=1.001e-5, name="bn")(i)
        h = layers.Activation("relu", name="relu")(h)
        h = layers.Conv2D(growth, 3, padding="same", use_bias=False, name="conv")(h)
        return keras.Model(i, h, name=name)

    def transition(x, name):
        ch = x.shape[-1]
        x = layers.BatchNormalization(epsilon=1.001e-5, name=name + "_bn")(x)
        x = layers.Activation("relu", name=name + "_relu")(x)
        x = layers.Conv2D(ch // 2, 1, use_bias=False, name=name + "_conv")(x)
        return layers.AveragePooling2D(2, strides=2, name=name + "_pool")(x)

    inp = keras.Input((128, 128, 3), name="input")
    x = layers.ZeroPadding2D(3, name="zero_padding2d")(inp)
    x = layers.Conv2D(16, 7, strides=2, use_bias=False, name="conv1/conv")(x)
    x = layers.BatchNormalization(epsilon=1.001e-5, name="conv1/bn")(x)
    x = layers.Activation("relu", name="conv1/relu")(x)
    x = layers.ZeroPadding2D(1, name="zero_padding2d_1")(x)
    x = layers.MaxPooling2D(3, strides=2, name="pool1")(x)
    for stage, blocks in ((2, 2), (3, 2), (4, 2)):
        for b in range(blocks):
            h = conv_block(x.shape[-1], 8, f"conv{stage}_block{b + 1}")(x)
            x = layers.Concatenate(name=f"conv{stage}_block{b + 1}_concat")([x, h])
        if stage != 4:
            x = transition(x, f"pool{stage}")
    x = layers.BatchNormalization(epsilon=1.001e-5, name="bn")(x)
    x = layers.Activation("relu", name="relu")(x)
    x = layers.GlobalAveragePooling2D(name="avg_pool")(x)
    out = layers.Dense(10, activation="softmax", name="predictions")(x)
    return keras.Model(inp, out, name="densenet_like"), ["relu"]


SPECS = [
    dict(
        name="keras_mobilenetv2",
        build=build_mobilenetv2,
        source="keras 2.15 Sequential([applications.MobileNetV2(alpha=0.35, weights=None, include_top=False, "
        "input_shape=(224,224,3)), GlobalAveragePooling2D, Dropout(0.2), Dense(10, softmax)]), tf2onnx 1.17 opset 13",
        opset=13,
        size=224,
        pixel_scale=1.0,
        mean=[127.5, 127.5, 127.5],
        std=[127.5, 127.5, 127.5],
        card_comment="keras.applications.mobilenet_v2.preprocess_input: x / 127.5 - 1",
        note="Sequential-wrapped application backbone (the tutorial's transfer-learning shape); reference layer is "
        "inside the nested backbone; ReLU6 exports as Clip.",
    ),
    dict(
        name="keras_swish",
        build=build_swish,
        source="keras 2.15 functional EfficientNet-shaped model, Activation('swish'), SE blocks, Rescaling + "
        "Normalization inside the model, tf2onnx 1.17 opset 17",
        opset=17,
        size=96,
        pixel_scale=1.0,
        mean=[0.0, 0.0, 0.0],
        std=[1.0, 1.0, 1.0],
        card_comment="raw 0..255 pixels: the model rescales and normalises itself (Rescaling + Normalization layers)",
        note="swish exports as Sigmoid + Mul; the input rescaling/normalisation is inside the graph.",
    ),
    dict(
        name="keras_densenet_relu",
        build=build_densenet_relu,
        source="keras 2.15 functional DenseNet-shaped model (growth 8, blocks 2-2-2, nested conv-block Models with "
        "layers named bn/relu/conv; top-level 'bn' + 'relu'), tf2onnx 1.17 opset 17",
        opset=17,
        size=128,
        pixel_scale=1.0 / 255.0,
        mean=[0.485, 0.456, 0.406],
        std=[0.229, 0.224, 0.225],
        card_comment="keras.applications.densenet.preprocess_input ('torch' mode): (x / 255 - mean) / std",
        note="the layer name 'relu' exists at the top level (the reference layer) and inside every nested conv "
        "block; resolve by the full scope, not the first '.../relu/Relu' node.",
    ),
]


# ---------------------------------------------------------------------------------------------- helpers


def all_layers(model):
    for layer in model.layers:
        yield layer
        if isinstance(layer, keras.Model):
            yield from all_layers(layer)


def calibrate_batchnorm(model, spec):
    """Random weights with BatchNormalization's initial statistics (mean 0, variance 1) shrink the signal to ~0 by
    the last block (logits all ~1e-6). Set every BN's moving statistics to the batch statistics of the sample
    photos: momentum 0 and one training-mode pass (each BN then normalises exactly as it will in inference for
    that batch), then momentum back. Dropout sits after the last BN, so it does not disturb the statistics."""
    photos = sorted(p for p in (ROOT / "samples").rglob("*") if p.suffix.lower() in (".png", ".jpg", ".jpeg"))
    batch = np.concatenate([preprocess(p, spec["size"], spec["pixel_scale"], spec["mean"], spec["std"]) for p in photos])
    bns = [layer for layer in all_layers(model) if isinstance(layer, layers.BatchNormalization)]
    saved = [bn.momentum for bn in bns]
    for bn in bns:
        bn.momentum = 0.0
    model(batch, training=True)
    for bn, m in zip(bns, saved):
        bn.momentum = m
    return len(bns), len(photos)


def get_nested(model, path):
    layer = model
    for p in path:
        layer = layer.get_layer(p)
    return layer


def features_and_logits(model, path, x):
    """(A, logits) for the tutorial's Grad-CAM: A the NHWC output of the layer at `path`, logits the
    pre-softmax output (the caller has set the last Dense's activation to None). Call inside a GradientTape."""
    if len(path) == 1:
        grad_model = keras.Model(model.inputs, [model.get_layer(path[0]).output, model.output])
        return grad_model(x, training=False)
    backbone = model.get_layer(path[0])
    inner = keras.Model(backbone.inputs, [get_nested(backbone, path[1:]).output, backbone.output])
    a, h = inner(x, training=False)
    for layer in model.layers[1:]:
        h = layer(h, training=False)
    return a, h


def tutorial_gradcam(model, path, x, class_index):
    """The keras.io tutorial's make_gradcam_heatmap, returning (normalised, raw-after-relu, A, grads)."""
    with tf.GradientTape() as tape:
        a, preds = features_and_logits(model, path, x)
        class_channel = preds[:, class_index]
    grads = tape.gradient(class_channel, a)
    pooled = tf.reduce_mean(grads, axis=(0, 1, 2))
    heatmap = tf.squeeze(a[0] @ pooled[..., tf.newaxis])
    raw = tf.maximum(heatmap, 0)
    heatmap = raw / tf.math.reduce_max(heatmap)
    return heatmap.numpy().astype(np.float32), raw.numpy().astype(np.float32), a.numpy(), grads.numpy()


def all_outputs_session(model_proto):
    m = onnx.ModelProto()
    m.CopyFrom(model_proto)
    existing = {o.name for o in m.graph.output}
    for node in m.graph.node:
        for o in node.output:
            if o and o not in existing:
                m.graph.output.append(onnx.ValueInfoProto(name=o))
                existing.add(o)
    return ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"])


def find_layer_tensor(model_proto, x, value_nhwc, scope):
    """The ONNX tensor(s) whose value equals the Keras layer's output (NHWC or NCHW) to 1e-4."""
    sess = all_outputs_session(model_proto)
    names = [o.name for o in sess.get_outputs()]
    values = sess.run(None, {sess.get_inputs()[0].name: x})
    producer = {o: n for n in model_proto.graph.node for o in n.output}
    nchw = value_nhwc.transpose(0, 3, 1, 2)
    hits = []
    for name, v in zip(names, values):
        if name not in producer or not isinstance(v, np.ndarray) or v.dtype != np.float32:
            continue
        for layout, ref in (("NHWC", value_nhwc), ("NCHW", nchw)):
            if v.shape == ref.shape and float(np.max(np.abs(v - ref))) <= 1e-4 * max(1.0, float(np.max(np.abs(ref)))):
                hits.append((name, layout, producer[name], float(np.max(np.abs(v - ref)))))
    if not hits:
        raise SystemExit(f"no ONNX tensor equals the Keras layer {scope}")
    scoped = [h for h in hits if f"/{scope}/" in "/" + h[2].name + "/" or f"/{scope}/" in "/" + h[0]]
    return (scoped or hits), hits


def path_ops(model_proto, tensor):
    """Op types of the nodes between `tensor` and the graph outputs, in graph order (unique)."""
    nodes = list(model_proto.graph.node)
    downstream = {tensor}
    after = []
    for n in nodes:
        if any(i in downstream for i in n.input):
            after.append(n)
            downstream.update(o for o in n.output if o)
    outputs = {o.name for o in model_proto.graph.output}
    needed = set(outputs)
    on_path = []
    for n in reversed(after):
        if any(o in needed for o in n.output):
            on_path.append(n)
            needed.update(n.input)
    seen = []
    for n in reversed(on_path):
        if n.op_type not in seen:
            seen.append(n.op_type)
    return seen


def write_card(spec, onnx_model):
    in_name = onnx_model.graph.input[0].name
    out_name = onnx_model.graph.output[0].name
    lines = [
        f"# camscope model card for {spec['name']}.onnx (conformance suite; written by scripts/{GENERATOR}).",
        f"# Preprocessing: centre square crop, bicubic resize to {spec['size']}, RGB, NHWC; {spec['card_comment']}.",
        f'name = "{spec["name"]} (random weights, 10 classes)"',
        "",
        "[input]",
        f'name = "{in_name}"',
        'layout = "NHWC"',
        f"height = {spec['size']}",
        f"width = {spec['size']}",
        'resize = "center-crop"',
        "crop_fraction = 1.0",
        'interpolation = "bicubic"',
        f"pixel_scale = {spec['pixel_scale']!r}",
        f"mean = [{', '.join(repr(float(v)) for v in spec['mean'])}]",
        f"std = [{', '.join(repr(float(v)) for v in spec['std'])}]",
        "",
        "[output]",
        f'name = "{out_name}"',
        'kind = "probabilities"',
        "",
    ]
    (OUT / f"{spec['name']}.toml").write_text("\n".join(lines))


# ---------------------------------------------------------------------------------------------- index


def toml_value(v):
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, np.integer)):
        return str(int(v))
    if isinstance(v, (float, np.floating)):
        f = float(v)
        if np.isnan(f):
            return "nan"
        if np.isinf(f):
            return "inf" if f > 0 else "-inf"
        return repr(f)
    if isinstance(v, str):
        return '"' + v.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(toml_value(x) for x in v) + "]"
    raise TypeError(type(v))


def write_index(entries, generator):
    """Replace this generator's [[model]] tables in index.toml, keeping the other generator's."""
    path = OUT / "index.toml"
    kept = []
    if path.is_file():
        kept = [m for m in tomllib.loads(path.read_text()).get("model", []) if m.get("generator") != generator]
    models = kept + entries
    order = {"conformance.py": 0, "conformance_keras.py": 1}
    models.sort(key=lambda m: order.get(m.get("generator"), 2))
    out = [
        "# Conformance suite index: one [[model]] per exported classifier, read by the Rust tests.",
        "# Written by scripts/conformance.py (PyTorch models) and scripts/conformance_keras.py (Keras models);",
        "# the field meanings are documented at the top of scripts/conformance.py. Do not edit by hand.",
        "",
    ]
    for m in models:
        out.append("[[model]]")
        for k, v in m.items():
            if k != "map":
                out.append(f"{k} = {toml_value(v)}")
        for mp in m.get("map", []):
            out.append("[[model.map]]")
            for k, v in mp.items():
                out.append(f"{k} = {toml_value(v)}")
        out.append("")
    path.write_text("\n".join(out))


# ---------------------------------------------------------------------------------------------- main


def run_spec(spec):
    name = spec["name"]
    seed_all()
    model, path = spec["build"]()
    n_bn, n_photos = calibrate_batchnorm(model, spec)
    x = preprocess(IMAGE, spec["size"], spec["pixel_scale"], spec["mean"], spec["std"])
    probs = model(x, training=False).numpy()[0]

    sig = [tf.TensorSpec((None, spec["size"], spec["size"], 3), tf.float32, name="input")]
    onnx_path = OUT / f"{name}.onnx"
    model_proto, _ = tf2onnx.convert.from_keras(model, input_signature=sig, opset=spec["opset"])
    onnx.save(model_proto, str(onnx_path))
    onnx.checker.check_model(model_proto)
    sess = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    ort_out = sess.run(None, {sess.get_inputs()[0].name: x})[0][0]
    diff = float(np.max(np.abs(ort_out - probs)))
    assert diff <= 1e-4, f"{name}: ONNX Runtime differs from Keras by {diff}"
    batch_dim = sess.get_inputs()[0].shape[0]
    assert not isinstance(batch_dim, int), f"{name}: batch axis not dynamic: {sess.get_inputs()[0].shape}"

    # The tutorial: drop the softmax, Grad-CAM on the logit.
    model.layers[-1].activation = None
    with tf.GradientTape():
        a, logits = features_and_logits(model, path, x)
    logits = logits.numpy()[0]
    direct = model(x, training=False).numpy()[0]
    assert np.allclose(logits, direct, atol=1e-5), f"{name}: nested forward differs from the model's"
    assert np.allclose(tf.nn.softmax(logits).numpy(), probs, atol=1e-5)
    a = a.numpy()
    order = np.argsort(-logits)
    top1, top2 = int(order[0]), int(order[1])

    candidates, all_hits = find_layer_tensor(model_proto, x, a, path[-1] if len(path) == 1 else "/".join(path))
    tensor, layout, node, tdiff = candidates[-1]
    grid = list(a.shape[1:3])

    np.save(OUT / f"{name}_input.npy", x)
    write_card(spec, model_proto)
    maps = []
    for cls in (top1, top2):
        heat, raw, _, _ = tutorial_gradcam(model, path, x, cls)
        assert heat.shape == tuple(grid)
        f = f"{name}_gradcam_{cls}.npy"
        np.save(OUT / f, heat)
        np.save(OUT / f"{name}_gradcam_{cls}_raw.npy", raw)
        maps.append(
            dict(
                method="gradcam",
                target="logit",
                **{"class": cls},
                file=f,
                raw_file=f"{name}_gradcam_{cls}_raw.npy",
                normalisation="relu / max",
                reference="keras.io Grad-CAM tutorial formula (GradientTape, pooled grads over (0,1,2), "
                "relu(A @ pooled) / max), last Dense activation set to None",
            )
        )
    entry = dict(
        name=name,
        generator=GENERATOR,
        source=spec["source"],
        framework=f"tensorflow {tf.__version__}, tf2onnx {tf2onnx.__version__}",
        opset=spec["opset"],
        head="probabilities",
        classes=int(logits.shape[0]),
        size_bytes=onnx_path.stat().st_size,
        layer=tensor,
        layer_node=node.name,
        layer_op=node.op_type,
        layer_module="/".join(path),
        layout=layout,
        extra_tokens=[],
        grid=grid,
        channels=int(a.shape[-1]),
        top1=top1,
        top2=top2,
        logits=[float(v) for v in logits],
        outputs=[float(v) for v in probs],
        path_ops=path_ops(model_proto, tensor),
        layer_max_abs_diff=tdiff,
        note=spec["note"] + f" BatchNorm statistics set from the {n_photos} sample photos ({n_bn} BN layers).",
    )
    aliases = [h[0] for h in all_hits if h[0] != tensor]
    if aliases:
        entry["layer_aliases"] = aliases
    entry["map"] = maps
    print(f"{name}: {onnx_path.stat().st_size / 1e6:.2f} MB, layer {tensor} ({layout}, {node.op_type}) "
          f"grid {grid}, top1 {top1}, ort diff {diff:.2e}, path {entry['path_ops']}")
    return entry


def main():
    OUT.mkdir(parents=True, exist_ok=True)
    print(f"tensorflow {tf.__version__}, keras {version('keras')}, tf2onnx {tf2onnx.__version__}, onnx "
          f"{onnx.__version__}, onnxruntime {ort.__version__}, numpy {np.__version__}, pillow {version('pillow')}")
    only = set(sys.argv[1:])
    entries = [run_spec(s) for s in SPECS if not only or s["name"] in only]
    if only:
        path = OUT / "index.toml"
        old = tomllib.loads(path.read_text()).get("model", []) if path.is_file() else []
        done = {e["name"] for e in entries}
        entries = [m for m in old if m.get("generator") == GENERATOR and m["name"] not in done] + entries
    write_index(entries, GENERATOR)


if __name__ == "__main__":
    main()
