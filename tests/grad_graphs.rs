//! Whole-graph behaviour of the gradient builder: layer choice and naming, NHWC models as
//! tf2onnx exports them, lossless ONNX round trips, external data, and bad models.

mod common;

use std::path::Path;

use camscope::engine::{Engine, EngineConfig, EngineError, LoadedModel};
use camscope::grad::{GradError, MapLayout, ScoreKind};
use camscope::onnx::{self, attrs};
use common::onnx_build::*;
use common::*;

/// A Keras model as tf2onnx writes it: NHWC input, one Transpose to NCHW, convolutions with
/// batch norm folded in (node `model/conv_7b/Conv2D`, output named after the BN), then
/// Relu -> GlobalAveragePool -> Squeeze -> MatMul -> Add -> Softmax for a Dense(softmax).
fn keras_like() -> camscope::onnx::ModelProto {
    Tiny::new(13)
        .input("input_1", &[-1, 9, 9, 3])
        .init("w1", &[4, 3, 3, 3], &values(108, 1, 0.0))
        .init("b1", &[4], &values(4, 2, 0.0))
        .init("w2", &[6, 4, 3, 3], &values(216, 3, 0.0))
        .init("b2", &[6], &values(6, 4, 0.0))
        .init("dense_w", &[6, 5], &values(30, 5, 0.0))
        .init("dense_b", &[5], &values(5, 6, 0.0))
        .init_i64("sq_axes", &[2], &[2, 3])
        .node("Transpose", &["input_1"], &["model/conv1/Conv2D__6:0"], vec![attrs::ints("perm", &[0, 3, 1, 2])])
        .node(
            "Conv",
            &["model/conv1/Conv2D__6:0", "w1", "b1"],
            &["model/conv1_bn/FusedBatchNormV3:0"],
            vec![attrs::ints("pads", &[1, 1, 1, 1])],
        )
        .node("Relu", &["model/conv1_bn/FusedBatchNormV3:0"], &["model/conv1_ac/Relu:0"], vec![])
        .node(
            "Conv",
            &["model/conv1_ac/Relu:0", "w2", "b2"],
            &["model/conv_7b_bn/FusedBatchNormV3:0"],
            vec![attrs::string("auto_pad", "SAME_UPPER"), attrs::ints("strides", &[2, 2])],
        )
        .node("Relu", &["model/conv_7b_bn/FusedBatchNormV3:0"], &["model/conv_7b_ac/Relu:0"], vec![])
        .node("GlobalAveragePool", &["model/conv_7b_ac/Relu:0"], &["model/avg_pool/Mean:0"], vec![])
        .node("Squeeze", &["model/avg_pool/Mean:0", "sq_axes"], &["model/avg_pool/Squeeze:0"], vec![])
        .node("MatMul", &["model/avg_pool/Squeeze:0", "dense_w"], &["model/dense/MatMul:0"], vec![])
        .node("Add", &["model/dense/MatMul:0", "dense_b"], &["model/dense/BiasAdd:0"], vec![])
        .node("Softmax", &["model/dense/BiasAdd:0"], &["dense"], vec![attrs::int("axis", -1)])
        .output("dense", &[-1, 5])
        .build()
}

fn keras_nodes_named(mut m: camscope::onnx::ModelProto) -> camscope::onnx::ModelProto {
    // tf2onnx names nodes after the Keras layer path.
    let names = [
        "model/conv1/Conv2D__6",
        "model/conv1/Conv2D",
        "model/conv1_ac/Relu",
        "model/conv_7b/Conv2D",
        "model/conv_7b_ac/Relu",
        "model/avg_pool/Mean",
        "model/avg_pool/Squeeze",
        "model/dense/MatMul",
        "model/dense/BiasAdd",
        "model/dense/Softmax",
    ];
    for (n, name) in m.graph.as_mut().unwrap().node.iter_mut().zip(names) {
        n.name = Some(name.into());
    }
    m
}

