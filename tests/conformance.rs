//! The conformance suite: small random-weight classifiers of many families (timm and
//! torchvision ViT, DeiT, register tokens, pooled tokens, EVA, Swin, MaxViT, ResNet,
//! MobileNetV3, EfficientNet, DenseNet, ConvNeXt, multi-label, binary and LogSoftmax heads,
//! Keras through tf2onnx), exported by `scripts/conformance.py` and
//! `scripts/conformance_keras.py` together with reference maps from independent
//! implementations (pytorch-grad-cam 1.5.7 with its documented reshape_transform for the
//! transformers; the keras.io GradientTape formula for Keras). camscope gets no hint: no
//! layout, no token count, no reshape code; it reads them from the graph.
//!
//! For every model: the layout and grid camscope reads at the reference layer, its default
//! layer, the model's scores, and every reference map (≤ 1e-4 after ReLU and the
//! reference's own normalisation).

mod common;

use std::path::PathBuf;

use camscope::cam::{Method, normalize::scale_like_peer};
use camscope::engine::{Device, Engine, EngineConfig, LoadedModel, Seed, SessionOptions};
use camscope::grad::MapLayout;
use ndarray::{ArrayD, Ix2, Ix4};
use serde::Deserialize;

const MAP_TOLERANCE: f32 = 1e-4;

#[derive(Deserialize)]
struct Index {
    model: Vec<Model>,
}

#[derive(Deserialize)]
struct Model {
    name: String,
    head: Option<String>,
    layer: Option<String>,
    layout: Option<String>,
    #[serde(default)]
    extra_tokens: Vec<usize>,
    grid: Option<[usize; 2]>,
    top1: Option<usize>,
    logits: Option<Vec<f32>>,
    #[serde(default)]
    map: Vec<MapEntry>,
    export_error: Option<String>,
    skipped: Option<String>,
}

#[derive(Deserialize)]
struct MapEntry {
    method: String,
    class: usize,
    target: String,
    file: String,
    projection_file: Option<String>,
    normalisation: String,
}

fn dir() -> PathBuf {
    common::data("conformance")
}

fn index() -> Index {
    toml::from_str(&std::fs::read_to_string(dir().join("index.toml")).unwrap()).unwrap()
}

fn npy(name: &str) -> ArrayD<f32> {
    let (shape, data) = common::read_npy_f32(&dir().join(name));
    ArrayD::from_shape_vec(shape, data).unwrap()
}

/// The default layer where it is not the layer the reference maps were made at, and why.
/// Everywhere else camscope's default must be the reference layer itself.
const DEFAULTS: &[(&str, &str, &str)] = &[
    // Pooled-token transformers: the map the pooling reads, as for a CNN (the last block's
    // norm1 is only the usual choice because a class-token head hides later layers).
    ("vit_gap", "/blocks/blocks.1/Add_1_output_0", "mean over tokens: the last map before pooling"),
    ("eva", "/Slice_output_0", "mean over the patch tokens (x[:, 1:].mean(1)): the map the pooling reads"),
    // Swin: the last spatial map before pooling (issue 10), not the last block's norm1.
    ("swin", "/permute/Transpose_output_0", "the final norm, permuted to NCHW for pooling"),
    ("timm_swin", "/norm/LayerNormalization_output_0", "the final norm, pooled by ReduceMean over H, W"),
    // torchvision's DenseNet applies ReLU after norm5 before pooling; the documented layer
    // `features[-1]` (norm5) is overwritten in place by that ReLU in torch, so the peer
    // really uses relu(norm5) too: the default is that ReLU.
    ("densenet", "/Relu_output_0", "relu(norm5) feeds the pooling"),
    ("multilabel_densenet", "/Relu_output_0", "relu(norm5) feeds the pooling"),
    // No global pooling: MaxPool then Flatten into the dense layer.
    ("logsoftmax", "/pool/MaxPool_output_0", "the map Flatten reads"),
];

fn cpu() -> SessionOptions {
    SessionOptions { device: Device::Cpu, threads: Some(2), ..SessionOptions::default() }
}

/// The class a reference map's target means, in camscope's classes: a binary head shows
/// its complement as class 0 and the positive class (the model's one output) as class 1.
fn seed_for(head: &str, m: &MapEntry) -> Option<Seed> {
    match (head, m.target.as_str()) {
        (_, "log-probability") => None, // camscope differentiates logits or probabilities
        ("binary", "negated-logit") => Some(Seed::Class(0)),
        ("binary" | "binary-sigmoid", _) => Some(Seed::Class(1)),
        _ => Some(Seed::Class(m.class)),
    }
}

fn layout_kind(l: MapLayout) -> (&'static str, usize, Option<[usize; 2]>) {
    match l {
        MapLayout::Nchw => ("NCHW", 0, None),
        MapLayout::Nhwc => ("NHWC", 0, None),
        MapLayout::Tokens { prefix, suffix, h, w } => ("tokens", prefix + suffix, Some([h, w])),
    }
}

