//! Every gradient rule against central finite differences through real ONNX Runtime.
//!
//! Each test builds a tiny graph `x -> op(s) -> Flatten -> y [1, K]`, asks camscope for the
//! gradient of `seed · y` w.r.t. `x` (or an intermediate), and compares it with
//! `(f(x + h e_i) - f(x - h e_i)) / 2h` for every element. ONNX Runtime's CPU kernels are
//! float32 only, so errors are measured relative to the largest gradient; inputs are kept
//! away from kinks (ReLU at 0, clip bounds) by more than the step.

mod common;

use camscope::grad::ScoreKind;
use camscope::onnx::{AttributeProto, attrs};
use common::onnx_build::*;

const H: f32 = 1e-2;
const TOL: f32 = 2e-3;

/// Check d(seed·y)/dx for a graph whose input is `x` (dims at batch 1) and output `y`.
fn check_with(t: Tiny, dims: &[usize], scale: f32, kind: ScoreKind, opset_note: &str) {
    let model = t.build();
    let a = analyse(model, "x", "y", dims).unwrap_or_else(|e| panic!("{opset_note}: {e}"));
    let x = array(dims, 7, 0.05).mapv(|v| v * scale);
    // Perturb the input through a fixed-x head: the target is the input itself.
    let c = fd_check_input(&a, &x, kind);
    assert!(c.max_grad > 1e-6, "{opset_note}: gradient is zero everywhere ({c:?})");
    assert!(c.relative() < TOL, "{opset_note}: finite differences disagree: {c:?} (relative {})", c.relative());
}

fn fd_check_input(a: &camscope::grad::Analysis, x: &ndarray::ArrayD<f32>, kind: ScoreKind) -> Check {
    fd_check(a, "x", kind, x, None, H, 400)
}

fn check(t: Tiny, dims: &[usize], name: &str) {
    check_with(t, dims, 1.0, ScoreKind::Logit, name)
}

/// `x [1, ...] -> op -> Flatten -> y`: the common wrapper.
fn unary(opset: i64, dims: &[i64], op: &str, extra_inputs: &[&str], a: Vec<AttributeProto>, out_k: i64) -> Tiny {
    let mut inputs = vec!["x"];
    inputs.extend_from_slice(extra_inputs);
    Tiny::new(opset)
        .input("x", dims)
        .node(op, &inputs, &["t"], a)
        .node("Flatten", &["t"], &["y"], vec![attrs::int("axis", 1)])
        .output("y", &[-1, out_k])
}

fn w(n: usize, seed: u64) -> Vec<f32> {
    values(n, seed, 0.0)
}

#[test]
fn gemm_plain_and_transposed() {
    for (tb, alpha, beta) in [(0, 1.0, 1.0), (1, 0.7, 1.3)] {
        let wdims: &[i64] = if tb == 1 { &[3, 4] } else { &[4, 3] };
        let t = Tiny::new(17)
            .input("x", &[-1, 4])
            .init("W", wdims, &w(12, 1))
            .init("b", &[3], &w(3, 2))
            .node(
                "Gemm",
                &["x", "W", "b"],
                &["y"],
                vec![attrs::int("transB", tb), attrs::float("alpha", alpha), attrs::float("beta", beta)],
            )
            .output("y", &[-1, 3]);
        check(t, &[1, 4], &format!("Gemm transB={tb}"));
    }
}

#[test]
fn gemm_bias_from_input_is_unbroadcast() {
    // y = x·W + beta·C with C = ReduceSum(x) [N,1] broadcast over the 3 columns.
    let t = Tiny::new(17)
        .input("x", &[-1, 4])
        .init("W", &[4, 3], &w(12, 3))
        .init("ax", &[1], &[1.0])
        .init_i64("axes", &[1], &[1])
        .node("ReduceSum", &["x", "axes"], &["c"], vec![attrs::int("keepdims", 1)])
        .node("Gemm", &["x", "W", "c"], &["y"], vec![attrs::float("beta", 0.5)])
        .output("y", &[-1, 3]);
    check(t, &[1, 4], "Gemm with input-dependent bias");
}

#[test]
fn matmul_both_operands_with_batch_broadcast() {
    let t = Tiny::new(17)
        .input("x", &[-1, 2, 3, 4])
        .init("W", &[4, 5], &w(20, 4))
        .init("L", &[3, 3], &w(9, 5))
        .node("MatMul", &["x", "W"], &["a"], vec![])
        .node("MatMul", &["L", "a"], &["t"], vec![])
        .node("Flatten", &["t"], &["y"], vec![attrs::int("axis", 1)])
        .output("y", &[-1, 30]);
    check(t, &[1, 2, 3, 4], "MatMul");
}

/// A Conv test case: input channels, output channels, square input size, square kernel.
struct ConvCase {
    c_in: i64,
    c_out: i64,
    hw: i64,
    k: i64,
    group: i64,
    out_k: i64,
}

fn conv(case: ConvCase, a: Vec<AttributeProto>, name: &str) {
    let ConvCase { c_in, c_out, hw, k, group, out_k } = case;
    let wn = (c_out * (c_in / group) * k * k) as usize;
    let mut a = a;
    a.push(attrs::int("group", group));
    let t = Tiny::new(17)
        .input("x", &[-1, c_in, hw, hw])
        .init("W", &[c_out, c_in / group, k, k], &w(wn, 11))
        .init("B", &[c_out], &w(c_out as usize, 12))
        .node("Conv", &["x", "W", "B"], &["t"], a)
        .node("Flatten", &["t"], &["y"], vec![attrs::int("axis", 1)])
        .output("y", &[-1, out_k]);
    check(t, &[1, c_in as usize, hw as usize, hw as usize], name);
}

#[test]
fn conv_padded_stride1() {
    let case = ConvCase { c_in: 2, c_out: 3, hw: 5, k: 3, group: 1, out_k: 75 };
    conv(case, vec![attrs::ints("pads", &[1, 1, 1, 1])], "Conv 3x3 pad 1");
}

#[test]
fn conv_stride2_asymmetric_pads_restores_dropped_rows() {
    // 6x6 input, 3x3 kernel, stride 2, pads (0,0,1,1): output 3x3 reads rows 0..6; the
    // transpose needs output_padding to give back a 6x6 gradient.
    let case = ConvCase { c_in: 2, c_out: 2, hw: 6, k: 3, group: 1, out_k: 18 };
    conv(case, vec![attrs::ints("strides", &[2, 2]), attrs::ints("pads", &[0, 0, 1, 1])], "Conv stride 2");
}

#[test]
fn conv_depthwise_dilated_strided() {
    let case = ConvCase { c_in: 4, c_out: 4, hw: 9, k: 3, group: 4, out_k: 4 * 25 };
    let a =
        vec![attrs::ints("strides", &[2, 2]), attrs::ints("dilations", &[2, 2]), attrs::ints("pads", &[2, 2, 2, 2])];
    conv(case, a, "depthwise Conv dilation 2 stride 2");
}

