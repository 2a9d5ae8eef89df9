//! Models users bring, through the real binary: errors that lead somewhere (the blocking op
//! and the layers that avoid it, ONNX Runtime's own reason with the real node name, a
//! layer after the class-token selection, cards that contradict the head) and the cases
//! that must simply work (Eigen-CAM without gradient rules, Keras layer names, heads).

mod common;

use std::path::{Path, PathBuf};

use camscope::onnx::attrs;
use common::onnx_build::*;
use common::*;

fn conformance(name: &str) -> String {
    data("conformance").join(format!("{name}.onnx")).to_string_lossy().into_owned()
}

fn input_image() -> String {
    sample("tabby/chelsea.png").to_string_lossy().into_owned()
}

fn tmp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("camscope-model-errors-{}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d.join(name)
}

/// The card of the tests' tiny NCHW models: a `size`×`size` input, mean 0.5, std 0.25.
fn write_card(model: &Path, size: u32) {
    let card = format!(
        "[input]\nlayout = \"NCHW\"\nheight = {size}\nwidth = {size}\nmean = [0.5, 0.5, 0.5]\nstd = [0.25, 0.25, 0.25]\npixel_scale = 0.00392156862745098\n"
    );
    std::fs::write(model.with_extension("toml"), card).unwrap();
}

/// A small CNN `x [N,3,16,16] -> Conv -> Relu -> (op) -> Conv -> Relu -> GAP -> Flatten
/// -> (op) -> Gemm -> y [N,5]` with `op` inserted in the middle or in the head.
fn cnn_with(op: &str, in_head: bool, path: &Path) {
    let w1 = values(8 * 3 * 9, 1, 0.0);
    let w2 = values(8 * 8 * 9, 2, 0.0);
    let wd = values(8 * 5, 3, 0.0);
    let mut t = Tiny::new(17)
        .input("x", &[-1, 3, 16, 16])
        .init("W1", &[8, 3, 3, 3], &w1)
        .init("W2", &[8, 8, 3, 3], &w2)
        .init("Wd", &[8, 5], &wd)
        .node("Conv", &["x", "W1"], &["c1"], vec![attrs::ints("pads", &[1, 1, 1, 1])])
        .node("Relu", &["c1"], &["r1"], vec![]);
    let mid = if in_head { "r1" } else { "odd" };
    if !in_head {
        t = t.node(op, &["r1"], &["odd"], vec![attrs::int("axis", 1)]);
    }
    t = t
        .node("Conv", &[mid, "W2"], &["c2"], vec![attrs::ints("pads", &[1, 1, 1, 1])])
        .node("Relu", &["c2"], &["r2"], vec![])
        .node("GlobalAveragePool", &["r2"], &["p"], vec![])
        .node("Flatten", &["p"], &["f"], vec![attrs::int("axis", 1)]);
    let feat = if in_head {
        t = t.node(op, &["f"], &["g"], vec![attrs::int("axis", 1)]);
        "g"
    } else {
        "f"
    };
    let m = t.node("MatMul", &[feat, "Wd"], &["y"], vec![]).output("y", &[-1, 5]).build();
    camscope::onnx::write_model(path, &m).unwrap();
    write_card(path, 16);
}

#[test]
fn an_op_without_a_rule_names_itself_and_the_layers_after_it_and_eigen_cam_still_works() {
    let path = tmp("mid.onnx");
    cnn_with("LpNormalization", false, &path);
    let model = path.to_string_lossy().into_owned();
    let img = input_image();
    let out = camscope(&["explain", "--model", &model, &img, "--layer", "r1"]);
    let err = one_line_error(&out);
    assert!(err.contains("cannot differentiate LpNormalization node `LpNormalization_2`"), "{err}");
    assert!(err.contains("layers after it avoid it: `c2`, `r2`"), "{err}");
    assert!(err.contains("--method eigencam"), "{err}");
    // The default layer (after the op) works, and so do the methods that need no gradient
    // at the layer before it.
    assert!(camscope(&["explain", "--model", &model, &img]).status.success());
    for method in ["eigencam", "scorecam", "ablationcam"] {
        let out = camscope(&["explain", "--model", &model, &img, "--layer", "r1", "--method", method]);
        assert!(out.status.success(), "{method}: {}", String::from_utf8_lossy(&out.stderr));
    }

    let head = tmp("head.onnx");
    cnn_with("LpNormalization", true, &head);
    let model = head.to_string_lossy().into_owned();
    let err = one_line_error(&camscope(&["explain", "--model", &model, &img]));
    assert!(err.contains("no layer after that node can be explained"), "{err}");
    assert!(camscope(&["explain", "--model", &model, &img, "--method", "eigencam"]).status.success());
}

