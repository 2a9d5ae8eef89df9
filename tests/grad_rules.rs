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

#[test]
fn batch_normalization_inference() {
    let t = Tiny::new(15)
        .input("x", &[-1, 3, 2, 2])
        .init("s", &[3], &[0.5, -1.5, 2.0])
        .init("b", &[3], &[0.1, 0.2, 0.3])
        .init("m", &[3], &[0.3, -0.2, 0.0])
        .init("v", &[3], &[0.5, 2.0, 1.0])
        .node("BatchNormalization", &["x", "s", "b", "m", "v"], &["t"], vec![attrs::float("epsilon", 1e-3)])
        .node("Mul", &["t", "x"], &["u"], vec![])
        .node("Flatten", &["u"], &["y"], vec![attrs::int("axis", 1)])
        .output("y", &[-1, 12]);
    check(t, &[1, 3, 2, 2], "BatchNormalization");
}

#[test]
fn layer_normalization() {
    let t = Tiny::new(17)
        .input("x", &[-1, 2, 5])
        .init("g", &[5], &w(5, 21))
        .init("b", &[5], &w(5, 22))
        .node("LayerNormalization", &["x", "g", "b"], &["t"], vec![attrs::int("axis", -1)])
        .node("Flatten", &["t"], &["y"], vec![attrs::int("axis", 1)])
        .output("y", &[-1, 10]);
    check(t, &[1, 2, 5], "LayerNormalization");
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