#[test]
fn conv_auto_pad_same_upper_odd_size() {
    let case = ConvCase { c_in: 3, c_out: 2, hw: 7, k: 3, group: 1, out_k: 32 };
    conv(case, vec![attrs::string("auto_pad", "SAME_UPPER"), attrs::ints("strides", &[2, 2])], "Conv SAME_UPPER");
}

#[test]
fn conv_grouped_1x1() {
    conv(ConvCase { c_in: 4, c_out: 6, hw: 3, k: 1, group: 2, out_k: 54 }, vec![], "grouped 1x1 Conv");
}

/// `c op (shift + (x op c))`: broadcasting on both sides; the shift keeps Div's
/// denominator away from 0 (c = ±1.5..2, so x/c stays within ±0.7).
fn binary(op: &str, other_dims: &[i64], other: &[f32]) -> Tiny {
    Tiny::new(17)
        .input("x", &[-1, 2, 3, 3])
        .init("c", other_dims, other)
        .init("shift", &[], &[2.0])
        .node(op, &["x", "c"], &["t0"], vec![])
        .node("Add", &["t0", "shift"], &["t"], vec![])
        .node(op, &["c", "t"], &["u"], vec![])
        .node("Flatten", &["u"], &["y"], vec![attrs::int("axis", 1)])
        .output("y", &[-1, 18])
}

#[test]
fn add_sub_mul_with_broadcasting_on_both_sides() {
    for op in ["Add", "Sub", "Mul"] {
        check(binary(op, &[2, 1, 1], &[0.5, -1.5]), &[1, 2, 3, 3], op);
    }
}

#[test]
fn div_numerator_and_denominator() {
    // c / (x / c): the second Div differentiates its denominator; values stay away from 0.
    check(binary("Div", &[2, 1, 1], &[1.5, -2.0]), &[1, 2, 3, 3], "Div");
}

#[test]
fn swish_fan_out_accumulates() {
    // x * sigmoid(x): x feeds two nodes, so its gradient is a sum of two contributions.
    let t = Tiny::new(17)
        .input("x", &[-1, 6])
        .node("Sigmoid", &["x"], &["s"], vec![])
        .node("Mul", &["x", "s"], &["y"], vec![])
        .output("y", &[-1, 6]);
    check(t, &[1, 6], "Mul(x, Sigmoid(x))");
}

#[test]
fn sum_and_neg() {
    let t = Tiny::new(17)
        .input("x", &[-1, 2, 3])
        .init("c", &[3], &[1.0, 2.0, 3.0])
        .node("Relu", &["x"], &["r"], vec![])
        .node("Neg", &["x"], &["n"], vec![])
        .node("Sum", &["x", "r", "n", "c"], &["t"], vec![])
        .node("Mul", &["t", "x"], &["u"], vec![])
        .node("Flatten", &["u"], &["y"], vec![attrs::int("axis", 1)])
        .output("y", &[-1, 6]);
    check(t, &[1, 2, 3], "Sum/Neg");
}

#[test]
fn relu_and_leaky_relu() {
    check(unary(17, &[-1, 8], "Relu", &[], vec![], 8), &[1, 8], "Relu");
    check(unary(17, &[-1, 8], "LeakyRelu", &[], vec![attrs::float("alpha", 0.2)], 8), &[1, 8], "LeakyRelu");
}

#[test]
fn clip_both_bounds_and_max_only() {
    let both = Tiny::new(17)
        .input("x", &[-1, 12])
        .init("lo", &[], &[-0.5])
        .init("hi", &[], &[0.6])
        .node("Clip", &["x", "lo", "hi"], &["t"], vec![])
        .node("Mul", &["t", "x"], &["y"], vec![])
        .output("y", &[-1, 12]);
    check(both, &[1, 12], "Clip(min, max)");
    let max_only = Tiny::new(13)
        .input("x", &[-1, 12])
        .init("hi", &[], &[0.3])
        .node("Clip", &["x", "", "hi"], &["t"], vec![])
        .node("Mul", &["t", "x"], &["y"], vec![])
        .output("y", &[-1, 12]);
    check(max_only, &[1, 12], "Clip(max only)");
}

#[test]
fn smooth_activations() {
    for op in ["Sigmoid", "Tanh", "Erf", "Exp"] {
        check(unary(17, &[-1, 8], op, &[], vec![], 8), &[1, 8], op);
    }
}

#[test]
fn hard_sigmoid_and_hard_swish() {
    check_with(
        unary(17, &[-1, 16], "HardSigmoid", &[], vec![attrs::float("alpha", 0.3), attrs::float("beta", 0.4)], 16),
        &[1, 16],
        4.0,
        ScoreKind::Logit,
        "HardSigmoid",
    );
    check_with(unary(17, &[-1, 16], "HardSwish", &[], vec![], 16), &[1, 16], 5.0, ScoreKind::Logit, "HardSwish");
}

#[test]
fn log_sqrt_pow_on_positive_values() {
    for op in ["Log", "Sqrt"] {
        let t = Tiny::new(17)
            .input("x", &[-1, 6])
            .init("one", &[], &[1.0])
            .node("Mul", &["x", "x"], &["sq"], vec![])
            .node("Add", &["sq", "one"], &["p"], vec![])
            .node(op, &["p"], &["y"], vec![])
            .output("y", &[-1, 6]);
        check(t, &[1, 6], op);
    }
    let t = Tiny::new(17)
        .input("x", &[-1, 6])
        .init("e", &[], &[3.0])
        .node("Pow", &["x", "e"], &["y"], vec![])
        .output("y", &[-1, 6]);
    check(t, &[1, 6], "Pow");
}

#[test]
fn softmax_and_log_softmax_new_and_old_axis_semantics() {
    for (opset, op) in [(17, "Softmax"), (17, "LogSoftmax"), (12, "Softmax"), (12, "LogSoftmax")] {
        // Old opsets flatten from `axis` on: axis 1 over [N,2,3] normalises all 6 values.
        let t = unary(opset, &[-1, 2, 3], op, &[], vec![attrs::int("axis", 1)], 6);
        check_with(t, &[1, 2, 3], 2.0, ScoreKind::Logit, &format!("{op} opset {opset}"));
    }
}

/// Max-type ops switch their argmax when two values are within the step: feed distinct
/// values spaced wider than it.
fn check_small_step(t: Tiny, dims: &[usize], name: &str) {
    let a = analyse(t.build(), "x", "y", dims).unwrap();
    let x = distinct(dims, 7);
    let c = fd_check(&a, "x", ScoreKind::Logit, &x, None, 2e-3, 400);
    assert!(c.max_grad > 1e-6 && c.relative() < TOL, "{name}: {c:?} (relative {})", c.relative());
}

#[test]
fn global_pools() {
    check(unary(17, &[-1, 3, 4, 4], "GlobalAveragePool", &[], vec![], 3), &[1, 3, 4, 4], "GlobalAveragePool");
    check_small_step(unary(17, &[-1, 3, 4, 4], "GlobalMaxPool", &[], vec![], 3), &[1, 3, 4, 4], "GlobalMaxPool");
}

