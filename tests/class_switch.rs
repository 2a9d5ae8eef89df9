//! Issue 10's class switch: the inspector computes the shown image's other top classes in
//! the background (`Engine::warm`), so a switch among them costs only the map. Warmed maps
//! must equal cold ones (to float rounding: Grad-CAM's channel means may be taken in the
//! graph or on the host), the cache must follow the image, the layer and the score kind, and
//! a budget of 0 turns it off.

mod common;

use camscope::cam::Method;
use camscope::engine::{Engine, EngineConfig, Seed};
use camscope::grad::ScoreKind;

fn engine(cache_bytes: usize) -> Engine {
    Engine::open(&common::bundled_model(), None, EngineConfig { cache_bytes, ..EngineConfig::default() }).unwrap()
}

#[test]
fn warmed_classes_give_the_same_maps_and_the_cache_follows_its_keys() {
    let img = common::sample("tabby/chelsea.png");
    let mut cold = engine(0);
    let l = cold.load(&img).unwrap();
    let top5 = l.scores.top_k_indices(5);
    let want: Vec<_> =
        top5.iter().map(|&c| cold.map(&l, Method::GradCam, &Seed::Class(c)).unwrap().normalized.map).collect();
    assert_eq!(cold.warm(&l, &top5, Method::GradCam).unwrap(), 0, "a budget of 0 caches nothing");

    let mut warm = engine(EngineConfig::default().cache_bytes);
    let l = warm.load(&img).unwrap();
    assert_eq!(warm.warm(&l, &top5, Method::GradCam).unwrap(), 5);
    assert_eq!(warm.warm(&l, &top5, Method::GradCam).unwrap(), 0, "already warm");
    for (&c, want) in top5.iter().zip(&want) {
        let got = warm.map(&l, Method::GradCam, &Seed::Class(c)).unwrap();
        // The cold map's weights are means taken in the graph (`grad::pool`), the warmed one's
        // on the host from the cached gradient: equal to float rounding.
        let d = common::max_abs_diff(&format!("class {c}"), &got.normalized.map, want);
        assert!(d <= 1e-5, "class {c}: a warmed map equals a cold one (off by {d})");
        assert!(got.timings.head_ms < 5.0, "class {c}: the head came from the cache ({} ms)", got.timings.head_ms);
    }
    // Grad-CAM's warmed results are its channel weights: another gradient method needs the
    // gradient itself, and then Grad-CAM reads that.
    assert_eq!(warm.warm(&l, &top5, Method::HiResCam).unwrap(), 5, "HiResCAM reads the whole gradient");
    assert_eq!(warm.warm(&l, &top5, Method::HiResCam).unwrap(), 0, "already warm for HiResCAM");
    assert_eq!(warm.warm(&l, &top5, Method::GradCam).unwrap(), 0, "Grad-CAM reads a whole gradient too");
    // Another image, another score kind or another layer: computed again.
    let other = warm.load(&common::sample("espresso/coffee.png")).unwrap();
    assert_eq!(warm.warm(&other, &top5[..1], Method::GradCam).unwrap(), 1);
    warm.set_score(ScoreKind::Prob).unwrap();
    assert_eq!(warm.warm(&l, &top5, Method::GradCam).unwrap(), 5, "the score kind changes every gradient");
    let layer = warm.model().analysis.candidates()[0].tensor.clone();
    warm.set_layer(Some(&layer)).unwrap();
    let l = warm.load(&img).unwrap();
    assert_eq!(warm.warm(&l, &top5, Method::GradCam).unwrap(), 5, "another layer changes every gradient");
}