fn analyse_nhwc(m: camscope::onnx::ModelProto) -> camscope::grad::Analysis {
    let mut a = camscope::grad::Analysis::new(m, "input_1", "dense", MapLayout::Nhwc).unwrap();
    let dims = |n: usize| vec![n, 9, 9, 3];
    camscope::engine::probe_shapes(&mut a, "input_1", &dims, Path::new("keras.onnx"), false, None, None).unwrap();
    a
}

#[test]
fn nhwc_keras_model_default_layer_is_last_map_before_pooling() {
    let a = analyse_nhwc(keras_nodes_named(keras_like()));
    let cands = a.candidates();
    let default = cands.iter().find(|c| c.is_default).unwrap();
    assert_eq!(default.tensor, "model/conv_7b_ac/Relu:0");
    assert_eq!(default.layout, MapLayout::Nchw, "convolutions after the Transpose are NCHW");
    assert_eq!(default.chw(), (6, 5, 5));
    let input = cands.iter().find(|c| c.op == "Input").unwrap();
    assert_eq!((input.layout, input.chw()), (MapLayout::Nhwc, (3, 9, 9)));
}

#[test]
fn keras_layer_names_resolve_inside_tf2onnx_paths() {
    let a = analyse_nhwc(keras_nodes_named(keras_like()));
    // The tutorial's layer name: a path segment of the node `model/conv_7b/Conv2D`.
    assert_eq!(a.resolve_layer(Some("conv_7b")).unwrap().tensor, "model/conv_7b_bn/FusedBatchNormV3:0");
    assert_eq!(a.resolve_layer(Some("conv_7b_ac")).unwrap().tensor, "model/conv_7b_ac/Relu:0");
    assert_eq!(a.resolve_layer(Some("model/conv1_ac/Relu:0")).unwrap().tensor, "model/conv1_ac/Relu:0");
    assert_eq!(a.resolve_layer(Some("model/conv1/Conv2D")).unwrap().tensor, "model/conv1_bn/FusedBatchNormV3:0");
    match a.resolve_layer(Some("conv")) {
        Err(GradError::AmbiguousLayer { matches, .. }) => assert!(matches.len() >= 3, "{matches:?}"),
        other => panic!("expected ambiguity, got {other:?}"),
    }
    let err = a.resolve_layer(Some("conv_9z")).unwrap_err().to_string();
    assert!(err.contains("conv_9z") && err.contains("camscope layers"), "{err}");
    let err = a.resolve_layer(Some("model/dense/MatMul:0")).unwrap_err().to_string();
    assert!(err.contains("is not a feature map"), "{err}");
}

#[test]
fn nhwc_keras_model_gradients_match_finite_differences() {
    let a = analyse_nhwc(keras_nodes_named(keras_like()));
    let x = array(&[1, 9, 9, 3], 5, 0.05);
    // The head after conv_7b is linear (pool, dense): a wide step is exact. Earlier targets
    // have ReLUs downstream whose pre-activations may lie near 0: a small step.
    for (layer, kind, h) in [
        ("model/conv_7b_ac/Relu:0", ScoreKind::Logit, 1e-2),
        ("model/conv1_ac/Relu:0", ScoreKind::Logit, 1e-3),
        ("input_1", ScoreKind::Logit, 1e-3),
    ] {
        let c = fd_check(&a, layer, kind, &x, None, h, 300);
        assert!(c.agrees(2e-3), "{layer} {kind}: {c:?}");
    }
    // Probabilities move little (their gradient is ~1e-5 here), so float32 differences of
    // them need a wider step and a one-hot seed to rise above rounding noise.
    let c =
        fd_check(&a, "model/conv_7b_ac/Relu:0", ScoreKind::Prob, &x, Some(vec![1.0, 0.0, 0.0, 0.0, 0.0]), 5e-2, 300);
    assert!(c.agrees(2e-3), "prob: {c:?}");
}

#[test]
fn logit_score_of_a_softmax_model_is_the_softmax_input() {
    let a = analyse_nhwc(keras_like());
    let target = a.resolve_layer(None).unwrap();
    let logit = a.plan(&target, ScoreKind::Logit, false).unwrap();
    assert_eq!(logit.names.score, "model/dense/BiasAdd:0");
    let prob = a.plan(&target, ScoreKind::Prob, false).unwrap();
    assert_eq!(prob.names.score, "dense");
}