#[test]
fn reduce_mean_attribute_and_input_axes() {
    let t =
        unary(17, &[-1, 3, 4, 5], "ReduceMean", &[], vec![attrs::ints("axes", &[2, -1]), attrs::int("keepdims", 0)], 3);
    check(t, &[1, 3, 4, 5], "ReduceMean opset 17");
    let t = Tiny::new(18)
        .input("x", &[-1, 3, 4, 5])
        .init_i64("axes", &[1], &[2])
        .node("ReduceMean", &["x", "axes"], &["t"], vec![attrs::int("keepdims", 1)])
        .node("Flatten", &["t"], &["y"], vec![attrs::int("axis", 1)])
        .output("y", &[-1, 15]);
    check(t, &[1, 3, 4, 5], "ReduceMean opset 18");
}

#[test]
fn reduce_sum_input_axes() {
    let t = Tiny::new(13)
        .input("x", &[-1, 3, 4])
        .init_i64("axes", &[1], &[1])
        .node("ReduceSum", &["x", "axes"], &["t"], vec![attrs::int("keepdims", 0)])
        .node("Flatten", &["t"], &["y"], vec![attrs::int("axis", 1)])
        .output("y", &[-1, 4]);
    check(t, &[1, 3, 4], "ReduceSum");
}

#[test]
fn average_pool_with_and_without_counting_padding() {
    for include in [0, 1] {
        let a = vec![
            attrs::ints("kernel_shape", &[3, 3]),
            attrs::ints("strides", &[2, 2]),
            attrs::ints("pads", &[1, 1, 1, 1]),
            attrs::int("count_include_pad", include),
        ];
        check(unary(17, &[-1, 2, 6, 6], "AveragePool", &[], a, 18), &[1, 2, 6, 6], "AveragePool");
    }
}

#[test]
fn max_pool_overlapping_and_disjoint_windows() {
    let a =
        vec![attrs::ints("kernel_shape", &[3, 3]), attrs::ints("strides", &[2, 2]), attrs::ints("pads", &[1, 1, 1, 1])];
    check_small_step(unary(17, &[-1, 2, 6, 6], "MaxPool", &[], a, 18), &[1, 2, 6, 6], "MaxPool overlapping");
    let a = vec![attrs::ints("kernel_shape", &[2, 2]), attrs::ints("strides", &[2, 2])];
    check_small_step(unary(13, &[-1, 2, 6, 6], "MaxPool", &[], a, 18), &[1, 2, 6, 6], "MaxPool disjoint opset 13");
}

#[test]
fn reshapes() {
    let t = Tiny::new(17)
        .input("x", &[-1, 2, 3, 4])
        .init_i64("shape", &[3], &[0, 6, 4])
        .init_i64("ax", &[1], &[1])
        .node("Reshape", &["x", "shape"], &["r"], vec![])
        .node("Unsqueeze", &["r", "ax"], &["u"], vec![])
        .node("Squeeze", &["u", "ax"], &["s"], vec![])
        .node("Transpose", &["s"], &["tr"], vec![attrs::ints("perm", &[0, 2, 1])])
        .node("Mul", &["tr", "tr"], &["m"], vec![])
        .node("Flatten", &["m"], &["y"], vec![attrs::int("axis", 1)])
        .output("y", &[-1, 24]);
    check(t, &[1, 2, 3, 4], "Reshape/Unsqueeze/Squeeze/Transpose/Flatten");
}

/// A shape the head reads from a body tensor with the batch folded into an axis (`[4·N, 6]`,
/// as attention heads are) is rebuilt as that multiple of the batch, not as the batch: read
/// as `[N, 6]`, the head's reshape to it asks for the wrong size. ONNX Runtime's optimiser
/// hides that by rewriting the reshape to infer the axis, so the head also runs with
/// optimisations off: it must be right as written.
#[test]
fn a_folded_shape_read_in_the_head_is_a_multiple_of_the_batch() {
    use camscope::engine::{GraphSession, explainer::Explainer};
    let t = Tiny::new(17)
        .input("x", &[-1, 4, 6])
        .init_i64("rows", &[2], &[-1, 6])
        .init_i64("wide", &[2], &[-1, 48])
        .init("W", &[48, 5], &w(48 * 5, 31))
        .node("Reshape", &["x", "rows"], &["h0"], vec![])
        .node("Shape", &["h0"], &["s"], vec![])
        .node("Sigmoid", &["h0"], &["side"], vec![])
        .node("Tanh", &["x"], &["t"], vec![])
        .node("Neg", &["t"], &["nt"], vec![])
        .node("Reshape", &["nt", "s"], &["h"], vec![])
        .node("Mul", &["h", "side"], &["u"], vec![])
        .node("Concat", &["u", "side"], &["c"], vec![attrs::int("axis", 1)])
        .node("Reshape", &["c", "wide"], &["f"], vec![])
        .node("MatMul", &["f", "W"], &["y"], vec![])
        .output("y", &[-1, 5]);
    let a = analyse(t.build(), "x", "y", &[1, 4, 6]).unwrap();
    for batch in [1, 3] {
        let x = array(&[batch, 4, 6], 7, 0.05);
        let c = fd_check(&a, "t", ScoreKind::Logit, &x, None, H, 400);
        assert!(c.max_grad > 1e-6 && c.relative() < TOL, "batch {batch}: {c:?}");
        let cand = camscope::grad::Candidate { tensor: "t".into(), ..a.input_target() };
        let mut ex =
            Explainer::new(&a, std::path::Path::new("tiny.onnx"), &cand, ScoreKind::Logit, false, &cpu()).unwrap();
        let body = ex.body(x.view()).unwrap();
        let plan = a.plan_for_sessions(&cand, ScoreKind::Logit, false).unwrap();
        let names = &plan.names;
        assert_eq!(names, &ex.plan.names);
        let seed = ndarray::Array2::<f32>::ones((batch, 5)).into_dyn();
        let mut feeds = vec![(names.activation.as_str(), body.activation.view()), (names.seed.as_str(), seed.view())];
        feeds.extend(names.side.iter().map(String::as_str).zip(body.side.iter().map(|s| s.view())));
        let dir = tempfile::tempdir().unwrap();
        let mut plain = GraphSession::profiling(
            &camscope::onnx::Encoded::of(&plan.head()),
            std::path::Path::new("tiny.onnx"),
            None,
            dir.path(),
        )
        .unwrap();
        let out = plain.run(&feeds, &[names.gradient.as_str()]).unwrap_or_else(|e| panic!("batch {batch}: {e}"));
        assert_eq!(out[0].shape(), &[batch, 4, 6]);
    }
}