#[test]
fn a_model_onnx_runtime_cannot_load_says_so_with_the_real_node_name() {
    let path = tmp("partitioned.onnx");
    cnn_with("PartitionedCall", false, &path);
    let model = path.to_string_lossy().into_owned();
    let t0 = std::time::Instant::now();
    let err = one_line_error(&camscope(&["layers", "--model", &model]));
    let took = t0.elapsed();
    assert!(err.contains("ONNX Runtime cannot load this model"), "{err}");
    assert!(err.contains("PartitionedCall"), "{err}");
    assert!(!err.contains("camscope_probe"), "internal node names leak: {err}");
    assert!(!err.contains("input size"), "a hint about the card is misleading here: {err}");
    eprintln!("unloadable model reported in {took:?}");
}

#[test]
fn a_layer_after_the_class_token_selection_names_the_right_one() {
    let model = conformance("vit_cls");
    let err = one_line_error(&camscope(&[
        "explain",
        "--model",
        &model,
        &input_image(),
        "--layer",
        "/norm/LayerNormalization_output_0",
    ]));
    assert!(err.contains("after the model picks its class token"), "{err}");
    assert!(err.contains("/blocks/blocks.1/norm1/LayerNormalization_output_0"), "{err}");
    // `layers` shows the token layout and the default.
    let out = camscope(&["layers", "--model", &model]);
    let text = String::from_utf8_lossy(&out.stdout);
    let default = text.lines().find(|l| l.contains("<- default")).unwrap();
    assert!(default.contains("/blocks/blocks.1/norm1/LayerNormalization_output_0"), "{default}");
    assert!(default.contains("tokens 14x14 +1 first"), "{default}");
}

#[test]
fn a_card_that_contradicts_the_head_is_one_line_each_way() {
    // A Keras model ending in Softmax, with a multi-label card.
    let card = tmp("multi.toml");
    let base = std::fs::read_to_string(data("conformance/keras_mobilenetv2.toml")).unwrap();
    let without_output: String = base.split("[output]").next().unwrap().to_owned();
    std::fs::write(&card, format!("{without_output}\n[output]\nkind = \"sigmoid\"\n")).unwrap();
    let err = one_line_error(&camscope(&[
        "explain",
        "--model",
        &conformance("keras_mobilenetv2"),
        "--card",
        &card.to_string_lossy(),
        &input_image(),
    ]));
    assert!(err.contains("kind = \"sigmoid\"") && err.contains("from a Softmax"), "{err}");

    let multi = std::fs::read_to_string(data("conformance/multilabel_densenet.toml")).unwrap();
    let without_output: String = multi.split("[output]").next().unwrap().to_owned();
    let card = tmp("softmax.toml");
    std::fs::write(&card, format!("{without_output}\n[output]\nkind = \"probabilities\"\n")).unwrap();
    let err = one_line_error(&camscope(&[
        "explain",
        "--model",
        &conformance("multilabel_densenet"),
        "--card",
        &card.to_string_lossy(),
        &input_image(),
    ]));
    assert!(err.contains("comes from a Sigmoid") && err.contains("kind = \"sigmoid\""), "{err}");
}