#[test]
fn bundled_model_round_trips_byte_identically() {
    let bytes = std::fs::read(bundled_model()).unwrap();
    let m = onnx::decode_model(&bytes, &bundled_model()).unwrap();
    assert_eq!(onnx::encode_model(&m), bytes, "decode + encode changed the file");
    // Through the writer too.
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("copy.onnx");
    onnx::write_model(&out, &m).unwrap();
    assert_eq!(std::fs::read(&out).unwrap(), bytes);
}

#[test]
fn exported_gradient_graph_round_trips() {
    let m = LoadedModel::open(&bundled_model(), None, &cpu()).unwrap();
    let target = m.analysis.resolve_layer(None).unwrap();
    let exported = m.analysis.plan(&target, ScoreKind::Logit, false).unwrap().export();
    let bytes = onnx::encode_model(&exported);
    let again = onnx::decode_model(&bytes, Path::new("x.onnx")).unwrap();
    assert_eq!(onnx::encode_model(&again), bytes);
}

/// The body's bytes (its graph without weights, then a second `graph` field with the
/// model's initializers, merged by the parser) decode to exactly the body graph, for a CNN and for a transformer
/// whose head reads side tensors, and so does the body the engine opens, whose weights are
/// references into the model file's buffer; and the head no longer carries the whole model's
/// weights.
#[test]
fn body_bytes_decode_to_the_body_graph_and_the_head_keeps_only_its_weights() {
    let conformance = data("conformance");
    for path in [bundled_model(), conformance.join("vit_cls.onnx"), conformance.join("swin.onnx")] {
        let m = LoadedModel::open(&path, None, &cpu()).unwrap();
        let target = m.analysis.resolve_layer(None).unwrap();
        let plan = m.analysis.plan_for_sessions(&target, ScoreKind::Logit, false).unwrap();
        let merged = onnx::decode_model(&plan.body_bytes(), Path::new("body.onnx")).unwrap();
        assert_eq!(merged, plan.body(), "{}", path.display());
        // What the engine opens: the same graph, its weights read in place from the model
        // file's buffer (external data), each reference the bytes of the tensor it replaces.
        let encoded = plan.body_encoded();
        let buffer = encoded.external.clone().unwrap_or_else(|| panic!("{}: weights inside the graph", path.display()));
        assert_eq!(&buffer[..], &std::fs::read(&path).unwrap()[..], "the buffer is the model file");
        let ext = onnx::decode_model(&encoded.bytes, Path::new("body.onnx")).unwrap();
        let (body, ext) = (plan.body().graph.unwrap(), ext.graph.unwrap());
        assert_eq!((&ext.node, &ext.output), (&body.node, &body.output), "{}", path.display());
        assert_eq!(ext.initializer.len(), body.initializer.len());
        let mut moved = 0;
        for (e, b) in ext.initializer.iter().zip(&body.initializer) {
            assert_eq!((&e.name, &e.dims, e.data_type), (&b.name, &b.dims, b.data_type));
            let get = |k: &str| {
                e.external_data.iter().find(|kv| kv.key.as_deref() == Some(k)).and_then(|kv| kv.value.clone())
            };
            let bytes: &[u8] = match get("location") {
                Some(location) => {
                    assert_eq!(location, onnx::SHARED_FILE_NAME);
                    let offset: usize = get("offset").unwrap().parse().unwrap();
                    let length: usize = get("length").unwrap().parse().unwrap();
                    moved += length;
                    &buffer[offset..offset + length]
                }
                None => e.raw_data.as_deref().unwrap_or_default(),
            };
            assert_eq!(bytes, b.raw_data.as_deref().unwrap_or_default(), "{:?}", e.name);
        }
        // Each reference costs its location, offset and length (under 128 bytes).
        let refs = 128 * ext.initializer.len();
        assert!(
            encoded.bytes.len() + moved <= plan.body_bytes().len() + refs && moved * 2 > buffer.len(),
            "{}: {moved} of the file's {} bytes read in place, {} bytes encoded",
            path.display(),
            buffer.len(),
            encoded.bytes.len()
        );
        assert!(plan.body().graph.unwrap().output.len() > m.analysis.model().graph.as_ref().unwrap().output.len());
        let head = plan.head();
        let (head_len, model_len) = (onnx::encode_model(&head).len(), onnx::encode_model(m.analysis.model()).len());
        if path == bundled_model() {
            assert!(head_len * 3 < model_len, "the head is {head_len} bytes of the model's {model_len}");
        }
        assert_eq!(head.opset_import, m.analysis.model().opset_import);
    }
}