#[test]
fn transpose_default_perm_and_expand() {
    // Expand [N,1,3] -> [N,4,3]; the default Transpose reverses axes (batch goes last) and a
    // second one brings it back.
    let t = Tiny::new(17)
        .input("x", &[-1, 1, 3])
        .init_i64("shape", &[3], &[1, 4, 3])
        .init("c", &[4, 1], &[1.0, -2.0, 0.5, 3.0])
        .node("Expand", &["x", "shape"], &["e"], vec![])
        .node("Mul", &["e", "c"], &["m"], vec![])
        .node("Transpose", &["m"], &["t"], vec![])
        .node("Tanh", &["t"], &["th"], vec![])
        .node("Transpose", &["th"], &["b"], vec![])
        .node("Flatten", &["b"], &["y"], vec![attrs::int("axis", 1)])
        .output("y", &[-1, 12]);
    check(t, &[1, 1, 3], "Expand/Transpose");
}

#[test]
fn concat_and_split() {
    let t = Tiny::new(17)
        .input("x", &[-1, 2, 3])
        .init("c", &[1, 3], &[1.0, 2.0, 3.0])
        .node("Sigmoid", &["x"], &["s"], vec![])
        .node("Mul", &["x", "c"], &["xc"], vec![])
        .node("Concat", &["x", "xc", "s"], &["t"], vec![attrs::int("axis", 1)])
        .node("Mul", &["t", "t"], &["m"], vec![])
        .node("Flatten", &["m"], &["y"], vec![attrs::int("axis", 1)])
        .output("y", &[-1, 18]);
    check(t, &[1, 2, 3], "Concat");
    let t = Tiny::new(13)
        .input("x", &[-1, 6])
        .init_i64("split", &[3], &[1, 2, 3])
        .node("Split", &["x", "split"], &["a", "b", "c"], vec![attrs::int("axis", 1)])
        .node("Mul", &["a", "a"], &["aa"], vec![])
        .node("Concat", &["c", "aa"], &["y"], vec![attrs::int("axis", 1)])
        .output("y", &[-1, 4]);
    check(t, &[1, 6], "Split (one output unused)");
}

#[test]
fn slice_with_negative_indices_and_pad_with_negative_pads() {
    let t = Tiny::new(17)
        .input("x", &[-1, 3, 6])
        .init_i64("st", &[2], &[1, -5])
        .init_i64("en", &[2], &[3, 100])
        .init_i64("ax", &[2], &[1, 2])
        .node("Slice", &["x", "st", "en", "ax"], &["s"], vec![])
        .node("Mul", &["s", "s"], &["t"], vec![])
        .node("Flatten", &["t"], &["y"], vec![attrs::int("axis", 1)])
        .output("y", &[-1, 10]);
    check(t, &[1, 3, 6], "Slice");
    let t = Tiny::new(17)
        .input("x", &[-1, 2, 4])
        .init_i64("pads", &[6], &[0, 1, -1, 0, 2, 1])
        .node("Pad", &["x", "pads"], &["p"], vec![attrs::string("mode", "constant")])
        .node("Mul", &["p", "p"], &["t"], vec![])
        .node("Flatten", &["t"], &["y"], vec![attrs::int("axis", 1)])
        .output("y", &[-1, 20]);
    check(t, &[1, 2, 4], "Pad");
}

#[test]
fn identity_dropout_cast() {
    let t = Tiny::new(17)
        .input("x", &[-1, 5])
        .node("Identity", &["x"], &["a"], vec![])
        .node("Dropout", &["a"], &["b"], vec![])
        .node("Cast", &["b"], &["c"], vec![attrs::int("to", 1)])
        .node("Mul", &["c", "x"], &["y"], vec![])
        .output("y", &[-1, 5]);
    check(t, &[1, 5], "Identity/Dropout/Cast");
}

/// The rule divides by `sqrt(var + epsilon)`: with variances of the order of epsilon, a missing or wrong epsilon
/// moves the gradient by 10-90 % (far past the 2e-3 tolerance). The first case sets epsilon; the second leaves
/// it out, so the default (1e-5) must be the one the spec names.
#[test]
fn batch_normalization_inference() {
    for (eps, var) in [(Some(1e-3), [1e-3, 4e-4, 2.5e-3]), (None, [1e-5, 4e-6, 2.5e-5])] {
        let sd = var.map(|v: f32| v.sqrt());
        let t = Tiny::new(15)
            .input("x", &[-1, 3, 2, 2])
            // Scales of the order of the standard deviations keep the output (and the gradient) near 1.
            .init("s", &[3], &[0.5 * sd[0], -1.5 * sd[1], 2.0 * sd[2]])
            .init("b", &[3], &[0.1, 0.2, 0.3])
            .init("m", &[3], &[0.3, -0.2, 0.0])
            .init("v", &[3], &var)
            .node(
                "BatchNormalization",
                &["x", "s", "b", "m", "v"],
                &["t"],
                eps.map(|e| attrs::float("epsilon", e)).into_iter().collect(),
            )
            .node("Mul", &["t", "x"], &["u"], vec![])
            .node("Flatten", &["u"], &["y"], vec![attrs::int("axis", 1)])
            .output("y", &[-1, 12]);
        check(t, &[1, 3, 2, 2], &format!("BatchNormalization epsilon {eps:?}"));
    }
}

/// As for BatchNormalization, epsilon must matter: 0.3 against a variance of about 0.3, and the default
/// (1e-5) against inputs scaled to a variance of about 3e-6 (with a step scaled alike).
#[test]
fn layer_normalization() {
    let t = |eps: Option<f32>| {
        Tiny::new(17)
            .input("x", &[-1, 2, 5])
            .init("g", &[5], &w(5, 21))
            .init("b", &[5], &w(5, 22))
            .node(
                "LayerNormalization",
                &["x", "g", "b"],
                &["t"],
                [Some(attrs::int("axis", -1)), eps.map(|e| attrs::float("epsilon", e))].into_iter().flatten().collect(),
            )
            .node("Flatten", &["t"], &["y"], vec![attrs::int("axis", 1)])
            .output("y", &[-1, 10])
    };
    check(t(Some(0.3)), &[1, 2, 5], "LayerNormalization epsilon 0.3");
    let a = analyse(t(None).build(), "x", "y", &[1, 2, 5]).unwrap();
    let scale = 3e-3;
    let x = array(&[1, 2, 5], 7, 0.05).mapv(|v| v * scale);
    let c = fd_check(&a, "x", ScoreKind::Logit, &x, None, H * scale * 1e-2, 400);
    assert!(
        c.max_grad > 1e-6 && c.relative() < TOL,
        "LayerNormalization default epsilon: {c:?} (relative {})",
        c.relative()
    );
}

#[test]
fn probability_score_goes_through_an_added_softmax() {
    // A logits model differentiated w.r.t. the probability: camscope appends the Softmax.
    let t = Tiny::new(17)
        .input("x", &[-1, 4])
        .init("W", &[4, 5], &w(20, 31))
        .node("MatMul", &["x", "W"], &["y"], vec![])
        .output("y", &[-1, 5]);
    check_with(t, &[1, 4], 1.0, ScoreKind::Prob, "prob score");
}

