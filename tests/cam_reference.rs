//! camscope's CAM methods against the peer, pytorch-grad-cam 1.5.7, on the bundled EfficientNet-Lite0.
//!
//! The reference arrays come from `scripts/reference_cams.py` (see its header): the peer's own activations `A` and
//! gradients `G` at the head feature map (`/_swish_1/Clip_output_0`, [1280, 7, 7]) for two photos, and the maps it
//! computed from them at feature resolution. Feeding the peer's `A` and `G` to camscope's pure methods isolates the
//! method math from the gradient graph (the engine's end-to-end comparison uses the same maps).
//! Run with `--nocapture` to see the measured differences.

mod common;

use std::path::{Path, PathBuf};

use camscope::cam::{self, Method, RawMap, ablation, eigen, score};
use ndarray::{Array1, Array2, Array3, ArrayD, Ix1, Ix2, Ix3};
use serde::Deserialize;

/// Max abs difference allowed between normalised 7x7 maps (issue 4).
const MAP_TOLERANCE: f32 = 1e-4;

#[derive(Deserialize)]
struct Index {
    image: Vec<ImageEntry>,
    map: Vec<MapEntry>,
    activations: Vec<ActivationEntry>,
    scorecam: ScoreCamEntry,
    ablationcam: AblationCamEntry,
}

#[derive(Deserialize)]
struct ImageEntry {
    name: String,
    top: Vec<usize>,
}

#[derive(Deserialize)]
struct MapEntry {
    image: String,
    class: usize,
    method: String,
    file: String,
}

#[derive(Deserialize)]
struct ActivationEntry {
    image: String,
    class: usize,
    activations: String,
    gradients: String,
    eigen_projection: String,
}

#[derive(Deserialize)]
struct ScoreCamEntry {
    image: String,
    class: usize,
    size: [usize; 2],
    scores: String,
    weights: String,
    map: String,
    mask_channel: usize,
    mask: String,
}

#[derive(Deserialize)]
struct AblationCamEntry {
    image: String,
    class: usize,
    original_score: f32,
    scores: String,
    weights: String,
    map: String,
}

fn dir() -> PathBuf {
    common::data("reference")
}