/// A model whose weights live in an external data file (`location` relative to the model).
fn with_external_weights(dir: &Path, location: &str) -> std::path::PathBuf {
    use camscope::onnx::proto::StringStringEntryProto;
    use camscope::onnx::proto::tensor_proto::DataLocation;
    let mut m = Tiny::new(17)
        .input("x", &[-1, 3])
        .init("W", &[3, 2], &[1.0, 2.0, 3.0, 4.0, 5.0, 6.0])
        .node("MatMul", &["x", "W"], &["y"], vec![])
        .output("y", &[-1, 2])
        .build();
    let t = &mut m.graph.as_mut().unwrap().initializer[0];
    let raw = t.raw_data.take().unwrap();
    let data_path = dir.join("weights.bin");
    let mut padded = vec![0u8; 16];
    padded.extend(&raw);
    std::fs::write(&data_path, &padded).unwrap();
    let kv = |k: &str, v: &str| StringStringEntryProto { key: Some(k.into()), value: Some(v.into()) };
    t.external_data = vec![kv("location", location), kv("offset", "16"), kv("length", &raw.len().to_string())];
    t.data_location = Some(DataLocation::External as i32);
    let path = dir.join("model.onnx");
    onnx::write_model(&path, &m).unwrap();
    path
}

#[test]
fn external_data_inside_the_model_folder_is_inlined() {
    let dir = tempfile::tempdir().unwrap();
    let path = with_external_weights(dir.path(), "weights.bin");
    let m = onnx::read_model(&path).unwrap();
    let w = &m.graph.unwrap().initializer[0];
    assert_eq!(tensor_f32(w), vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0]);
    assert!(w.external_data.is_empty());
}

#[test]
fn external_data_escaping_the_model_folder_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let inner = dir.path().join("m");
    std::fs::create_dir(&inner).unwrap();
    for location in ["../weights.bin", "/etc/passwd"] {
        let path = with_external_weights(&inner, location);
        let err = onnx::read_model(&path).unwrap_err().to_string();
        assert!(err.contains(location) && err.contains("outside the model's folder"), "{err}");
    }
    // Through a symlink that points out of the folder.
    #[cfg(unix)]
    {
        let outside = dir.path().join("secret.bin");
        std::fs::write(&outside, [0u8; 64]).unwrap();
        std::os::unix::fs::symlink(&outside, inner.join("link.bin")).unwrap();
        let path = with_external_weights(&inner, "link.bin");
        let err = onnx::read_model(&path).unwrap_err().to_string();
        assert!(err.contains("link.bin") && err.contains("outside the model's folder"), "{err}");
    }
}

/// A FIFO as the data file used to block the load forever (waiting for a writer), and
/// `explain`, `layers` and `export` with it.
#[cfg(unix)]
#[test]
fn external_data_that_is_a_fifo_is_refused_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let path = with_external_weights(dir.path(), "weights.bin");
    std::fs::remove_file(dir.path().join("weights.bin")).unwrap();
    let fifo = std::ffi::CString::new(dir.path().join("weights.bin").into_os_string().into_encoded_bytes()).unwrap();
    // SAFETY: a valid NUL-terminated path; mkfifo only creates a file.
    assert_eq!(unsafe { libc::mkfifo(fifo.as_ptr(), 0o644) }, 0);
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || tx.send(onnx::read_model(&path).map(|_| ()).map_err(|e| e.to_string())));
    let err = rx.recv_timeout(std::time::Duration::from_secs(20)).expect("the load returns").unwrap_err();
    assert!(err.contains("weights.bin") && err.contains("not a regular file"), "{err}");
}