#[test]
fn shape_paths_carry_no_gradient() {
    // Reshape whose target shape is computed from the input with Shape/Gather/Concat.
    let t = Tiny::new(17)
        .input("x", &[-1, 2, 3])
        .init_i64("zero", &[], &[0])
        .init_i64("minus1", &[1], &[-1])
        .node("Shape", &["x"], &["sh"], vec![])
        .node("Gather", &["sh", "zero"], &["n"], vec![attrs::int("axis", 0)])
        .node("Unsqueeze", &["n", "zero_axes"], &["n1"], vec![])
        .init_i64("zero_axes", &[1], &[0])
        .node("Concat", &["n1", "minus1"], &["target"], vec![attrs::int("axis", 0)])
        .node("Reshape", &["x", "target"], &["r"], vec![])
        .node("Tanh", &["r"], &["y"], vec![])
        .output("y", &[-1, 6]);
    check(t, &[1, 2, 3], "Shape path");
}

#[test]
fn pad_with_pads_computed_at_run_time() {
    // Pads that depend on the input's shape cannot be folded into constants: the gradient
    // negates them at run time.
    let t = Tiny::new(17)
        .input("x", &[-1, 2, 4])
        .init_i64("p", &[6], &[0, 1, 2, 0, 0, 1])
        .node("Shape", &["x"], &["sh"], vec![])
        .node("Sub", &["sh", "sh"], &["z3"], vec![])
        .node("Concat", &["z3", "z3"], &["z6"], vec![attrs::int("axis", 0)])
        .node("Add", &["z6", "p"], &["pads"], vec![])
        .node("Pad", &["x", "pads"], &["padded"], vec![attrs::string("mode", "constant")])
        .node("Mul", &["padded", "padded"], &["t"], vec![])
        .node("Flatten", &["t"], &["y"], vec![attrs::int("axis", 1)])
        .output("y", &[-1, 21])
        .build();
    let a = analyse(t, "x", "y", &[1, 2, 4]).unwrap();
    let c = fd_check(&a, "x", ScoreKind::Logit, &array(&[1, 2, 4], 3, 0.05), None, H, 100);
    assert!(c.relative() < TOL, "{c:?}");
}

#[test]
fn constants_computed_in_the_graph_are_folded_from_the_probe() {
    // Slice needs constant starts/ends; here they come from a Concat of initializers (as
    // exporters write them), measured once by the shape probe.
    let t = Tiny::new(17)
        .input("x", &[-1, 3, 6])
        .init_i64("s0", &[1], &[1])
        .init_i64("s1", &[1], &[-5])
        .init_i64("e0", &[1], &[3])
        .init_i64("e1", &[1], &[100])
        .init_i64("ax", &[2], &[1, 2])
        .node("Concat", &["s0", "s1"], &["st"], vec![attrs::int("axis", 0)])
        .node("Concat", &["e0", "e1"], &["en"], vec![attrs::int("axis", 0)])
        .node("Slice", &["x", "st", "en", "ax"], &["s"], vec![])
        .node("Mul", &["s", "s"], &["t"], vec![])
        .node("Flatten", &["t"], &["y"], vec![attrs::int("axis", 1)])
        .output("y", &[-1, 10]);
    check(t, &[1, 3, 6], "Slice with computed constants");
}

// ---- Transformer ops ----

#[test]
fn gather_scalar_index_removes_the_axis() {
    // The class token x[:, 0] (here a negative index, -2 of 5), then a non-linearity.
    let t = Tiny::new(17)
        .input("x", &[-1, 5, 3])
        .init_i64("i", &[], &[-2])
        .node("Gather", &["x", "i"], &["g"], vec![attrs::int("axis", 1)])
        .node("Mul", &["g", "g"], &["y"], vec![])
        .output("y", &[-1, 3]);
    check(t, &[1, 5, 3], "Gather scalar index");
}

/// q, k and v taken from one tensor by scalar index (torchvision's attention): their
/// gradients go back as one Concat when every index is taken once, and as a sum where an
/// index is missing or taken twice.
#[test]
fn gather_scalar_indices_filling_an_axis_come_back_as_one_concat() {
    let build = |indices: &[i64]| {
        let mut t = Tiny::new(17).input("x", &[-1, 3, 4]);
        let mut parts: Vec<String> = Vec::new();
        for (k, &i) in indices.iter().enumerate() {
            let (idx, g, c, m) = (format!("i{k}"), format!("g{k}"), format!("c{k}"), format!("m{k}"));
            t = t
                .init_i64(&idx, &[], &[i])
                .node("Gather", &["x", &idx], &[&g], vec![attrs::int("axis", 1)])
                .init(&c, &[4], &w(4, 60 + k as u64))
                .node("Mul", &[&g, &c], &[&m], vec![]);
            parts.push(m);
        }
        // A product of the parts: each part's gradient depends on the others.
        let mut acc = parts[0].clone();
        for (k, p) in parts.iter().enumerate().skip(1) {
            let out = format!("p{k}");
            t = t.node("Mul", &[&acc, p], &[&out], vec![]);
            acc = out;
        }
        t.node("Tanh", &[&acc], &["y"], vec![]).output("y", &[-1, 4])
    };
    for (indices, concat) in [(&[2, 0, 1][..], true), (&[0, 2][..], false), (&[1, 1, 0][..], false)] {
        let name = format!("Gather scalar indices {indices:?}");
        check(build(indices), &[1, 3, 4], &name);
        let a = analyse(build(indices).build(), "x", "y", &[1, 3, 4]).unwrap();
        let plan = a.plan(&a.input_target(), ScoreKind::Logit, false).unwrap();
        let ops: Vec<String> = plan.export().graph.unwrap().node.iter().filter_map(|n| n.op_type.clone()).collect();
        let has = |o: &str| ops.iter().any(|x| x == o);
        assert_eq!(has("Concat") && !has("Pad") && !has("Sum"), concat, "{name}: {ops:?}");
    }
}

#[test]
fn gather_duplicate_and_negative_indices_accumulate() {
    // 2-D indices with repeats on the last axis (no transpose path) and 1-D indices with a
    // repeat on a middle axis (transpose path); each gathered copy is weighted differently,
    // so a gradient that kept only one copy of a repeated index is off by a whole term.
    let t = Tiny::new(17)
        .input("x", &[-1, 4, 5])
        .init_i64("i2", &[3, 2], &[0, 3, -1, 0, 2, 2])
        .init("c", &[3, 2], &[1.0, -2.0, 0.5, 3.0, -1.5, 2.5])
        .node("Gather", &["x", "i2"], &["g"], vec![attrs::int("axis", 2)])
        .node("Mul", &["g", "c"], &["m"], vec![])
        .init_i64("i1", &[3], &[2, 0, -2])
        .init("c1", &[3, 1, 1], &[0.7, -1.3, 2.0])
        .node("Gather", &["m", "i1"], &["h"], vec![attrs::int("axis", 1)])
        .node("Mul", &["h", "c1"], &["hc"], vec![])
        .node("Tanh", &["hc"], &["t"], vec![])
        .node("Flatten", &["t"], &["y"], vec![attrs::int("axis", 1)])
        .output("y", &[-1, 18]);
    check(t, &[1, 4, 5], "Gather duplicates");
}