/// A class switch outside the warmed classes runs only the head's backward: the head is cut
/// where the seed enters (`Plan::head_split`), its forward and every backward op that reads
/// forward values alone run once per image. On every family of the conformance suite, for
/// logits and probabilities, the two parts must compute what the whole head computes, and on
/// the transformers the part a class switch runs must be the smaller one.
#[test]
fn the_split_head_computes_what_the_whole_head_computes_on_every_family() {
    use camscope::engine::{Device, GraphSession, LoadedModel, SessionOptions};
    use ndarray::{Array2, ArrayD, ArrayViewD};

    let dir = common::data("conformance");
    let opts = SessionOptions { device: Device::Cpu, threads: Some(2), ..SessionOptions::default() };
    let mut names: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .filter_map(|e| e.unwrap().file_name().to_str()?.strip_suffix(".onnx").map(str::to_owned))
        .collect();
    names.sort();
    assert!(names.len() >= 20, "the conformance models are there: {names:?}");
    let mut smaller = Vec::new();
    for name in &names {
        let path = dir.join(format!("{name}.onnx"));
        let loaded = LoadedModel::open_checked(&path, None, &opts, true).unwrap_or_else(|e| panic!("{name}: {e}"));
        let target = loaded.analysis.resolve_layer(None).unwrap();
        let (shape, data) = common::read_npy_f32(&dir.join(format!("{name}_input.npy")));
        let input = ArrayD::from_shape_vec(shape, data).unwrap().into_dimensionality::<ndarray::Ix4>().unwrap();
        for kind in [ScoreKind::Logit, ScoreKind::Prob] {
            let config = EngineConfig { session: opts.clone(), score: kind, ..EngineConfig::default() };
            let mut engine = Engine::from_model(loaded.clone(), config).unwrap();
            let image = engine.body_batch(input.view()).unwrap().remove(0);
            let plan = loaded.analysis.plan_for_sessions(&target, kind, false).unwrap();
            let split = plan.head_split().unwrap_or_else(|| panic!("{name} ({kind}): the head was not split"));
            let names = &plan.names;
            // A seed mixing two classes, as a contrast does.
            let mut seed = Array2::<f32>::zeros((1, plan.classes));
            seed[[0, 0]] = 1.0;
            seed[[0, plan.classes - 1]] -= 0.5;
            let mut fed: Vec<(&str, ArrayViewD<'_, f32>)> = vec![(names.activation.as_str(), image.activation.view())];
            fed.extend(names.side.iter().map(String::as_str).zip(image.side.iter().map(|s| s.view())));

            let mut whole = GraphSession::from_model(&plan.head(), &path, &opts).unwrap();
            let mut with_seed = fed.clone();
            with_seed.push((names.seed.as_str(), seed.view().into_dyn()));
            let want = whole.run(&with_seed, &[names.score.as_str(), names.gradient.as_str()]).unwrap();

            // An image's first class: the whole head, also giving the tape.
            let tape: Vec<&str> = split.tape.iter().map(String::as_str).collect();
            let mut taped = GraphSession::from_model(&split.whole, &path, &opts).unwrap();
            let wanted = [names.score.as_str(), names.gradient.as_str()];
            let (first, values) = taped.run_keeping(&with_seed, &[], &wanted, &tape).unwrap();
            // The same graph with extra outputs: ONNX Runtime may fuse differently around a
            // kept value, so the last bits may differ.
            for (got, w) in first.iter().zip(&want) {
                let what = format!("{name} ({kind}): the whole head with its tape");
                let d = common::max_abs_diff(&what, got, w);
                assert!(d <= 1e-6 * common::max_abs(&what, w).max(1e-30), "{what} computes the same (off by {d})");
            }
            // Scores alone (Ablation-CAM): the forward part.
            let mut forward = GraphSession::from_model(&split.forward, &path, &opts).unwrap();
            let (scores, _) = forward.run_keeping(&fed, &[], &[names.score.as_str()], &[]).unwrap();
            let mut backward = GraphSession::from_model(&split.backward, &path, &opts).unwrap();
            let declared: Vec<String> =
                split.backward.graph.as_ref().unwrap().input.iter().filter_map(|v| v.name.clone()).collect();
            let mut feeds: Vec<(&str, ArrayViewD<'_, f32>)> =
                with_seed.iter().filter(|(n, _)| declared.iter().any(|d| d == n)).cloned().collect();
            feeds.retain(|(n, _)| !tape.contains(n));
            let values: Vec<(&str, &_)> = tape.iter().copied().zip(values.iter()).collect();
            let (grad, _) = backward.run_keeping(&feeds, &values, &[names.gradient.as_str()], &[]).unwrap();

            let what = format!("{name} ({kind})");
            let scale = common::max_abs(&format!("{what} gradient"), &want[1]);
            assert!(scale > 0.0, "{what}: the seed reaches the layer");
            // Grad-CAM's class switch: the same backward, stopped at the channel means.
            let pooled = split.pooled.as_ref().unwrap_or_else(|| panic!("{what}: no pooled backward"));
            let mut pooled = GraphSession::from_model(pooled, &path, &opts).unwrap();
            let out = pooled.output_names()[0].clone();
            let (weights, _) = pooled.run_keeping(&feeds, &values, &[out.as_str()], &[]).unwrap();
            let chw = target.layout.to_chw(want[1].view(), 0).unwrap();
            let means = camscope::cam::gradient::grad_cam_weights(chw.view());
            assert_eq!(weights[0].shape(), &[1, means.len()], "{what}: one weight per channel");
            let got: Vec<f32> = weights[0].iter().copied().collect();
            let d = common::max_abs_diff(&format!("{what} weights"), &got, &means.to_vec());
            let wscale = common::max_abs(&format!("{what} weights"), &means);
            assert!(d <= 1e-5 * wscale, "{what}: Grad-CAM weights differ by {d} (scale {wscale})");
            // An image's first Grad-CAM map: the whole head, stopped at the weights, with its tape.
            let whole_pooled = split.whole_pooled.as_ref().unwrap_or_else(|| panic!("{what}: no pooled head"));
            let mut whole_pooled = GraphSession::from_model(whole_pooled, &path, &opts).unwrap();
            let out = whole_pooled.output_names().last().unwrap().clone();
            let wanted = [names.score.as_str(), out.as_str()];
            let (first, kept) = whole_pooled.run_keeping(&with_seed, &[], &wanted, &tape).unwrap();
            assert_eq!(kept.len(), tape.len(), "{what}: the pooled head gives the tape");
            let d = common::max_abs_diff(&format!("{what} pooled head's scores"), &first[0], &want[0]);
            assert!(d <= 1e-6 * common::max_abs("scores", &want[0]).max(1.0), "{what}: scores differ by {d}");
            let got: Vec<f32> = first[1].iter().copied().collect();
            let d = common::max_abs_diff(&format!("{what} pooled head's weights"), &got, &means.to_vec());
            assert!(d <= 1e-5 * wscale, "{what}: the pooled head's weights differ by {d} (scale {wscale})");
            let d = common::max_abs_diff(&format!("{what} scores"), &scores[0], &want[0]);
            assert!(d <= 1e-6 * common::max_abs("scores", &want[0]).max(1.0), "{what}: scores differ by {d}");
            let d = common::max_abs_diff(&format!("{what} gradient"), &grad[0], &want[1]);
            assert!(d <= 1e-5 * scale, "{what}: gradients differ by {d} (scale {scale})");
            let count = |m: &camscope::onnx::ModelProto| m.graph.as_ref().unwrap().node.len();
            if count(&split.backward) < count(&plan.head()) / 2 {
                smaller.push(what);
            }
        }
    }
    // The transformers' heads are a whole block: most of it must be left to the forward.
    for t in ["tv_vit (logit)", "vit_cls (logit)", "deit_distilled (prob)", "vit_reg (logit)"] {
        assert!(smaller.iter().any(|s| s == t), "{t}: the backward is at most half the head ({smaller:?})");
    }
}

/// The inspector's path on a transformer: the first class of an image runs the whole head
/// and keeps its tape, any other class runs only the backward on that tape. Its maps must be
/// those of a fresh head, for every method that reads gradients.
#[test]
fn a_class_switch_on_a_kept_tape_gives_the_maps_of_a_fresh_head() {
    let model = common::data("conformance").join("tv_vit.onnx");
    let open = |cache_bytes| {
        let session = camscope::engine::SessionOptions {
            device: camscope::engine::Device::Cpu,
            ..camscope::engine::SessionOptions::default()
        };
        Engine::open(&model, None, EngineConfig { cache_bytes, session, ..EngineConfig::default() }).unwrap()
    };
    let img = common::sample("tabby/chelsea.png");
    let (mut kept, mut fresh) = (open(EngineConfig::default().cache_bytes), open(0));
    let (lk, lf) = (kept.load(&img).unwrap(), fresh.load(&img).unwrap());
    let ranked = lk.scores.top_k_indices(usize::MAX);
    // The inspector opens the head's other sessions while idle, one per turn (the pooled
    // backward, the whole head, the backward; the pooled head opened with the model); the
    // fresh engine opens each when a map first needs it. The maps below are the same.
    let mut opened = 0;
    while kept.open_next_session().unwrap() {
        opened += 1;
        assert!(opened <= 3, "more sessions opened than the head has");
    }
    assert_eq!(opened, 3, "sessions opened while idle");
    // What the status bar shows as the cache's memory counts the tape the first map keeps.
    let before = kept.cache_usage().1;
    kept.map(&lk, Method::GradCam, &Seed::Class(ranked[0])).unwrap();
    // More than the head result alone (scores and a gradient no larger than the activations).
    let head_result = (ranked.len() + lk.activation.len()) * 4 + 64;
    let grew = kept.cache_usage().1 - before;
    assert!(grew > head_result, "the tape counts in the cache's bytes: {grew} <= {head_result}");
    // The first class keeps the tape; the others (never warmed) run on it.
    let classes = [ranked[0], ranked[7], ranked[ranked.len() - 1], ranked[3]];
    for method in [Method::GradCam, Method::HiResCam, Method::GradCamPlusPlus] {
        for &c in &classes {
            let a = kept.map(&lk, method, &Seed::Class(c)).unwrap();
            let b = fresh.map(&lf, method, &Seed::Class(c)).unwrap();
            let d = common::max_abs_diff(&format!("{method:?} class {c}"), &a.raw.map, &b.raw.map);
            let scale = common::max_abs("raw map", &b.raw.map);
            assert!(d <= 1e-5 * scale.max(1e-12), "{method:?} class {c}: maps differ by {d} (scale {scale})");
        }
    }
    let contrast = Seed::Contrast { positive: ranked[1], negative: ranked[0] };
    let a = kept.map(&lk, Method::GradCam, &contrast).unwrap();
    let b = fresh.map(&lf, Method::GradCam, &contrast).unwrap();
    let d = common::max_abs_diff("contrast", &a.raw.map, &b.raw.map);
    assert!(d <= 1e-5 * common::max_abs("raw map", &b.raw.map).max(1e-12), "contrast: maps differ by {d}");
}

/// Where the score reads only the class token, the head computes the last attention for
/// the leading query rows alone (its keys and values still cover every token), through the
/// layouts the exporters use: torchvision's `[T, N, C]` attention with tokens and batch
/// merged for the output projection, timm's `[N, H, T, d]`. A pooled-token ViT reads every
/// token, so it keeps every row: the check can fail.
#[test]
fn a_class_token_head_runs_the_last_attention_for_the_leading_rows_alone() {
    use camscope::engine::{Device, GraphSession, LoadedModel, SessionOptions};
    use camscope::onnx::{dtype, op, value_info};
    use ndarray::ArrayViewD;

    let dir = common::data("conformance");
    let opts = SessionOptions { device: Device::Cpu, threads: Some(2), ..SessionOptions::default() };
    for (name, rows) in [("tv_vit", 1), ("vit_cls", 1), ("deit_distilled", 2), ("vit_reg", 5), ("vit_gap", 0)] {
        let path = dir.join(format!("{name}.onnx"));
        let loaded = LoadedModel::open_checked(&path, None, &opts, true).unwrap();
        // The pooled ViT's default is its last map: ask for the last block's first norm.
        let layer = (rows == 0).then(|| {
            let cands = loaded.analysis.candidates();
            cands.iter().rev().find(|c| c.tensor.contains("norm1")).expect("a norm1 map").tensor.clone()
        });
        let target = loaded.analysis.resolve_layer(layer.as_deref()).unwrap();
        let mut engine =
            Engine::from_model(loaded.clone(), EngineConfig { session: opts.clone(), ..Default::default() }).unwrap();
        engine.set_layer(layer.as_deref()).unwrap();
        let (shape, data) = common::read_npy_f32(&dir.join(format!("{name}_input.npy")));
        let input =
            ndarray::ArrayD::from_shape_vec(shape, data).unwrap().into_dimensionality::<ndarray::Ix4>().unwrap();
        let image = engine.body_batch(input.view()).unwrap().remove(0);
        let tokens = image.activation.shape()[1];
        let plan = loaded.analysis.plan_for_sessions(&target, ScoreKind::Logit, false).unwrap();
        let mut head = plan.head();
        let graph = head.graph.as_mut().unwrap();
        // The model's own last softmax: the last attention's weights.
        let softmax = graph
            .node
            .iter()
            .rfind(|n| op(n) == "Softmax" && !n.name.as_deref().unwrap_or("").starts_with("camscope"))
            .unwrap_or_else(|| panic!("{name}: the head holds the last attention"))
            .output[0]
            .clone();
        graph.output.push(value_info(
            &softmax,
            dtype::FLOAT,
            &[-1, -1, -1, -1],
            &[Some("a"), Some("b"), Some("c"), Some("d")],
        ));
        let names = &plan.names;
        let seed = ndarray::Array2::<f32>::ones((1, plan.classes));
        let mut fed: Vec<(&str, ArrayViewD<'_, f32>)> = vec![(names.activation.as_str(), image.activation.view())];
        fed.extend(names.side.iter().map(String::as_str).zip(image.side.iter().map(|s| s.view())));
        fed.push((names.seed.as_str(), seed.view().into_dyn()));
        let mut session = GraphSession::from_model(&head, &path, &opts).unwrap();
        let out = session.run(&fed, &[softmax.as_str(), names.gradient.as_str()]).unwrap();
        let weights = out[0].shape();
        let want = if rows == 0 { tokens } else { rows };
        assert_eq!(weights[weights.len() - 2], want, "{name}: the attention's query rows ({weights:?})");
        assert_eq!(weights[weights.len() - 1], tokens, "{name}: every key ({weights:?})");
        assert_eq!(out[1].shape(), image.activation.shape(), "{name}: the gradient covers every token");
    }
}

/// Grad-CAM reads the gradient only through its channel means, so its class switch stops
/// the backward at them and sums over the tokens before the last product with a weight: on
/// a ViT that product (the attention's in-projection, `[T, 3C] x [3C, C]`) runs on one row.
/// Checked on the shapes ONNX Runtime computes: no product in the pooled backward gives a
/// `C`-wide result over every token, while the full backward has one (so the check can fail).
#[test]
fn a_grad_cam_class_switch_runs_the_last_product_on_one_row() {
    use camscope::engine::{Device, GraphSession, LoadedModel, SessionOptions};
    use camscope::onnx::{ModelProto, dtype, op, proto, value_info};
    use ndarray::ArrayViewD;

    let dir = common::data("conformance");
    let opts = SessionOptions { device: Device::Cpu, threads: Some(2), ..SessionOptions::default() };
    for name in ["tv_vit", "vit_cls", "deit_distilled", "vit_reg"] {
        let path = dir.join(format!("{name}.onnx"));
        let loaded = LoadedModel::open_checked(&path, None, &opts, true).unwrap();
        let target = loaded.analysis.resolve_layer(None).unwrap();
        let mut engine =
            Engine::from_model(loaded.clone(), EngineConfig { session: opts.clone(), ..Default::default() }).unwrap();
        let (shape, data) = common::read_npy_f32(&dir.join(format!("{name}_input.npy")));
        let input =
            ndarray::ArrayD::from_shape_vec(shape, data).unwrap().into_dimensionality::<ndarray::Ix4>().unwrap();
        let image = engine.body_batch(input.view()).unwrap().remove(0);
        let (tokens, channels) = (image.activation.shape()[1], image.activation.shape()[2]);
        let plan = loaded.analysis.plan_for_sessions(&target, ScoreKind::Logit, false).unwrap();
        let split = plan.head_split().unwrap();
        let names = &plan.names;
        let seed = ndarray::Array2::<f32>::ones((1, plan.classes));
        let mut fed: Vec<(&str, ArrayViewD<'_, f32>)> = vec![(names.activation.as_str(), image.activation.view())];
        fed.extend(names.side.iter().map(String::as_str).zip(image.side.iter().map(|s| s.view())));
        fed.push((names.seed.as_str(), seed.view().into_dyn()));
        let tape: Vec<&str> = split.tape.iter().map(String::as_str).collect();
        let mut whole = GraphSession::from_model(&split.whole, &path, &opts).unwrap();
        let (_, values) = whole.run_keeping(&fed, &[], &[names.score.as_str()], &tape).unwrap();
        let values: Vec<(&str, &_)> = tape.iter().copied().zip(values.iter()).collect();
        // The shapes of every MatMul's result in a backward graph, run on the tape.
        let products = |model: &ModelProto| -> Vec<Vec<usize>> {
            let mut m = model.clone();
            let g = m.graph.as_mut().unwrap();
            let declared: Vec<String> = g.input.iter().filter_map(|v| v.name.clone()).collect();
            let outs: Vec<String> = g.node.iter().filter(|n| op(n) == "MatMul").map(|n| n.output[0].clone()).collect();
            for o in &outs {
                let mut v = value_info(o, dtype::FLOAT, &[], &[]);
                if let Some(proto::type_proto::Value::TensorType(t)) = v.r#type.as_mut().and_then(|t| t.value.as_mut())
                {
                    t.shape = None;
                }
                g.output.push(v);
            }
            let feeds: Vec<(&str, ArrayViewD<'_, f32>)> =
                fed.iter().filter(|(n, _)| declared.iter().any(|d| d == n) && !tape.contains(n)).cloned().collect();
            let wanted: Vec<&str> = outs.iter().map(String::as_str).collect();
            let mut session = GraphSession::from_model(&m, &path, &opts).unwrap();
            let (got, _) = session.run_keeping(&feeds, &values, &wanted, &[]).unwrap();
            got.iter().map(|a| a.shape().to_vec()).collect()
        };
        let over_every_token = |s: &Vec<usize>| s.last() == Some(&channels) && s.contains(&tokens);
        let full = products(&split.backward);
        assert!(
            full.iter().any(over_every_token),
            "{name}: the full backward has a product over every token: {full:?}"
        );
        let pooled = products(split.pooled.as_ref().unwrap());
        assert!(!pooled.iter().any(over_every_token), "{name}: the pooled backward's products: {pooled:?}");
    }
}

/// The body computes the model's own scores through the head's pruned rows too (where the
/// score reads only the leading tokens): the last attention runs for the leading query rows
/// alone there as well, and the scores still equal the model's, at any batch size. A pooled
/// ViT keeps every row (so the check can fail).
#[test]
fn the_body_runs_the_layers_after_the_target_for_the_leading_rows_alone() {
    use camscope::engine::{Device, GraphSession, LoadedModel, SessionOptions};
    use camscope::onnx::{dtype, op, value_info};
    use ndarray::{ArrayD, Axis};

    let dir = common::data("conformance");
    let opts = SessionOptions { device: Device::Cpu, threads: Some(2), ..SessionOptions::default() };
    for (name, rows) in [("tv_vit", 1), ("vit_cls", 1), ("deit_distilled", 2), ("vit_reg", 5), ("vit_gap", 0)] {
        let path = dir.join(format!("{name}.onnx"));
        let loaded = LoadedModel::open_checked(&path, None, &opts, true).unwrap();
        let target = loaded.analysis.resolve_layer(None).unwrap();
        let plan = loaded.analysis.plan_for_sessions(&target, ScoreKind::Logit, false).unwrap();
        let mut body = plan.body();
        let graph = body.graph.as_mut().unwrap();
        let softmax = graph.node.iter().rfind(|n| op(n) == "Softmax").expect("an attention").output[0].clone();
        graph.output.push(value_info(
            &softmax,
            dtype::FLOAT,
            &[-1, -1, -1, -1],
            &[Some("a"), Some("b"), Some("c"), Some("d")],
        ));
        let (shape, data) = common::read_npy_f32(&dir.join(format!("{name}_input.npy")));
        let one = ArrayD::from_shape_vec(shape, data).unwrap();
        // Three different images: the input, flipped, and darkened.
        let flipped = one.slice_axis(Axis(3), ndarray::Slice::new(0, None, -1)).to_owned();
        let batch = ndarray::concatenate(Axis(0), &[one.view(), flipped.view(), (&one * 0.5).view()]).unwrap();
        let input = plan.names.input.as_str();
        let output = plan.names.model_output.as_str();
        let mut plain = GraphSession::from_file(&path, &opts).unwrap();
        let want = plain.run(&[(input, batch.view())], &[output]).unwrap().remove(0);
        let mut session = GraphSession::from_model(&body, &path, &opts).unwrap();
        let got = session.run(&[(input, batch.view())], &[output, softmax.as_str()]).unwrap();
        let what = format!("{name}: the body's scores");
        let d = common::max_abs_diff(&what, &got[0], &want);
        assert!(d <= 1e-5 * common::max_abs(&what, &want), "{what} differ from the model's by {d}");
        let tokens = loaded.analysis.facts().get(&target.tensor).unwrap().dims[1].fixed().unwrap() as usize;
        let weights = got[1].shape();
        let want_rows = if rows == 0 { tokens } else { rows };
        assert_eq!(
            weights[weights.len() - 2],
            want_rows,
            "{name}: the body's last attention's query rows ({weights:?})"
        );
        assert_eq!(weights[weights.len() - 1], tokens, "{name}: every key ({weights:?})");
    }
}