#[test]
fn every_family_matches_its_reference_with_no_user_code() {
    let idx = index();
    let mut checked_maps = 0;
    let mut worst: Vec<(String, f32)> = Vec::new();
    let mut models = 0;
    for m in &idx.model {
        if m.export_error.is_some() || m.skipped.is_some() {
            continue;
        }
        models += 1;
        let name = &m.name;
        let path = dir().join(format!("{name}.onnx"));
        let layer = m.layer.clone().unwrap();
        let loaded = LoadedModel::open_checked(&path, None, &cpu(), true).unwrap_or_else(|e| panic!("{name}: {e}"));
        // Every family differentiates, so the graph-only blocker check must stay silent.
        assert!(loaded.analysis.static_blocker().is_none(), "{name}: a false static blocker");
        // The layout and grid at the reference layer, read from the graph.
        let cands = loaded.analysis.candidates();
        let cand =
            cands.iter().find(|c| c.tensor == layer).unwrap_or_else(|| panic!("{name}: {layer} is no candidate"));
        let (kind, extra, grid) = layout_kind(cand.layout);
        assert_eq!(Some(kind), m.layout.as_deref(), "{name}: layout of {layer}");
        assert_eq!(extra, m.extra_tokens.len(), "{name}: extra tokens");
        if kind == "tokens" {
            assert_eq!(grid, m.grid, "{name}: token grid");
            let prefix = match cand.layout {
                MapLayout::Tokens { prefix, .. } => prefix,
                _ => unreachable!(),
            };
            assert!(m.extra_tokens.iter().all(|&t| t < prefix), "{name}: extra tokens {:?} come first", m.extra_tokens);
        }
        // The default layer.
        let default = cands.iter().find(|c| c.is_default).unwrap_or_else(|| panic!("{name}: no default"));
        let want = DEFAULTS.iter().find(|d| d.0 == name).map_or(layer.as_str(), |d| d.1);
        assert_eq!(default.tensor, want, "{name}: default layer");

        // Scores and maps at the reference layer.
        let head = m.head.clone().unwrap_or_default();
        let head = if head == "sigmoid" && loaded.classes == 1 { "binary-sigmoid".to_owned() } else { head };
        let config = EngineConfig { layer: Some(layer.clone()), session: cpu(), ..EngineConfig::default() };
        let mut engine = Engine::from_model(loaded, config).unwrap_or_else(|e| panic!("{name}: {e}"));
        let input = npy(&format!("{name}_input.npy")).into_dimensionality::<Ix4>().unwrap();
        let image = engine.body_batch(input.view()).unwrap_or_else(|e| panic!("{name}: {e}")).remove(0);
        if let (Some(want), Some(got)) = (&m.logits, &image.scores.logits) {
            if head == "softmax" {
                let d = common::max_abs_diff(&format!("{name} logits"), got, want);
                assert!(d < 1e-4, "{name}: logits differ by {d}");
            }
        }
        if let (Some(top1), "softmax" | "probabilities" | "logsoftmax" | "sigmoid") = (m.top1, head.as_str()) {
            let best = image.scores.probabilities.iter().enumerate().max_by(|a, b| a.1.total_cmp(b.1)).unwrap().0;
            assert_eq!(best, top1, "{name}: top-1");
        }
        for r in &m.map {
            let Some(seed) = seed_for(&head, r) else { continue };
            let method: Method = r.method.parse().unwrap();
            let out = engine.map(&image, method, &seed).unwrap_or_else(|e| panic!("{name} {}: {e}", r.method));
            let raw = &out.raw.map;
            let got = if r.normalisation.starts_with("relu / max") {
                common::max_abs(&format!("{name} {} raw map", r.method), raw); // finite, not empty
                let max = raw.iter().copied().fold(0.0f32, f32::max);
                raw.mapv(|v| v.max(0.0) / max)
            } else {
                scale_like_peer(scale_like_peer(raw.view()).view())
            };
            let mut want = npy(&r.file).into_dimensionality::<Ix2>().unwrap();
            if let (Method::EigenCam, Some(p)) = (method, &r.projection_file) {
                // The sign of a principal component is arbitrary; camscope orients it along
                // the mean activation, the peer as its SVD happens to. Take the peer's
                // projection with the sign camscope chose.
                let proj = npy(p).into_dimensionality::<Ix2>().unwrap();
                let ours = camscope::cam::eigen::eigen_projection(
                    engine
                        .model()
                        .analysis
                        .candidates()
                        .iter()
                        .find(|c| c.tensor == layer)
                        .map_or_else(|| unreachable!(), |c| c.layout.to_chw(image.activation.view(), 0).unwrap())
                        .view(),
                );
                let agree: f32 = ours.iter().zip(proj.iter()).map(|(a, b)| a * b).sum();
                let oriented = if agree < 0.0 { proj.mapv(|v| -v) } else { proj };
                want = scale_like_peer(scale_like_peer(oriented.mapv(|v| v.max(0.0)).view()).view());
            }
            let what = format!("{name} {} class {} ({})", r.method, r.class, r.target);
            let d = common::max_abs_diff(&what, &got, &want);
            checked_maps += 1;
            worst.push((what, d));
        }
    }
    worst.sort_by(|a, b| b.1.total_cmp(&a.1));
    eprintln!("{models} models, {checked_maps} maps; largest differences: {:?}", &worst[..worst.len().min(6)]);
    assert!(models >= 20, "the index lists {models} models");
    assert!(checked_maps >= 80, "{checked_maps} maps checked");
    assert!(worst[0].1 <= MAP_TOLERANCE, "{:?}", &worst[..worst.len().min(6)]);
}
