//! Finding, from the graph alone, an operator without a gradient rule that blocks every
//! layer: it lies on every path from the image to the score and only flat `[N, C]` tensors
//! come after it, so no feature map can be explained with gradients whatever its shape.
//!
//! Why a static check: the general answer needs every tensor's measured shape (the probe
//! runs the model twice) and the body session, 3 s on a ViT-B/16 here, to tell the user
//! what one look at the graph already shows. When the check cannot prove the claim (a rank
//! it cannot infer, a feature map that may follow the node) it says nothing, and the full
//! analysis decides as before.

use std::collections::{HashMap, HashSet, VecDeque};

use super::rules::{is_non_differentiable, rule_for};
use crate::onnx::graph::{Constants, GraphIndex};
use crate::onnx::shapes::ShapeFacts;
use crate::onnx::{GraphProto, NodeProto, attr_int, attr_ints, node_label, op};

/// The blocking node: its op type and its own name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StaticBlock {
    pub op: String,
    pub node: String,
}

/// Inputs of `node` that gradients flow into (not shapes, axes, indices or pads).
fn data_inputs(node: &NodeProto) -> Vec<usize> {
    let n = node.input.len();
    match op(node) {
        "Reshape" | "Expand" | "Tile" | "Slice" | "Pad" | "Squeeze" | "Unsqueeze" | "Split" | "Gather"
        | "GatherElements" | "GatherND" | "ReduceMean" | "ReduceSum" | "ReduceMax" | "ReduceMin" | "ReduceL1"
        | "ReduceL2" | "ReduceSumSquare" | "Resize" | "Upsample" | "CumSum" | "TopK" | "Dropout" => vec![0],
        "Where" => vec![1, 2],
        "Clip" => vec![0],
        "ScatterND" | "ScatterElements" => vec![0, 2],
        _ => (0..n).collect(),
    }
    .into_iter()
    .filter(|&i| node.input.get(i).is_some_and(|t| !t.is_empty()))
    .collect()
}

/// Nodes the image reaches through inputs that carry gradients, skipping node `skip`.
fn reached(g: &GraphProto, index: &GraphIndex, input: &str, skip: Option<usize>) -> HashSet<String> {
    let mut seen: HashSet<String> = HashSet::from([input.to_owned()]);
    let mut queue = VecDeque::from([input.to_owned()]);
    while let Some(t) = queue.pop_front() {
        for &c in index.consumers.get(&t).into_iter().flatten() {
            let node = &g.node[c];
            if Some(c) == skip || is_non_differentiable(op(node)) {
                continue;
            }
            if !data_inputs(node).iter().any(|&i| node.input[i] == t) {
                continue;
            }
            for o in node.output.iter().filter(|o| !o.is_empty()) {
                if seen.insert(o.clone()) {
                    queue.push_back(o.clone());
                }
            }
        }
    }
    seen
}

/// Ops whose output has the rank of their first input.
fn keeps_rank(op_type: &str) -> bool {
    matches!(
        op_type,
        "Relu"
            | "LeakyRelu"
            | "Sigmoid"
            | "HardSigmoid"
            | "HardSwish"
            | "Tanh"
            | "Erf"
            | "Exp"
            | "Log"
            | "Sqrt"
            | "Softmax"
            | "LogSoftmax"
            | "Gelu"
            | "Abs"
            | "Neg"
            | "Reciprocal"
            | "Softplus"
            | "Elu"
            | "Selu"
            | "Mish"
            | "Clip"
            | "Identity"
            | "Dropout"
            | "Cast"
            | "CastLike"
            | "LpNormalization"
            | "Hardmax"
            | "Transpose"
            | "Shrink"
            | "ThresholdedRelu"
            | "Celu"
            | "Softsign"
            | "Sin"
            | "Cos"
            | "CumSum"
            | "LayerNormalization"
            | "BatchNormalization"
            | "InstanceNormalization"
    )
}

/// Broadcasting ops: the output has the largest rank of their inputs.
fn broadcasts(op_type: &str) -> bool {
    matches!(op_type, "Add" | "Sub" | "Mul" | "Div" | "Pow" | "Max" | "Min" | "Sum" | "Mean" | "Where" | "PRelu")
}