fn write(dir: &Path, name: &str, m: &camscope::onnx::ModelProto) -> std::path::PathBuf {
    let p = dir.join(name);
    onnx::write_model(&p, m).unwrap();
    p
}

fn image_card(dir: &Path, model: &str, size: u32) {
    let card = format!(
        "[input]\nlayout = \"NCHW\"\nheight = {size}\nwidth = {size}\nmean = [0.0, 0.0, 0.0]\nstd = [255.0, 255.0, 255.0]\n"
    );
    std::fs::write(dir.join(model).with_extension("toml"), card).unwrap();
}

#[test]
fn model_without_spatial_layer_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    // An image model that flattens first: an MLP on pixels.
    let m = Tiny::new(17)
        .input("x", &[-1, 3, 4, 4])
        .init("W", &[48, 5], &values(240, 1, 0.0))
        .node("Flatten", &["x"], &["f"], vec![attrs::int("axis", 1)])
        .node("MatMul", &["f", "W"], &["y"], vec![])
        .output("y", &[-1, 5])
        .build();
    let p = write(dir.path(), "mlp.onnx", &m);
    let lm = LoadedModel::open(&p, None, &cpu()).unwrap();
    let err = lm.analysis.resolve_layer(None).unwrap_err();
    assert!(matches!(err, GradError::NoSpatialLayer), "{err}");
    let out = camscope(&["export", p.to_str().unwrap(), "-o", dir.path().join("g.onnx").to_str().unwrap()]);
    let line = one_line_error(&out);
    assert!(line.contains("mlp.onnx") && line.contains("no feature map"), "{line}");
}

#[test]
fn unsupported_op_names_op_node_layer_and_suggests_a_later_layer() {
    let dir = tempfile::tempdir().unwrap();
    // Hardmax between the feature map and the scores has no gradient rule.
    let m = Tiny::new(17)
        .input("x", &[-1, 3, 6, 6])
        .init("W", &[4, 3, 3, 3], &values(108, 2, 0.0))
        .node("Conv", &["x", "W"], &["c"], vec![])
        .node("Hardmax", &["c"], &["h"], vec![attrs::int("axis", 1)])
        .node("Conv", &["h", "W2"], &["c2"], vec![])
        .init("W2", &[4, 4, 1, 1], &values(16, 3, 0.0))
        .node("GlobalAveragePool", &["c2"], &["p"], vec![])
        .node("Flatten", &["p"], &["y"], vec![attrs::int("axis", 1)])
        .output("y", &[-1, 4])
        .build();
    let p = write(dir.path(), "hard.onnx", &m);
    image_card(dir.path(), "hard.onnx", 6);
    let lm = LoadedModel::open(&p, None, &cpu()).unwrap();
    let early = lm.analysis.resolve_layer(Some("c")).unwrap();
    let err = lm.analysis.plan(&early, ScoreKind::Logit, false).unwrap_err().to_string();
    assert!(err.contains("Hardmax") && err.contains("Hardmax_1") && err.contains("layer `c`"), "{err}");
    assert!(err.contains("--layer"), "{err}");
    // The default (after the Hardmax) works.
    let default = lm.analysis.resolve_layer(None).unwrap();
    assert_eq!(default.tensor, "c2");
    assert!(lm.analysis.plan(&default, ScoreKind::Logit, false).is_ok());
}