#[test]
fn gather_of_an_initializer_table_needs_no_gradient() {
    // A relative-position-bias lookup: the table is a constant, only the Add reaches x.
    let t = Tiny::new(17)
        .input("x", &[-1, 2, 2, 3])
        .init("table", &[6, 3], &w(18, 41))
        .init_i64("idx", &[2, 2], &[0, 5, 2, 2])
        .node("Gather", &["table", "idx"], &["bias"], vec![attrs::int("axis", 0)])
        .node("Add", &["x", "bias"], &["a"], vec![])
        .node("Mul", &["a", "x"], &["m"], vec![])
        .node("Flatten", &["m"], &["y"], vec![attrs::int("axis", 1)])
        .output("y", &[-1, 12]);
    check(t, &[1, 2, 2, 3], "Gather of a constant table");
}

#[test]
fn where_routes_to_both_branches_with_broadcasting() {
    // cond [2,3] mixes true and false; X is [N,2,3], Y is [N,1,3] (broadcast over axis 1).
    let t = Tiny::new(17)
        .input("x", &[-1, 2, 3])
        .init("cv", &[2, 3], &[1.0, -1.0, 1.0, -1.0, -1.0, 1.0])
        .init("zero", &[], &[0.0])
        .init("a", &[3], &[1.5, -0.5, 2.0])
        .init_i64("ax", &[1], &[1])
        .node("Greater", &["cv", "zero"], &["cond"], vec![])
        .node("Mul", &["x", "a"], &["xa"], vec![])
        .node("ReduceSum", &["x", "ax"], &["s"], vec![attrs::int("keepdims", 1)])
        .node("Mul", &["s", "s"], &["ss"], vec![])
        .node("Where", &["cond", "xa", "ss"], &["wh"], vec![])
        .node("Tanh", &["wh"], &["t"], vec![])
        .node("Flatten", &["t"], &["y"], vec![attrs::int("axis", 1)])
        .output("y", &[-1, 6]);
    check(t, &[1, 2, 3], "Where");
}

#[test]
fn gelu_exact_and_tanh_opset_20() {
    for approx in ["none", "tanh"] {
        let t = unary(20, &[-1, 8], "Gelu", &[], vec![attrs::string("approximate", approx)], 8);
        check_with(t, &[1, 8], 2.5, ScoreKind::Logit, &format!("Gelu {approx}"));
    }
}

#[test]
fn einsum_attention_forms_with_both_operands_differentiated() {
    // q = x·Wq and k = tanh(x)·Wk (ellipsis form), k cut to 4 keys so i (5) and j (4)
    // differ; s = q·kᵀ ("bhid,bhjd->bhij") and o = s·v ("bhij,bhjd->bhid"): every operand
    // of the two attention einsums depends on x, so a transposed gradient is caught.
    let t = Tiny::new(17)
        .input("x", &[-1, 2, 5, 4])
        .init("Wq", &[4, 3], &w(12, 51))
        .init("Wk", &[4, 3], &w(12, 52))
        .init_i64("st", &[1], &[1])
        .init_i64("en", &[1], &[5])
        .init_i64("ax", &[1], &[2])
        .node("Einsum", &["x", "Wq"], &["q"], vec![attrs::string("equation", "bhid,de->bhie")])
        .node("Tanh", &["x"], &["tx"], vec![])
        .node("Einsum", &["tx", "Wk"], &["k5"], vec![attrs::string("equation", "...ij,jk->...ik")])
        .node("Slice", &["k5", "st", "en", "ax"], &["k"], vec![])
        .node("Einsum", &["q", "k"], &["s"], vec![attrs::string("equation", "bhid,bhjd->bhij")])
        .node("Slice", &["x", "st", "en", "ax"], &["v"], vec![])
        .node("Einsum", &["s", "v"], &["o"], vec![attrs::string("equation", "bhij,bhjd->bhid")])
        .node("Flatten", &["o"], &["y"], vec![attrs::int("axis", 1)])
        .output("y", &[-1, 40]);
    check(t, &[1, 2, 5, 4], "Einsum attention");
}

#[test]
fn einsum_one_operand_transpose_and_reduction() {
    // "bhid->bdhi" (transpose), "bhid->bd" (sums h and i out: the gradient is expanded back),
    // and an implicit-output form "ij,jk" with a constant right operand.
    let t = Tiny::new(17)
        .input("x", &[-1, 2, 3, 4])
        .init("c", &[1, 4, 2, 3], &w(24, 61))
        .node("Einsum", &["x"], &["tr"], vec![attrs::string("equation", "bhid->bdhi")])
        .node("Mul", &["tr", "c"], &["m"], vec![])
        .node("Einsum", &["m"], &["r"], vec![attrs::string("equation", "bdhi->bd")])
        .node("Mul", &["r", "r"], &["y"], vec![])
        .output("y", &[-1, 4]);
    check(t, &[1, 2, 3, 4], "Einsum one operand");
    let t = Tiny::new(17)
        .input("x", &[-1, 3])
        .init("W", &[3, 5], &w(15, 62))
        .node("Einsum", &["x", "W"], &["e"], vec![attrs::string("equation", "ij,jk")])
        .node("Tanh", &["e"], &["y"], vec![])
        .output("y", &[-1, 5]);
    check(t, &[1, 3], "Einsum implicit output");
}

#[test]
fn tile_sums_the_copies() {
    let t = Tiny::new(17)
        .input("x", &[-1, 2, 3])
        .init_i64("reps", &[3], &[1, 2, 3])
        .init("c", &[4, 9], &w(36, 71))
        .node("Tile", &["x", "reps"], &["t"], vec![])
        .node("Mul", &["t", "c"], &["m"], vec![])
        .node("Tanh", &["m"], &["th"], vec![])
        .node("Flatten", &["th"], &["y"], vec![attrs::int("axis", 1)])
        .output("y", &[-1, 36]);
    check(t, &[1, 2, 3], "Tile");
}

#[test]
fn reduce_max_and_min_attribute_and_input_axes() {
    let t = unary(17, &[-1, 3, 4], "ReduceMax", &[], vec![attrs::ints("axes", &[-1]), attrs::int("keepdims", 0)], 3);
    check_small_step(t, &[1, 3, 4], "ReduceMax opset 17");
    let t = Tiny::new(18)
        .input("x", &[-1, 3, 4])
        .init_i64("axes", &[1], &[1])
        .node("ReduceMin", &["x", "axes"], &["t"], vec![attrs::int("keepdims", 1)])
        .node("Flatten", &["t"], &["y"], vec![attrs::int("axis", 1)])
        .output("y", &[-1, 4]);
    check_small_step(t, &[1, 3, 4], "ReduceMin opset 18");
}