/// Ranks the forward and backward rules derive for the outputs of `nodes` and their inputs,
/// to a fixed point, on top of the declared facts (which the result does not repeat).
fn infer_ranks(
    g: &GraphProto,
    index: &GraphIndex,
    consts: &Constants,
    facts: &ShapeFacts,
    nodes: &[usize],
) -> HashMap<String, usize> {
    let mut rank: HashMap<String, usize> = HashMap::new();
    let known = |rank: &HashMap<String, usize>, t: &str| -> Option<usize> {
        rank.get(t).copied().or_else(|| facts.get(t).map(|f| f.rank()))
    };
    for _ in 0..(nodes.len() + 2) {
        let before = rank.len();
        for &i in nodes {
            let n = &g.node[i];
            let (Some(out), ins) = (n.output.first(), &n.input) else { continue };
            let r_in = |k: usize, rank: &HashMap<String, usize>| ins.get(k).and_then(|t| known(rank, t));
            let r_out = known(&rank, out);
            // Forward.
            let fwd = match op(n) {
                "Gemm" | "Flatten" => Some(2),
                o if keeps_rank(o) => r_in(0, &rank),
                o if broadcasts(o) => {
                    let rs: Option<Vec<usize>> =
                        ins.iter().filter(|t| !t.is_empty()).map(|t| known(&rank, t)).collect();
                    rs.and_then(|v| v.into_iter().max())
                }
                "MatMul" => match (r_in(0, &rank), r_in(1, &rank)) {
                    (Some(a), Some(b)) if a >= 2 && b >= 2 => Some(a.max(b)),
                    (Some(a), Some(1)) if a >= 2 => Some(a - 1),
                    _ => None,
                },
                "Reshape" => ins.get(1).and_then(|s| consts.ints(s)).map(|v| v.len()),
                "Gather" => match (r_in(0, &rank), r_in(1, &rank)) {
                    (Some(d), Some(k)) if d >= 1 => Some(d - 1 + k),
                    _ => None,
                },
                "GlobalAveragePool" | "GlobalMaxPool" => r_in(0, &rank),
                "ReduceMean" | "ReduceSum" | "ReduceMax" | "ReduceMin" | "ReduceL1" | "ReduceL2"
                | "ReduceSumSquare" => {
                    let keep = attr_int(n, "keepdims").unwrap_or(1) != 0;
                    let axes = attr_ints(n, "axes").or_else(|| ins.get(1).and_then(|a| consts.ints(a)));
                    match (r_in(0, &rank), keep, axes) {
                        (Some(r), true, _) => Some(r),
                        (Some(r), false, Some(a)) if a.len() <= r => Some(r - a.len()),
                        _ => None,
                    }
                }
                _ => None,
            };
            if let (Some(r), None) = (fwd, r_out) {
                rank.insert(out.clone(), r);
            }
            // Backward: what the node's definition says of its inputs.
            let out_r = known(&rank, out);
            let b_rank = r_in(1, &rank);
            let mut set = |t: &String, r: usize| {
                if !t.is_empty() && known(&rank, t).is_none() && !index.initializers.contains_key(t) {
                    rank.insert(t.clone(), r);
                }
            };
            match op(n) {
                "Gemm" => {
                    for t in ins.iter().take(2) {
                        set(t, 2);
                    }
                }
                o if keeps_rank(o) => {
                    if let (Some(r), Some(t)) = (out_r, ins.first()) {
                        set(t, r);
                    }
                }
                "MatMul" => {
                    if let (Some(r), Some(2), Some(t)) = (out_r, b_rank, ins.first()) {
                        if r >= 2 {
                            set(t, r);
                        }
                    }
                }
                _ => {}
            }
        }
        if rank.len() == before {
            break;
        }
    }
    rank
}

/// The node without a gradient rule that blocks every layer, if the graph shows one: every
/// gradient-carrying path from `input` to `output` goes through it, and every tensor between
/// it and `output` has a known rank of at most 2 (so no feature map, `[N, C, H, W]` or
/// `[N, T, C]`, can follow it).
pub fn static_blocker(
    g: &GraphProto,
    index: &GraphIndex,
    consts: &Constants,
    facts: &ShapeFacts,
    input: &str,
    output: &str,
) -> Option<StaticBlock> {
    let from_input = reached(g, index, input, None);
    if !from_input.contains(output) {
        return None;
    }
    let to_score = index.ancestors(&[output]);
    // Candidates: rule-less nodes on a path, the ones nearest the score first.
    let blockers: Vec<usize> = index
        .order
        .iter()
        .rev()
        .copied()
        .filter(|&i| {
            let n = &g.node[i];
            rule_for(op(n)).is_none()
                && !is_non_differentiable(op(n))
                && data_inputs(n).iter().any(|&k| from_input.contains(&n.input[k]))
                && n.output.iter().any(|o| to_score.contains(o))
        })
        .collect();
    for i in blockers {
        if reached(g, index, input, Some(i)).contains(output) {
            continue;
        }
        let node = &g.node[i];
        let outs: Vec<&str> = node.output.iter().map(String::as_str).filter(|o| !o.is_empty()).collect();
        let after = index.descendants(g, &outs);
        let region: HashSet<&String> = after.iter().filter(|t| to_score.contains(*t)).collect();
        let nodes: Vec<usize> = index
            .order
            .iter()
            .copied()
            .filter(|&k| g.node[k].output.iter().any(|o| region.contains(o)) || k == i)
            .collect();
        let ranks = infer_ranks(g, index, consts, facts, &nodes);
        let rank = |t: &str| ranks.get(t).copied().or_else(|| facts.get(t).map(|f| f.rank()));
        if region.iter().all(|t| rank(t).is_some_and(|r| r <= 2)) {
            return Some(StaticBlock { op: op(node).to_owned(), node: node_label(node) });
        }
        // A feature map may follow the nearest blocker: the full analysis names the layers.
        return None;
    }
    None
}