#[test]
fn shapes_that_cannot_be_measured_are_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    // A hard-coded Reshape that only fits 4x4 inputs, while the card says 8x8.
    let m = Tiny::new(17)
        .input("x", &[-1, 3, -1, -1])
        .init_i64("shape", &[2], &[1, 48])
        .node("Reshape", &["x", "shape"], &["y"], vec![])
        .output("y", &[-1, 48])
        .build();
    let p = write(dir.path(), "rigid.onnx", &m);
    image_card(dir.path(), "rigid.onnx", 8);
    let err = LoadedModel::open(&p, None, &cpu()).unwrap_err();
    assert!(matches!(err, EngineError::Probe { .. }), "{err}");
    let msg = err.to_string();
    assert!(msg.contains("rigid.onnx") && msg.contains("could not measure tensor shapes"), "{msg}");
    // Without a card, symbolic spatial dims cannot be filled at all.
    std::fs::remove_file(dir.path().join("rigid.toml")).unwrap();
    let msg = LoadedModel::open(&p, None, &cpu()).unwrap_err().to_string();
    assert!(msg.contains("rigid.toml") && msg.contains("no model card"), "{msg}");
}

#[test]
fn model_that_only_runs_at_batch_one_is_fed_one_image_at_a_time() {
    let dir = tempfile::tempdir().unwrap();
    let m = Tiny::new(17)
        .input("x", &[-1, 3, 4, 4])
        .init_i64("shape", &[2], &[1, 48])
        .init("W", &[48, 3], &values(144, 4, 0.0))
        .node("Relu", &["x"], &["r"], vec![])
        .node("Reshape", &["r", "shape"], &["f"], vec![])
        .node("MatMul", &["f", "W"], &["y"], vec![])
        .output("y", &[-1, 3])
        .build();
    let p = write(dir.path(), "one.onnx", &m);
    image_card(dir.path(), "one.onnx", 4);
    let lm = LoadedModel::open(&p, None, &cpu()).unwrap();
    assert!(lm.fixed_batch);
    // Five images through an engine asked for batches of 4: each must run alone.
    let mut engine =
        Engine::from_model(lm, EngineConfig { session: cpu(), batch: 4, ..EngineConfig::default() }).expect("engine");
    let two = ndarray::Array4::<f32>::zeros((2, 3, 4, 4));
    assert!(engine.body_batch(two.view()).is_err(), "the model really refuses a batch of two");
    let paths: Vec<std::path::PathBuf> = (0..5u8)
        .map(|i| {
            let path = dir.path().join(format!("img{i}.png"));
            let img =
                image::RgbImage::from_fn(4, 4, |x, y| image::Rgb([i * 40 + x as u8 * 9, y as u8 * 50, 200 - i * 30]));
            img.save(&path).unwrap();
            path
        })
        .collect();
    let w = values(144, 4, 0.0);
    let mut logits = Vec::new();
    for (path, loaded) in paths.iter().zip(engine.load_many(&paths)) {
        let loaded = loaded.unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        // y = relu(x).flatten() · W by hand, on the sample the engine fed.
        let x: Vec<f32> = loaded.input.iter().copied().collect();
        let want: Vec<f32> =
            (0..3).map(|k| x.iter().enumerate().map(|(i, v)| v.max(0.0) * w[i * 3 + k]).sum()).collect();
        let got = loaded.scores.logits.clone().expect("logits");
        let d = max_abs_diff(&path.display().to_string(), &got, &want);
        assert!(d <= 1e-5, "{}: {got:?} vs {want:?}", path.display());
        logits.push(got);
    }
    assert!(logits.windows(2).all(|p| p[0] != p[1]), "five different images, five different results: {logits:?}");
}

#[test]
fn layers_command_lists_candidates_and_default() {
    let out = camscope(&["layers"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8_lossy(&out.stdout);
    let default: Vec<&str> = text.lines().filter(|l| l.contains("<- default")).collect();
    assert_eq!(default.len(), 1, "{text}");
    assert!(default[0].contains("/_swish_1/Clip_output_0") && default[0].contains("[N, 1280, 7, 7]"), "{text}");
    assert!(text.contains("/_blocks.0/_depthwise_conv/Conv_output_0"), "{text}");
    let out = camscope(&["layers", "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let arr = v.as_array().unwrap();
    assert!(arr.iter().filter(|c| c["is_default"] == true).count() == 1);
}