#[test]
fn reduce_max_splits_ties_evenly() {
    // max over [x, x]: each maximum is tied with its copy. Both copies move with x, so the
    // derivative is 1: an even split (½ + ½) passes, routing the whole gradient to every tie
    // (1 + 1) does not.
    let t = Tiny::new(17)
        .input("x", &[-1, 1, 4])
        .node("Concat", &["x", "x"], &["cc"], vec![attrs::int("axis", 1)])
        .node("ReduceMax", &["cc"], &["t"], vec![attrs::ints("axes", &[1]), attrs::int("keepdims", 0)])
        .node("Flatten", &["t"], &["y"], vec![attrs::int("axis", 1)])
        .output("y", &[-1, 4]);
    check_small_step(t, &[1, 1, 4], "ReduceMax ties");
}

#[test]
fn elementwise_max_min_broadcast_and_ties() {
    // Max(x, c, −x) with c broadcast: x, −x and c (column 0) all win somewhere; Min then
    // takes mx or c2.
    let t = Tiny::new(17)
        .input("x", &[-1, 2, 3])
        .init("c", &[3], &[0.6, -0.45, 0.3])
        .init("c2", &[3], &[0.7, 0.2, 0.4])
        .node("Neg", &["x"], &["n"], vec![])
        .node("Max", &["x", "c", "n"], &["mx"], vec![])
        .node("Min", &["mx", "c2"], &["mn"], vec![])
        .node("Mul", &["mn", "mx"], &["m"], vec![])
        .node("Flatten", &["m"], &["y"], vec![attrs::int("axis", 1)])
        .output("y", &[-1, 6]);
    check_small_step(t, &[1, 2, 3], "Max/Min");
    let t = Tiny::new(17).input("x", &[-1, 5]).node("Max", &["x", "x"], &["y"], vec![]).output("y", &[-1, 5]);
    check_small_step(t, &[1, 5], "Max ties");
}

#[test]
fn more_pointwise_activations() {
    for (opset, op) in [(17, "Abs"), (17, "Softplus"), (17, "Elu"), (18, "Mish"), (17, "Sin"), (17, "Cos")] {
        check_with(unary(opset, &[-1, 8], op, &[], vec![], 8), &[1, 8], 2.0, ScoreKind::Logit, op);
    }
    let t = Tiny::new(17)
        .input("x", &[-1, 6])
        .init("one", &[], &[1.0])
        .node("Mul", &["x", "x"], &["sq"], vec![])
        .node("Add", &["sq", "one"], &["p"], vec![])
        .node("Reciprocal", &["p"], &["y"], vec![])
        .output("y", &[-1, 6]);
    check(t, &[1, 6], "Reciprocal");
}

#[test]
fn cum_sum_all_directions() {
    for (exclusive, reverse) in [(0, 0), (1, 0), (0, 1), (1, 1)] {
        let t = Tiny::new(14)
            .input("x", &[-1, 2, 5])
            .init_i64("axis", &[], &[-1])
            .init("c", &[5], &[1.0, -2.0, 0.5, 3.0, -1.0])
            .node(
                "CumSum",
                &["x", "axis"],
                &["cs"],
                vec![attrs::int("exclusive", exclusive), attrs::int("reverse", reverse)],
            )
            .node("Mul", &["cs", "c"], &["m"], vec![])
            .node("Tanh", &["m"], &["t"], vec![])
            .node("Flatten", &["t"], &["y"], vec![attrs::int("axis", 1)])
            .output("y", &[-1, 10]);
        check(t, &[1, 2, 5], &format!("CumSum exclusive={exclusive} reverse={reverse}"));
    }
}

#[test]
fn slice_with_steps_and_extreme_ends() {
    // Swin's patch merging x[:, 0::2, 1::2, :], a reversed stride (-2 from the end to
    // INT64_MIN) and a stride whose last run overhangs the input (start 2, step 3 over 7).
    let t = Tiny::new(17)
        .input("x", &[-1, 4, 7, 2])
        .init_i64("st", &[2], &[0, 1])
        .init_i64("en", &[2], &[i64::MAX, i64::MAX])
        .init_i64("ax", &[2], &[1, 2])
        .init_i64("sp", &[2], &[2, 2])
        .node("Slice", &["x", "st", "en", "ax", "sp"], &["a"], vec![])
        .init_i64("st2", &[2], &[-1, 2])
        .init_i64("en2", &[2], &[i64::MIN, 100])
        .init_i64("sp2", &[2], &[-2, 3])
        .node("Slice", &["x", "st2", "en2", "ax", "sp2"], &["b"], vec![])
        .node("Mul", &["a", "a"], &["aa"], vec![])
        .node("Flatten", &["aa"], &["fa"], vec![attrs::int("axis", 1)])
        .node("Flatten", &["b"], &["fb"], vec![attrs::int("axis", 1)])
        .node("Tanh", &["fb"], &["tb"], vec![])
        .node("Concat", &["fa", "tb"], &["y"], vec![attrs::int("axis", 1)])
        .output("y", &[-1, 20]);
    check(t, &[1, 4, 7, 2], "Slice with steps");
}

#[test]
fn split_opset_18_num_outputs() {
    let t = Tiny::new(18)
        .input("x", &[-1, 6])
        .node("Split", &["x"], &["a", "b", "c"], vec![attrs::int("axis", 1), attrs::int("num_outputs", 3)])
        .node("Mul", &["a", "c"], &["ac"], vec![])
        .node("Tanh", &["b"], &["tb"], vec![])
        .node("Concat", &["ac", "tb"], &["y"], vec![attrs::int("axis", 1)])
        .output("y", &[-1, 4]);
    check(t, &[1, 6], "Split num_outputs");
}

/// `x [N,3,4]` transposed to `[3,4,N]`, so index tensors can address axis 0 without
/// touching the batch.
fn batch_last() -> Tiny {
    Tiny::new(16).input("x", &[-1, 3, 4]).node("Transpose", &["x"], &["xt"], vec![attrs::ints("perm", &[1, 2, 0])])
}

/// `[3,4,N]` back to `[N,12]`.
fn back_to_batch_first(t: Tiny, last: &str) -> Tiny {
    t.node("Transpose", &[last], &["bt"], vec![attrs::ints("perm", &[2, 0, 1])])
        .node("Flatten", &["bt"], &["y"], vec![attrs::int("axis", 1)])
        .output("y", &[-1, 12])
}

#[test]
fn gather_nd_and_scatter_nd() {
    // GatherND rows [2, 0, 2] (a repeat: scatter-add must accumulate), ScatterND writing
    // tanh of rows 0..2 over rows 1 and 2 (their old values get no gradient).
    let t = batch_last()
        .init_i64("gi", &[3, 1], &[2, 0, 2])
        .init("c", &[3, 4, 1], &w(12, 81))
        .node("GatherND", &["xt", "gi"], &["gn"], vec![])
        .node("Mul", &["gn", "c"], &["gc"], vec![])
        .init_i64("st", &[1], &[0])
        .init_i64("en", &[1], &[2])
        .init_i64("ax", &[1], &[0])
        .node("Slice", &["xt", "st", "en", "ax"], &["s"], vec![])
        .node("Tanh", &["s"], &["ts"], vec![])
        .init_i64("si", &[2, 1], &[1, 2])
        .node("ScatterND", &["xt", "si", "ts"], &["sn"], vec![])
        .node("Mul", &["gc", "sn"], &["m"], vec![]);
    check(back_to_batch_first(t, "m"), &[1, 3, 4], "GatherND/ScatterND");
}