fn index() -> Index {
    let path = dir().join("index.toml");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    toml::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn npy(rel: &str) -> ArrayD<f32> {
    let path: &Path = &dir().join(rel);
    let (shape, data) = common::read_npy_f32(path);
    ArrayD::from_shape_vec(shape, data).expect("shape matches data")
}

fn npy3(rel: &str) -> Array3<f32> {
    npy(rel).into_dimensionality::<Ix3>().expect("3-D array")
}

fn npy2(rel: &str) -> Array2<f32> {
    npy(rel).into_dimensionality::<Ix2>().expect("2-D array")
}

fn npy1(rel: &str) -> Array1<f32> {
    npy(rel).into_dimensionality::<Ix1>().expect("1-D array")
}

fn max_abs_diff(a: &Array2<f32>, b: &Array2<f32>) -> f32 {
    common::max_abs_diff("camscope vs peer", a, b)
}

/// The peer's pipeline after its ReLU at feature resolution: `scale_cam_image` per layer, then again in
/// `aggregate_multi_layers`.
fn peer_normalized(raw: &RawMap) -> Array2<f32> {
    cam::scale_like_peer(cam::scale_like_peer(raw.map.view()).view())
}

fn peer_map(index: &Index, image: &str, class: usize, method: &str) -> Array2<f32> {
    let entry = index
        .map
        .iter()
        .find(|m| m.image == image && m.class == class && m.method == method)
        .unwrap_or_else(|| panic!("no reference map for {image} class {class} {method}"));
    npy2(&entry.file)
}

#[test]
fn reference_index_covers_every_photo_two_classes_and_six_methods() {
    let index = index();
    assert_eq!(index.image.len(), 9, "nine sample photos");
    for image in &index.image {
        assert_eq!(image.top.len(), 2);
        for &class in &image.top {
            for method in ["gradcam", "gradcam++", "xgradcam", "hirescam", "layercam", "eigencam"] {
                let m = peer_map(&index, &image.name, class, method);
                assert_eq!(m.dim(), (7, 7));
                assert!(m.iter().all(|v| (0.0..=1.0).contains(v)), "{} {class} {method}", image.name);
                // Every method's name in the index is a camscope method name.
                assert!(method.parse::<Method>().is_ok());
            }
        }
    }
}

#[test]
fn gradient_methods_match_the_peer_on_its_own_activations_and_gradients() {
    let index = index();
    assert_eq!(index.activations.len(), 2);
    for entry in &index.activations {
        let a = npy3(&entry.activations);
        let g = npy3(&entry.gradients);
        assert_eq!(a.dim(), (1280, 7, 7));
        for method in [Method::GradCam, Method::GradCamPlusPlus, Method::XGradCam, Method::HiResCam, Method::LayerCam] {
            let want = peer_map(&index, &entry.image, entry.class, method.name());
            let raw = cam::compute(method, a.view(), Some(g.view())).unwrap();
            let ours = raw.normalize();
            assert_eq!(ours.status, cam::MapStatus::Ok, "{method} on {}", entry.image);
            let exact = max_abs_diff(&ours.map, &want);
            let peer_style = max_abs_diff(&peer_normalized(&raw), &want);
            println!(
                "{:8} class {:4} {:10} max |camscope - peer| = {exact:.2e} (peer's normalisation: {peer_style:.2e}); \
                 raw range [{:.4}, {:.4}]",
                entry.image, entry.class, method, ours.raw_min, ours.raw_max
            );
            assert!(exact <= MAP_TOLERANCE, "{method} on {}: {exact} > {MAP_TOLERANCE}", entry.image);
            assert!(peer_style <= MAP_TOLERANCE, "{method} on {}: {peer_style}", entry.image);
        }
    }
}

#[test]
fn eigen_cam_matches_the_peer_up_to_the_arbitrary_sign() {
    let index = index();
    for entry in &index.activations {
        let a = npy3(&entry.activations);
        let peer_projection = npy2(&entry.eigen_projection);
        let ours = eigen::eigen_projection(a.view());
        let scale = common::max_abs("peer projection", &peer_projection);
        let same = max_abs_diff(&ours, &peer_projection) / scale;
        let flipped = max_abs_diff(&ours.mapv(|v| -v), &peer_projection) / scale;
        let agrees = same < flipped;
        let projection_diff = same.min(flipped);
        // The map the peer would have drawn with camscope's sign.
        let aligned = if agrees { ours.clone() } else { ours.mapv(|v| -v) };
        let want = peer_map(&index, &entry.image, entry.class, "eigencam");
        let map_diff = max_abs_diff(&RawMap::from_pre_relu(aligned).normalize().map, &want);
        println!(
            "{:8} eigencam: projection max rel diff {projection_diff:.2e}, map max abs diff {map_diff:.2e}; \
             camscope's sign {} LAPACK's",
            entry.image,
            if agrees { "equals" } else { "is opposite to" }
        );
        assert!(projection_diff <= 1e-4, "{}: projection differs by {projection_diff} (relative)", entry.image);
        assert!(map_diff <= MAP_TOLERANCE, "{}: {map_diff}", entry.image);
        // Eigen-CAM ignores the class: the peer's maps for both classes are the same.
        let image = index.image.iter().find(|i| i.name == entry.image).unwrap();
        assert_eq!(
            peer_map(&index, &image.name, image.top[0], "eigencam"),
            peer_map(&index, &image.name, image.top[1], "eigencam")
        );
    }
}

#[test]
fn score_cam_pieces_match_the_peer() {
    let index = index();
    let s = &index.scorecam;
    let act = index.activations.iter().find(|e| e.image == s.image && e.class == s.class).expect("A of that photo");
    let a = npy3(&act.activations);
    // Masks: align_corners upsampling to 224x224 and min-max scaling, as the peer's masked inputs used them.
    let want_mask = npy2(&s.mask);
    let mask = score::mask(a.index_axis(ndarray::Axis(0), s.mask_channel), s.size[0], s.size[1]);
    let mask_diff = max_abs_diff(&mask, &want_mask);
    // Weights: softmax over channels of the peer's per-channel scores.
    let scores = npy1(&s.scores);
    let weights = score::weights(scores.as_slice().unwrap());
    let want_weights = npy1(&s.weights);
    let weight_diff = common::max_abs_diff("Score-CAM weights", &weights, &want_weights);
    let weight_scale = common::max_abs("Score-CAM weights", &want_weights);
    // The map from the peer's A and scores.
    let map = score::score_cam(a.view(), scores.as_slice().unwrap()).unwrap().normalize();
    let map_diff = max_abs_diff(&map.map, &npy2(&s.map));
    println!(
        "scorecam {} class {}: mask (channel {}) {mask_diff:.2e}, weights {weight_diff:.2e} (largest {weight_scale:.2e}), \
         map {map_diff:.2e}",
        s.image, s.class, s.mask_channel
    );
    assert!(mask_diff <= 1e-6, "mask differs by {mask_diff}");
    assert!(weight_diff <= 1e-5 * weight_scale, "weights differ by {weight_diff}");
    assert!(map_diff <= MAP_TOLERANCE, "map differs by {map_diff}");
}

#[test]
fn ablation_cam_pieces_match_the_peer() {
    let index = index();
    let s = &index.ablationcam;
    let act = index.activations.iter().find(|e| e.image == s.image && e.class == s.class).expect("A of that photo");
    let a = npy3(&act.activations);
    // The head activations are post-ReLU6 with exact zeros, so the peer's AblationLayer zeroes channels.
    assert_eq!(ablation::ablation_value(a.view()), 0.0);
    let scores = npy1(&s.scores);
    let weights = ablation::weights(s.original_score, scores.as_slice().unwrap()).unwrap();
    let want_weights = npy1(&s.weights);
    let weight_diff = common::max_abs_diff("Ablation-CAM weights", &weights, &want_weights);
    let map = ablation::ablation_cam(a.view(), s.original_score, scores.as_slice().unwrap()).unwrap().normalize();
    let map_diff = max_abs_diff(&map.map, &npy2(&s.map));
    println!("ablationcam {} class {}: weights {weight_diff:.2e}, map {map_diff:.2e}", s.image, s.class);
    assert!(weight_diff <= 1e-6, "weights differ by {weight_diff}");
    assert!(map_diff <= MAP_TOLERANCE, "map differs by {map_diff}");
}