#[test]
fn multi_label_and_binary_heads_show_each_class_its_own_probability() {
    let out =
        camscope(&["explain", "--model", &conformance("multilabel_densenet"), &input_image(), "--json", "--top", "14"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let probs: Vec<f64> = v[0]["top"].as_array().unwrap().iter().map(|p| p["probability"].as_f64().unwrap()).collect();
    assert_eq!(probs.len(), 14);
    let sum: f64 = probs.iter().sum();
    assert!((sum - 1.0).abs() > 0.05, "independent sigmoids do not sum to 1 (sum {sum})");
    assert!(probs.iter().all(|p| *p > 0.0 && *p < 1.0), "{probs:?}");
    // `--score prob` differentiates the sigmoid: a different map from the logit's, same layer.
    let prob = camscope(&[
        "explain",
        "--model",
        &conformance("multilabel_densenet"),
        &input_image(),
        "--json",
        "--score",
        "prob",
    ]);
    assert!(prob.status.success(), "{}", String::from_utf8_lossy(&prob.stderr));

    let out =
        camscope(&["explain", "--model", &conformance("binary_logit"), &input_image(), "--json", "-c", "0", "-c", "1"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let top = v[0]["top"].as_array().unwrap();
    assert_eq!(top.len(), 2, "a binary classifier shows the positive class and its complement");
    let mut names: Vec<&str> = top.iter().map(|p| p["label"].as_str().unwrap()).collect();
    names.sort_unstable();
    assert_eq!(names, ["negative", "positive"]);
    // A labels file naming the positive class only gives its complement a name.
    let labels = tmp("finding.txt");
    std::fs::write(&labels, "pneumonia\n").unwrap();
    let base = std::fs::read_to_string(data("conformance/binary_logit.toml")).unwrap();
    let card = tmp("binary.toml");
    std::fs::write(&card, format!("labels = \"{}\"\n{base}", labels.display())).unwrap();
    let named = camscope(&[
        "explain",
        "--model",
        &conformance("binary_logit"),
        "--card",
        &card.to_string_lossy(),
        &input_image(),
        "-c",
        "not pneumonia",
        "--json",
    ]);
    assert!(named.status.success(), "{}", String::from_utf8_lossy(&named.stderr));
    let n: serde_json::Value = serde_json::from_slice(&named.stdout).unwrap();
    assert_eq!(n[0]["target"]["class"]["index"], 0);
    let sum: f64 = top.iter().map(|p| p["probability"].as_f64().unwrap()).sum();
    assert!((sum - 1.0).abs() < 1e-6);
    // The complement's map is the positive class's evidence reversed: where one is hot the
    // other is not.
    let (m0, m1) = (&v[0]["map"], &v[1]["map"]);
    let flat = |m: &serde_json::Value| -> Vec<f64> {
        m.as_array().unwrap().iter().flat_map(|r| r.as_array().unwrap().iter().map(|x| x.as_f64().unwrap())).collect()
    };
    let (a, b) = (flat(m0), flat(m1));
    let hot = a.iter().position(|&x| x == 1.0).unwrap();
    assert_eq!(b[hot], 0.0, "the complement's map is cold where the positive class's is hottest");
}

#[test]
fn keras_layer_names_match_the_shallowest_path_and_a_layer_of_several_nodes_its_output() {
    let layer = |model: &str, name: &str| -> String {
        let out = camscope(&["explain", "--model", &conformance(model), &input_image(), "--json", "--layer", name]);
        assert!(out.status.success(), "{model} {name}: {}", String::from_utf8_lossy(&out.stderr));
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        v[0]["layer"].as_str().unwrap().to_owned()
    };
    // `relu` is the top-level layer, not the nested conv blocks' `relu`.
    assert_eq!(layer("keras_densenet_relu", "relu"), "densenet_like/relu/Relu:0");
    // swish = Sigmoid + Mul: the layer's output is the Mul.
    assert_eq!(layer("keras_swish", "top_activation"), "swishnet/top_activation/mul_1:0");
}

/// A toy transformer on a 56x56 input with no patch-embedding map in the graph (patches cut
/// by Reshape/Transpose): its 65 tokens read as 1 + 8x8 (stride 7) or 16 + 7x7 (stride 8).
fn ambiguous_transformer(path: &Path) {
    let t = Tiny::new(17)
        .input("x", &[-1, 3, 56, 56])
        .init_i64("s1", &[6], &[0, 3, 8, 7, 8, 7])
        .init_i64("s2", &[3], &[0, 64, 147])
        .init("We", &[147, 8], &values(147 * 8, 5, 0.0))
        .init("Wd", &[8, 5], &values(40, 6, 0.0))
        .init_i64("zero", &[], &[0])
        .node("Reshape", &["x", "s1"], &["p6"], vec![])
        .node("Transpose", &["p6"], &["pt"], vec![attrs::ints("perm", &[0, 2, 4, 1, 3, 5])])
        .node("Reshape", &["pt", "s2"], &["patches"], vec![])
        .node("MatMul", &["patches", "We"], &["tok"], vec![])
        .node("ReduceMean", &["tok"], &["cls"], vec![attrs::ints("axes", &[1]), attrs::int("keepdims", 1)])
        .node("Concat", &["cls", "tok"], &["seq"], vec![attrs::int("axis", 1)])
        .node("Transpose", &["seq"], &["seqT"], vec![attrs::ints("perm", &[0, 2, 1])])
        .node("MatMul", &["seq", "seqT"], &["logits_att"], vec![])
        .node("Softmax", &["logits_att"], &["att"], vec![attrs::int("axis", -1)])
        .node("MatMul", &["att", "seq"], &["mixed"], vec![])
        .node("Gather", &["mixed", "zero"], &["cls_out"], vec![attrs::int("axis", 1)])
        .node("MatMul", &["cls_out", "Wd"], &["y"], vec![])
        .output("y", &[-1, 5]);
    camscope::onnx::write_model(path, &t.build()).unwrap();
    write_card(path, 56);
}

#[test]
fn a_token_count_that_fits_several_grids_names_them_and_tokens_decides() {
    let path = tmp("ambiguous.onnx");
    ambiguous_transformer(&path);
    let model = path.to_string_lossy().into_owned();
    let err = one_line_error(&camscope(&["explain", "--model", &model, &input_image()]));
    assert!(err.contains("fits several grids (1+8x8, 16+7x7)") && err.contains("--tokens"), "{err}");
    let out = camscope(&["layers", "--model", &model, "--tokens", "1"]);
    let text = String::from_utf8_lossy(&out.stdout);
    let default = text.lines().find(|l| l.contains("<- default")).unwrap_or_else(|| panic!("{text}"));
    assert!(default.contains("seq") && default.contains("tokens 8x8 +1 first"), "{default}");
    let out = camscope(&["explain", "--model", &model, &input_image(), "--tokens", "16+7x7", "--json"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v[0]["map"].as_array().unwrap().len(), 7, "a 7x7 map");
    // The same through the card.
    let card = std::fs::read_to_string(path.with_extension("toml")).unwrap();
    std::fs::write(path.with_extension("toml"), format!("{card}\n[layer]\ntokens = \"1+8x8\"\n")).unwrap();
    let out = camscope(&["explain", "--model", &model, &input_image(), "--json"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v[0]["map"].as_array().unwrap().len(), 8, "an 8x8 map");
    // A token count that fits no grid at all is no map.
    let err = one_line_error(&camscope(&["explain", "--model", &model, &input_image(), "--tokens", "3+5x5"]));
    assert!(err.contains("no feature map"), "{err}");
}

#[test]
fn a_fifo_named_like_an_image_is_refused_at_once_not_waited_on() {
    let dir = tmp("fifo");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let fifo = dir.join("stuck.png");
    assert!(std::process::Command::new("mkfifo").arg(&fifo).status().unwrap().success());
    let t0 = std::time::Instant::now();
    let err = one_line_error(&camscope(&["explain", "--model", &conformance("vit_cls"), &fifo.to_string_lossy()]));
    assert!(err.contains("stuck.png") && err.contains("not a regular file"), "{err}");
    assert!(t0.elapsed() < std::time::Duration::from_secs(20), "took {:?}", t0.elapsed());
}

/// A model whose head weights are NaN: every score is NaN. It used to show `NaN%` for every
/// class, call class 0 the top-1 and blame the gradient for a blank map.
#[test]
fn a_model_that_outputs_nan_is_an_error_naming_the_model_and_what_was_not_finite() {
    let path = tmp("nan.onnx");
    let m = Tiny::new(17)
        .input("x", &[-1, 3, 16, 16])
        .init("W1", &[8, 3, 3, 3], &values(8 * 3 * 9, 1, 0.0))
        .init("Wd", &[8, 5], &[f32::NAN; 40])
        .node("Conv", &["x", "W1"], &["c1"], vec![attrs::ints("pads", &[1, 1, 1, 1])])
        .node("Relu", &["c1"], &["r1"], vec![])
        .node("GlobalAveragePool", &["r1"], &["p"], vec![])
        .node("Flatten", &["p"], &["f"], vec![attrs::int("axis", 1)])
        .node("MatMul", &["f", "Wd"], &["y"], vec![])
        .output("y", &[-1, 5])
        .build();
    camscope::onnx::write_model(&path, &m).unwrap();
    write_card(&path, 16);
    let model = path.to_string_lossy().into_owned();
    let img = input_image();
    let err = one_line_error(&camscope(&["explain", "--model", &model, &img]));
    assert!(err.contains("chelsea.png") && err.contains("nan.onnx"), "{err}");
    assert!(err.contains("non-finite") && err.contains("scores: 5 NaN of 5"), "{err}");
    assert!(!err.contains("NaN%") && !err.contains("zero everywhere"), "{err}");
    // batch: every image fails, so nothing is done (exit 1), the last line blames the model,
    // not the images, and the report says why.
    let data = tmp("nan-data");
    std::fs::create_dir_all(data.join("tabby")).unwrap();
    std::fs::copy(&img, data.join("tabby/chelsea.png")).unwrap();
    let out = tmp("nan-out");
    let r = camscope(&["batch", "--model", &model, data.to_str().unwrap(), "-o", out.to_str().unwrap()]);
    assert_eq!(r.status.code(), Some(1), "{}", String::from_utf8_lossy(&r.stderr));
    let last = String::from_utf8_lossy(&r.stderr).lines().last().unwrap_or_default().to_owned();
    assert!(last.contains("nan.onnx") && last.contains("every image (1)") && last.contains("not the images"), "{last}");
    let report: serde_json::Value = serde_json::from_slice(&std::fs::read(out.join("report.json")).unwrap()).unwrap();
    assert!(report["images"].as_array().unwrap().is_empty());
    assert!(report["unreadable"].as_array().unwrap().is_empty(), "{report}");
    assert!(report["nan_scores"][0]["error"].as_str().unwrap().contains("scores: 5 NaN of 5"), "{report}");
}

/// A model that scores an image NaN only when its mean pixel is below the card's mean:
/// `y = MatMul(GAP(Relu(Conv(x))), Wd) + Sqrt(mean(x))`.
fn nan_when_dark(path: &Path) {
    let m = Tiny::new(17)
        .input("x", &[-1, 3, 16, 16])
        .init("W1", &[8, 3, 3, 3], &values(8 * 3 * 9, 1, 0.0))
        .init("Wd", &[8, 5], &values(8 * 5, 2, 0.0))
        .node("Conv", &["x", "W1"], &["c1"], vec![attrs::ints("pads", &[1, 1, 1, 1])])
        .node("Relu", &["c1"], &["r1"], vec![])
        .node("GlobalAveragePool", &["r1"], &["p"], vec![])
        .node("Flatten", &["p"], &["f"], vec![attrs::int("axis", 1)])
        .node("MatMul", &["f", "Wd"], &["z"], vec![])
        .node("ReduceMean", &["x"], &["m"], vec![attrs::ints("axes", &[1, 2, 3])])
        .node("Flatten", &["m"], &["mf"], vec![attrs::int("axis", 1)])
        .node("Sqrt", &["mf"], &["s"], vec![])
        .node("Add", &["z", "s"], &["y"], vec![])
        .output("y", &[-1, 5])
        .build();
    camscope::onnx::write_model(path, &m).unwrap();
    write_card(path, 16);
}

/// A branch that feeds the image's own statistics to the score (`Sqrt(mean(x))` here) ends
/// in a Flatten of a 1x1 map after the feature pooling: taken for the last pooling, it used
/// to leave the model with no default layer and the error "no feature map to explain",
/// although `camscope layers` listed two maps.
#[test]
fn a_branch_of_image_statistics_does_not_hide_the_default_layer() {
    let model = tmp("stats-branch.onnx");
    nan_when_dark(&model);
    let out = camscope(&["layers", "--model", model.to_str().unwrap()]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let default: Vec<&str> = stdout.lines().filter(|l| l.contains("<- default")).collect();
    assert!(matches!(default.as_slice(), [l] if l.trim_start().starts_with("r1 ")), "{stdout}");
}

fn flat_png(path: &Path, level: u8) {
    image::RgbImage::from_pixel(16, 16, image::Rgb([level; 3])).save(path).unwrap();
}

fn json(path: &Path) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
}

/// Images a model scores NaN are not "unreadable" (their files are fine): triage and batch
/// list them apart, say "NaN scores", and exit 3 (partial) when other images were scored.
/// An unreadable file stays unreadable.
#[test]
fn nan_scores_are_told_apart_from_unreadable_files() {
    let model = tmp("nan-dark.onnx");
    nan_when_dark(&model);
    let data = tmp("nan-mixed");
    let _ = std::fs::remove_dir_all(&data);
    std::fs::create_dir_all(data.join("cat")).unwrap();
    flat_png(&data.join("cat/bright.png"), 250);
    flat_png(&data.join("cat/dark.png"), 5);
    let whole = std::fs::read(data.join("cat/bright.png")).unwrap();
    std::fs::write(data.join("cat/cut.png"), &whole[..whole.len() / 2]).unwrap();
    let (model, dir) = (model.to_str().unwrap(), data.to_str().unwrap());

    let out = tmp("nan-mixed-triage");
    let r = camscope(&["triage", dir, "--model", model, "--no-cache", "-o", out.to_str().unwrap()]);
    let (stdout, stderr) = (String::from_utf8_lossy(&r.stdout), String::from_utf8_lossy(&r.stderr));
    assert_eq!(r.status.code(), Some(3), "{stderr}");
    assert!(stderr.contains("dark.png: NaN scores") && stderr.contains("cut.png: unreadable"), "{stderr}");
    assert!(stdout.contains("1 images (") && stdout.contains("1 unreadable, 1 with NaN scores"), "{stdout}");
    let t = json(&out.join("triage.json"));
    assert_eq!(t["format_version"], 3);
    assert_eq!((&t["summary"]["unreadable"], &t["summary"]["nan_scores"]), (&1.into(), &1.into()));
    assert_eq!(t["unreadable"][0][0], "cat/cut.png");
    assert_eq!(t["nan_scores"][0][0], "cat/dark.png");
    assert!(t["nan_scores"][0][1].as_str().unwrap().contains("non-finite"), "{t}");
    let summary = std::fs::read_to_string(out.join("summary.txt")).unwrap();
    assert!(summary.contains("1 with NaN scores") && summary.contains("nan_scores"), "{summary}");

    let out = tmp("nan-mixed-batch");
    let r = camscope(&["batch", dir, "--model", model, "-o", out.to_str().unwrap()]);
    let stderr = String::from_utf8_lossy(&r.stderr);
    assert_eq!(r.status.code(), Some(3), "{stderr}");
    assert!(
        stderr.contains("1 unreadable images skipped: cat/cut.png; 1 images the model scored NaN: cat/dark.png"),
        "{stderr}"
    );
    let b = json(&out.join("report.json"));
    assert_eq!(b["images"][0]["file"], "cat/bright.png");
    assert_eq!(
        (&b["unreadable"][0]["file"], &b["nan_scores"][0]["file"]),
        (&"cat/cut.png".into(), &"cat/dark.png".into())
    );
    let csv = std::fs::read_to_string(out.join("report.csv")).unwrap();
    let rows: Vec<&str> = csv.lines().skip(1).collect();
    assert!(rows[1].starts_with("cat/cut.png,") && rows[1].contains("unreadable: "), "{csv}");
    assert!(rows[2].starts_with("cat/dark.png,") && rows[2].contains("NaN scores: "), "{csv}");

    // Shards and their merge keep the two lists apart (the shards split the three images).
    for (kind, file) in [("triage", "triage.json"), ("batch", "report.json")] {
        let shards: Vec<String> = (1..=3)
            .map(|k| {
                let o = tmp(&format!("nan-mixed-{kind}-{k}"));
                let (o, shard) = (o.to_str().unwrap().to_owned(), format!("{k}/3"));
                let mut a = vec![kind, dir, "--model", model, "-o", &o, "--shard", &shard];
                if kind == "triage" {
                    a.push("--no-cache");
                }
                let r = camscope(&a);
                assert!(matches!(r.status.code(), Some(0 | 1 | 3)), "{}", String::from_utf8_lossy(&r.stderr));
                o
            })
            .collect();
        let merged = tmp(&format!("nan-mixed-{kind}-merged"));
        let mut a = vec!["merge", "-o", merged.to_str().unwrap()];
        a.extend(shards.iter().map(String::as_str));
        let r = camscope(&a);
        assert_eq!(r.status.code(), Some(3), "{}", String::from_utf8_lossy(&r.stderr));
        let m = json(&merged.join(file));
        let first = |k: &str| if kind == "triage" { m[k][0][0].clone() } else { m[k][0]["file"].clone() };
        assert_eq!((first("unreadable"), first("nan_scores")), ("cat/cut.png".into(), "cat/dark.png".into()), "{m}");
    }
}

/// A model that scores every image NaN is named as the cause at once, not after the whole
/// dataset: a warning once the first 32 images are all NaN, and an error at the end.
#[test]
fn a_model_that_scores_every_image_nan_is_blamed_early_and_at_the_end() {
    let model = tmp("nan-dark-all.onnx");
    nan_when_dark(&model);
    let data = tmp("nan-all");
    let _ = std::fs::remove_dir_all(&data);
    std::fs::create_dir_all(data.join("night")).unwrap();
    for i in 0..40 {
        flat_png(&data.join(format!("night/{i:02}.png")), i as u8);
    }
    let out = tmp("nan-all-triage");
    let (model, dir) = (model.to_str().unwrap(), data.to_str().unwrap());
    let r = camscope(&["triage", dir, "--model", model, "--no-cache", "-o", out.to_str().unwrap()]);
    let stderr = String::from_utf8_lossy(&r.stderr);
    assert_eq!(r.status.code(), Some(1), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    let warning = stderr.lines().position(|l| l.contains("warning: ") && l.contains("each of the first 32 images"));
    let w = warning.unwrap_or_else(|| panic!("no early warning: {stderr}"));
    assert_eq!(stderr.matches("each of the first 32").count(), 1, "{stderr}");
    let lines: Vec<&str> = stderr.lines().collect();
    let last = lines.iter().rposition(|l| l.contains("every image (40)") && l.contains("nan-dark-all.onnx"));
    assert!(last.is_some_and(|l| l > w), "{stderr}");
    assert_eq!(json(&out.join("triage.json"))["nan_scores"].as_array().unwrap().len(), 40);
}

/// A FIFO given as the model or as triage's labels CSV used to block the read forever.
#[test]
fn a_fifo_as_the_model_or_the_labels_csv_is_refused_at_once() {
    let dir = tmp("fifo-inputs");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let (model, csv) = (dir.join("model.onnx"), dir.join("labels.csv"));
    for f in [&model, &csv] {
        assert!(std::process::Command::new("mkfifo").arg(f).status().unwrap().success());
    }
    let t0 = std::time::Instant::now();
    let err = one_line_error(&camscope(&["explain", "--model", &model.to_string_lossy(), &input_image()]));
    assert!(err.contains("model.onnx") && err.contains("not a regular file") && err.contains("--model"), "{err}");
    let out = dir.join("out");
    let err = one_line_error(&camscope(&[
        "triage",
        "samples",
        "--labels",
        &csv.to_string_lossy(),
        "-o",
        &out.to_string_lossy(),
    ]));
    assert!(err.contains("labels.csv") && err.contains("not a regular file"), "{err}");
    assert!(t0.elapsed() < std::time::Duration::from_secs(30), "took {:?}", t0.elapsed());
}

/// The graph alone shows a blocker only when every path to the score goes through it and
/// nothing after it can be a feature map; otherwise it stays silent and the measured
/// analysis decides (see `grad::blocker`).
#[test]
fn the_static_blocker_speaks_only_when_the_graph_proves_it() {
    use camscope::grad::{Analysis, MapLayout};
    let blocker = |m: camscope::onnx::ModelProto| {
        Analysis::new(m, "x", "y", MapLayout::Nchw).unwrap().static_blocker().map(|e| e.to_string())
    };
    let load = |p: &Path| camscope::onnx::read_model(p).unwrap();
    // In the head (after Flatten, before the classifier's MatMul): proven.
    let head = tmp("static-head.onnx");
    cnn_with("LpNormalization", true, &head);
    let msg = blocker(load(&head)).expect("a head op blocks every layer");
    assert!(msg.contains("LpNormalization node `LpNormalization_6`"), "{msg}");
    assert!(msg.contains("--method eigencam"), "{msg}");
    // Between two convolutions: the maps after it can be explained, so no claim.
    let mid = tmp("static-mid.onnx");
    cnn_with("LpNormalization", false, &mid);
    assert_eq!(blocker(load(&mid)), None);
    // Every op has a rule: nothing to say.
    let plain = tmp("static-plain.onnx");
    cnn_with("Relu", true, &plain);
    assert_eq!(blocker(load(&plain)), None);
    // On a side branch only (another path reaches the score without it): no claim.
    let (w, wd) = (values(4 * 3, 1, 0.0), values(4 * 5, 2, 0.0));
    let side = Tiny::new(17)
        .input("x", &[-1, 3])
        .init("W", &[3, 4], &w)
        .init("Wd", &[4, 5], &wd)
        .node("MatMul", &["x", "W"], &["h"], vec![])
        .node("LpNormalization", &["h"], &["n"], vec![attrs::int("axis", 1)])
        .node("Add", &["h", "n"], &["s"], vec![])
        .node("MatMul", &["s", "Wd"], &["y"], vec![])
        .output("y", &[-1, 5])
        .build();
    assert_eq!(blocker(side), None);
    // Tokens after it ([N, T, C] into a MatMul and a mean over T): a map may follow, no claim.
    let (wt, wc) = (values(8 * 8, 3, 0.0), values(8 * 5, 4, 0.0));
    let tokens = Tiny::new(17)
        .input("x", &[-1, 10, 8])
        .init("Wt", &[8, 8], &wt)
        .init("Wc", &[8, 5], &wc)
        .node("LpNormalization", &["x"], &["n"], vec![attrs::int("axis", -1)])
        .node("MatMul", &["n", "Wt"], &["t"], vec![])
        .node("ReduceMean", &["t"], &["m"], vec![attrs::ints("axes", &[1]), attrs::int("keepdims", 0)])
        .node("MatMul", &["m", "Wc"], &["y"], vec![])
        .output("y", &[-1, 5])
        .build();
    assert_eq!(blocker(tokens), None);
}

/// `explain` with a gradient method reports a blocking head op before the model runs: in a
/// model whose run fails (a Reshape to the wrong element count, so measuring shapes would
/// fail), the blocker's message comes first; Eigen-CAM does not ask and meets the failure.
#[test]
fn a_head_op_without_a_rule_is_reported_before_the_model_runs() {
    let path = tmp("early-head.onnx");
    let w1 = values(8 * 3 * 9, 1, 0.0);
    let wd = values(8 * 5, 3, 0.0);
    let m = Tiny::new(17)
        .input("x", &[-1, 3, 16, 16])
        .init("W1", &[8, 3, 3, 3], &w1)
        .init("Wd", &[8, 5], &wd)
        .init_i64("bad", &[4], &[-1, 8, 15, 15])
        .node("Conv", &["x", "W1"], &["c1"], vec![attrs::ints("pads", &[1, 1, 1, 1])])
        .node("Reshape", &["c1", "bad"], &["r"], vec![])
        .node("GlobalAveragePool", &["r"], &["p"], vec![])
        .node("Flatten", &["p"], &["f"], vec![attrs::int("axis", 1)])
        .node("LpNormalization", &["f"], &["g"], vec![attrs::int("axis", 1)])
        .node("MatMul", &["g", "Wd"], &["y"], vec![])
        .output("y", &[-1, 5])
        .build();
    camscope::onnx::write_model(&path, &m).unwrap();
    write_card(&path, 16);
    let model = path.to_string_lossy().into_owned();
    let img = input_image();
    let early = one_line_error(&camscope(&["explain", "--model", &model, &img]));
    assert!(early.contains("cannot differentiate LpNormalization node `LpNormalization_4`"), "{early}");
    assert!(early.contains("no layer after that node can be explained"), "{early}");
    let later = one_line_error(&camscope(&["explain", "--model", &model, &img, "--method", "eigencam"]));
    assert!(!later.contains("cannot differentiate"), "{later}");
}