#[test]
fn gather_elements_and_scatter_elements() {
    // GatherElements along axis 0 with repeated and negative indices (only batch element 0
    // is gathered, which is all of it at batch 1), then ScatterElements writing a reduced
    // tanh over distinct rows of each column.
    let t = batch_last()
        .init_i64("gi", &[3, 4, 1], &[2, 0, -1, 1, 2, 2, 0, 1, -3, 0, 2, 1])
        .node("GatherElements", &["xt", "gi"], &["ge"], vec![attrs::int("axis", 0)])
        .node("Mul", &["ge", "xt"], &["gx"], vec![])
        .init_i64("ax2", &[1], &[2])
        .node("Tanh", &["xt"], &["tx"], vec![])
        .node("ReduceSum", &["tx", "ax2"], &["r"], vec![attrs::int("keepdims", 1)])
        .init_i64("st", &[1], &[0])
        .init_i64("en", &[1], &[2])
        .init_i64("ax", &[1], &[0])
        .node("Slice", &["r", "st", "en", "ax"], &["upd"], vec![])
        .init_i64("si", &[2, 4, 1], &[0, 2, 1, 1, 2, 0, 0, 2])
        .node("ScatterElements", &["xt", "si", "upd"], &["se"], vec![attrs::int("axis", 0)])
        .node("Mul", &["gx", "se"], &["m"], vec![]);
    check(back_to_batch_first(t, "m"), &[1, 3, 4], "GatherElements/ScatterElements");
}

#[test]
fn reduce_l2_normalize_sum_square_and_l1() {
    // F.normalize as SwinV2 exports it: x / max(‖x‖₂, eps) over the last axis.
    let t = Tiny::new(17)
        .input("x", &[-1, 3, 4])
        .init("eps", &[], &[1e-6])
        .node("ReduceL2", &["x"], &["n"], vec![attrs::ints("axes", &[-1]), attrs::int("keepdims", 1)])
        .node("Clip", &["n", "eps"], &["nc"], vec![])
        .node("Div", &["x", "nc"], &["u"], vec![])
        .node("Flatten", &["u"], &["y"], vec![attrs::int("axis", 1)])
        .output("y", &[-1, 12]);
    check(t, &[1, 3, 4], "ReduceL2 normalize");
    let t = Tiny::new(18)
        .input("x", &[-1, 3, 4])
        .init_i64("axes", &[1], &[1])
        .node("ReduceSumSquare", &["x", "axes"], &["t"], vec![attrs::int("keepdims", 0)])
        .node("Flatten", &["t"], &["y"], vec![attrs::int("axis", 1)])
        .output("y", &[-1, 4]);
    check(t, &[1, 3, 4], "ReduceSumSquare");
    let t = unary(17, &[-1, 3, 4], "ReduceL1", &[], vec![attrs::ints("axes", &[2]), attrs::int("keepdims", 0)], 3);
    check(t, &[1, 3, 4], "ReduceL1");
}

/// Opt-in check of whole exported networks (e.g. tiny random-weight ViT/Swin exports):
/// `CAMSCOPE_FD_MODELS=a.onnx:b.onnx cargo test --test grad_rules -- --ignored`. The
/// gradient w.r.t. the input image goes through every rule on the path; first graph input
/// and output, batch 1.
#[test]
#[ignore = "needs exported models named in CAMSCOPE_FD_MODELS"]
fn exported_models_from_env() {
    let Some(list) = std::env::var_os("CAMSCOPE_FD_MODELS") else { return };
    for path in std::env::split_paths(&list) {
        let model = camscope::onnx::io::read_model(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let g = model.graph.as_ref().unwrap();
        let inp = g.input[0].name.clone().unwrap();
        let out = g.output[0].name.clone().unwrap();
        let (_, dims) = camscope::onnx::value_info_dims(&g.input[0]).unwrap();
        let dims: Vec<usize> = dims.unwrap().iter().map(|&d| d.max(1) as usize).collect();
        let a = analyse(model, &inp, &out, &dims).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let x = array(&dims, 5, 0.0);
        let c = fd_check(&a, &inp, ScoreKind::Logit, &x, None, H, 200);
        eprintln!("{}: {c:?} relative {}", path.display(), c.relative());
        // A zero-initialised head (torchvision's ViT) gives zero gradients on both sides.
        let all_zero = c.max_grad == 0.0 && c.max_abs_err == 0.0;
        assert!(all_zero || c.agrees(1e-2), "{}: {c:?}", path.display());
    }
}

#[test]
fn slice_with_ends_and_steps_from_the_input_shape() {
    // x[:, :, 1:W-1:C-1] with W and C read from the input's shape (timm's Swin crops its
    // padding this way): not foldable into constants, so the rule slices a ramp of positions.
    let t = Tiny::new(17)
        .input("x", &[-1, 3, 6])
        .init_i64("i1", &[1], &[1])
        .init_i64("i2", &[1], &[2])
        .init_i64("one", &[1], &[1])
        .init_i64("ax", &[1], &[2])
        .node("Shape", &["x"], &["sh"], vec![])
        .node("Gather", &["sh", "i2"], &["w"], vec![attrs::int("axis", 0)])
        .node("Sub", &["w", "one"], &["en"], vec![])
        .node("Gather", &["sh", "i1"], &["ch"], vec![attrs::int("axis", 0)])
        .node("Sub", &["ch", "one"], &["sp"], vec![])
        .node("Slice", &["x", "one", "en", "ax", "sp"], &["s"], vec![])
        .node("Mul", &["s", "s"], &["t"], vec![])
        .node("Flatten", &["t"], &["y"], vec![attrs::int("axis", 1)])
        .output("y", &[-1, 6]);
    check(t, &[1, 3, 6], "Slice with run-time ends and steps");
}

#[test]
fn gather_with_indices_computed_at_run_time() {
    // indices = c − W with W read from the input's shape: [0, −2, 4, 0] (a negative and a
    // repeat), gathered along the last axis: the ScatterND-add path.
    let t = Tiny::new(17)
        .input("x", &[-1, 4, 5])
        .init_i64("i2", &[1], &[2])
        .init_i64("c", &[2, 2], &[5, 3, 9, 5])
        .init("wt", &[2, 2], &[1.0, -2.0, 0.5, 3.0])
        .node("Shape", &["x"], &["sh"], vec![])
        .node("Gather", &["sh", "i2"], &["w"], vec![attrs::int("axis", 0)])
        .node("Sub", &["c", "w"], &["idx"], vec![])
        .node("Gather", &["x", "idx"], &["g"], vec![attrs::int("axis", 2)])
        .node("Mul", &["g", "wt"], &["m"], vec![])
        .node("Tanh", &["m"], &["t"], vec![])
        .node("Flatten", &["t"], &["y"], vec![attrs::int("axis", 1)])
        .output("y", &[-1, 16]);
    check(t, &[1, 4, 5], "Gather with run-time indices");
}
