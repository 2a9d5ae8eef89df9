//! Row pruning of a class-token head.
//!
//! Where the score reads only the leading tokens of a token map (ViT's `x[:, 0]`), every
//! op after the target whose result is read only at those rows can run on those rows
//! alone. That is more than the per-token ops after the last attention: the attention's
//! queries, its scores, softmax, weighted sum and output projection are per query row too,
//! so of the last attention only the keys and values need every token. Exporters move the
//! token axis around (torchvision's attention runs `[T, N, C]`, merges tokens and batch
//! into `[T·N, C]` for its output projection and folds heads into the batch), so the
//! analysis follows one axis per tensor through transposes and reshapes, with sizes as
//! `k·N^p` monomials so that it holds at any batch size.
//!
//! Two passes. [`needs`] walks backwards from the readout and finds, for each tensor, the
//! axis of which only the leading entries are read; [`prune`] rewrites the nodes that
//! produce such tensors to compute those rows alone, slicing their full inputs. A node
//! that cannot be rewritten (an input axis that is not fixed, a reshape without known
//! sizes) is denied and the analysis runs again without it, so what is pruned is always
//! consistent. On ViT-B/16 the class switch's backward drops the attention's query rows
//! and the output projection's 196 rows of zero gradient.

use std::collections::{HashMap, HashSet};

use crate::onnx::builder::Builder;
use crate::onnx::graph::{Constants, GraphIndex};
use crate::onnx::shapes::{Dim, ShapeFacts};
use crate::onnx::{GraphProto, NodeProto, attr_int, attr_ints, attrs, op};

/// A size `k·N^p`: `k` entries per batch power `p` (the token axis merged with the batch
/// holds `1·N` class-token rows).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Extent {
    pub coef: i64,
    pub pow: u32,
}

impl Extent {
    fn fixed(coef: i64) -> Self {
        Self { coef, pow: 0 }
    }

    fn times(self, o: Self) -> Self {
        Self { coef: self.coef * o.coef, pow: self.pow + o.pow }
    }

    /// `self / o` where that is a whole monomial.
    fn over(self, o: Self) -> Option<Self> {
        (o.coef != 0 && self.coef % o.coef == 0 && self.pow >= o.pow)
            .then(|| Self { coef: self.coef / o.coef, pow: self.pow - o.pow })
    }

    fn at_most(self, o: Self) -> bool {
        self.coef <= o.coef && self.pow <= o.pow
    }
}

fn product(m: &[(i64, u32)]) -> Extent {
    m.iter().fold(Extent::fixed(1), |acc, &(k, p)| acc.times(Extent { coef: k, pow: p }))
}

/// Which part of one input a node reads to produce the leading rows of its output.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Role {
    /// The leading entries of this axis.
    Rows(usize, Extent),
    /// All of it (a weight, a broadcast operand, the keys of an attention).
    Whole,
}

/// The tensor's rows: a pruned axis and how many leading entries it keeps.
pub(crate) type Rows = (usize, Extent);

fn norm_axis(a: i64, r: usize) -> Option<usize> {
    let a = if a < 0 { a + r as i64 } else { a };
    (0..r as i64).contains(&a).then_some(a as usize)
}

/// For node `n` to produce only the leading `keep` entries of axis `ax` of its output:
/// what each input must supply. `None` where the op mixes rows or is not understood.
pub(crate) fn roles(
    n: &NodeProto,
    ax: usize,
    keep: Extent,
    facts: &ShapeFacts,
    consts: &Constants,
    opset: i64,
) -> Option<Vec<Role>> {
    let out = facts.get(n.output.first()?)?;
    let ro = out.rank();
    let dims_of = |t: &str| facts.get(t).map(|f| f.dims.clone());
    let rank_of = |t: &str| facts.get(t).map(|f| f.rank());
    let only_first = |role: Role| {
        let mut v = vec![Role::Whole; n.input.len()];
        v[0] = role;
        v
    };
    // An operand broadcast against the output: rows where its axis is as long as the output's.
    let broadcast = |t: &str| -> Option<Role> {
        if t.is_empty() {
            return Some(Role::Whole);
        }
        let d = dims_of(t)?;
        let Some(aligned) = (ax + d.len()).checked_sub(ro) else { return Some(Role::Whole) };
        if d[aligned] == out.dims[ax] {
            Some(Role::Rows(aligned, keep))
        } else if d[aligned] == Dim::Fixed(1) {
            Some(Role::Whole)
        } else {
            None
        }
    };
    match op(n) {
        o if super::target::PER_ELEMENT.contains(&o) => Some(only_first(Role::Rows(ax, keep))),
        "Add" | "Sub" | "Mul" | "Div" | "Pow" | "Where" | "Max" | "Min" | "Sum" | "Mean" | "PRelu" => {
            n.input.iter().map(|t| broadcast(t)).collect()
        }
        "LayerNormalization" => {
            let from = norm_axis(attr_int(n, "axis").unwrap_or(-1), ro)?;
            (ax < from).then(|| only_first(Role::Rows(ax, keep)))
        }
        "Softmax" | "LogSoftmax" => {
            let default = if opset >= 13 { -1 } else { 1 };
            let axis = norm_axis(attr_int(n, "axis").unwrap_or(default), ro)?;
            (ax < axis || (opset >= 13 && ax != axis)).then(|| only_first(Role::Rows(ax, keep)))
        }
        "ReduceMean" | "ReduceSum" | "ReduceMax" | "ReduceMin" | "ReduceL2" => {
            let ri = rank_of(&n.input[0])?;
            let axes = match attr_ints(n, "axes") {
                Some(a) => a,
                None => n.input.get(1).filter(|a| !a.is_empty()).and_then(|a| consts.ints(a))?,
            };
            let axes: Vec<usize> = axes.iter().map(|&a| norm_axis(a, ri)).collect::<Option<_>>()?;
            let kept: Vec<usize> = if attr_int(n, "keepdims").unwrap_or(1) != 0 {
                (0..ri).collect()
            } else {
                (0..ri).filter(|i| !axes.contains(i)).collect()
            };
            let i = *kept.get(ax)?;
            (!axes.contains(&i)).then(|| only_first(Role::Rows(i, keep)))
        }
        "MatMul" => {
            let (ra, rb) = (rank_of(&n.input[0])?, rank_of(&n.input[1])?);
            if ra < 2 || rb < 2 {
                return None;
            }
            if ax == ro - 2 {
                Some(vec![Role::Rows(ra - 2, keep), Role::Whole])
            } else if ax == ro - 1 {
                Some(vec![Role::Whole, Role::Rows(rb - 1, keep)])
            } else {
                n.input.iter().map(|t| broadcast(t)).collect()
            }
        }
        "Gemm" => {
            let (ta, tb) = (attr_int(n, "transA").unwrap_or(0) != 0, attr_int(n, "transB").unwrap_or(0) != 0);
            let mut v = vec![Role::Whole; n.input.len()];
            match ax {
                0 => v[0] = Role::Rows(usize::from(ta), keep),
                1 => v[1] = Role::Rows(usize::from(!tb), keep),
                _ => return None,
            }
            if let Some(c) = n.input.get(2) {
                v[2] = broadcast(c)?;
            }
            Some(v)
        }
        "Transpose" => {
            let perm = attr_ints(n, "perm").unwrap_or_else(|| (0..ro as i64).rev().collect());
            let from = usize::try_from(*perm.get(ax)?).ok()?;
            Some(only_first(Role::Rows(from, keep)))
        }
        "Reshape" => {
            let (mi, mo) = (facts.monomials(&n.input[0])?, facts.monomials(&n.output[0])?);
            let before = product(&mo[..ax]);
            let after = product(&mo[ax + 1..]);
            // The input axis whose leading entries are the same elements: as many elements
            // before it, and the kept elements of each outer block a whole number of its rows.
            (0..mi.len()).filter(|&b| product(&mi[..b]) == before && mi[b] != (1, 0)).find_map(|b| {
                let k = keep.times(after).over(product(&mi[b + 1..]))?;
                let full = Extent { coef: mi[b].0, pow: mi[b].1 };
                (k.at_most(full) && k.times(product(&mi[b + 1..])) == keep.times(after))
                    .then(|| vec![Role::Rows(b, k), Role::Whole])
            })
        }
        _ => None,
    }
}

/// Whether `n` reads only the leading `prefix` entries of an axis of `t` (the readout:
/// `Gather` or `Slice` of the class token): that axis.
pub(crate) fn reads_leading(
    n: &NodeProto,
    t: &str,
    prefix: i64,
    facts: &ShapeFacts,
    consts: &Constants,
) -> Option<usize> {
    if n.input.first().map(String::as_str) != Some(t) {
        return None;
    }
    let f = facts.get(t).filter(|f| f.is_float() && f.rank() >= 2)?;
    let r = f.rank();
    match op(n) {
        "Gather" => {
            let ax = norm_axis(attr_int(n, "axis").unwrap_or(0), r)?;
            let size = f.dims[ax].fixed()?;
            let idx = consts.ints(n.input.get(1)?)?;
            let ok = !idx.is_empty() && idx.iter().all(|&i| (0..prefix).contains(&(if i < 0 { i + size } else { i })));
            ok.then_some(ax)
        }
        "Slice" => {
            let ints = |k: usize| n.input.get(k).filter(|s| !s.is_empty()).and_then(|i| consts.ints(i));
            let (starts, ends) = (ints(1)?, ints(2)?);
            let axes = ints(3).unwrap_or_else(|| (0..starts.len() as i64).collect());
            let steps = ints(4).unwrap_or_else(|| vec![1; starts.len()]);
            let [s, e, a, st] = [&starts, &ends, &axes, &steps].map(|v| v.first().copied());
            if starts.len() != 1 || st != Some(1) {
                return None;
            }
            let ax = norm_axis(a?, r)?;
            let size = f.dims[ax].fixed()?;
            let clamp = |v: i64| if v < 0 { (v + size).max(0) } else { v.min(size) };
            (clamp(s?) < clamp(e?) && clamp(e?) <= prefix).then_some(ax)
        }
        _ => None,
    }
}

/// The node's one output (optional outputs left empty do not count): nodes with several
/// are never pruned.
fn single_output(n: &NodeProto) -> Option<&str> {
    let mut outs = n.output.iter().filter(|o| !o.is_empty());
    let o = outs.next()?;
    outs.next().is_none().then_some(o.as_str())
}

/// Backward pass: for each tensor of `nodes` (a topologically ordered head), the axis of
/// which only the leading entries are read, and how many. `whole` lists tensors that must
/// stay whole (the target, whose gradient covers every token; the score).
pub(crate) fn needs(
    nodes: &[NodeProto],
    prefix: i64,
    whole: &HashSet<String>,
    facts: &ShapeFacts,
    consts: &Constants,
    opset: i64,
) -> HashMap<String, Rows> {
    let mut consumers: HashMap<&str, Vec<usize>> = HashMap::new();
    for (i, n) in nodes.iter().enumerate() {
        let mut seen = HashSet::new();
        for t in n.input.iter().filter(|t| !t.is_empty()) {
            if seen.insert(t.as_str()) {
                consumers.entry(t.as_str()).or_default().push(i);
            }
        }
    }
    let mut need: HashMap<String, Rows> = HashMap::new();
    let role_in = |need: &HashMap<String, Rows>, c: &NodeProto, t: &str| -> Role {
        let out_need = single_output(c).and_then(|o| need.get(o).copied());
        match out_need {
            Some((ax, keep)) => match roles(c, ax, keep, facts, consts, opset) {
                Some(r) => {
                    let mine: Vec<Role> =
                        c.input.iter().zip(&r).filter(|(i, _)| i.as_str() == t).map(|(_, r)| *r).collect();
                    if mine.windows(2).all(|w| w[0] == w[1]) { mine[0] } else { Role::Whole }
                }
                None => Role::Whole,
            },
            None => reads_leading(c, t, prefix, facts, consts)
                .map_or(Role::Whole, |ax| Role::Rows(ax, Extent::fixed(prefix))),
        }
    };
    // In reverse topological order every consumer's need is settled before its inputs'.
    // The head's inputs (activations, side tensors, weights) are never pruned: a consumer
    // that reads their leading rows slices them.
    let settle = |need: &mut HashMap<String, Rows>, t: &str| {
        if t.is_empty() || whole.contains(t) || need.contains_key(t) {
            return;
        }
        let Some(cs) = consumers.get(t) else { return };
        let mut common: Option<Role> = None;
        for &c in cs {
            let r = role_in(need, &nodes[c], t);
            if r == Role::Whole || common.is_some_and(|x| x != r) {
                return;
            }
            common = Some(r);
        }
        if let Some(Role::Rows(ax, keep)) = common {
            need.insert(t.to_owned(), (ax, keep));
        }
    };
    for n in nodes.iter().rev() {
        for o in &n.output {
            settle(&mut need, o);
        }
    }
    need
}

/// A slice the pruned head takes of a whole tensor: the gradient goes back through a pad.
#[derive(Debug, Clone)]
pub(crate) struct TokenSlice {
    pub full: String,
    pub small: String,
    pub axis: usize,
    pub rank: usize,
    /// Entries the full tensor has on the axis, and the slice keeps.
    pub size: i64,
    pub kept: i64,
}

/// What [`prune`] did: the rewritten nodes (slices included) and the slices.
pub(crate) struct Pruned {
    pub nodes: Vec<NodeProto>,
    pub slices: Vec<TokenSlice>,
    pub pruned: HashMap<String, Rows>,
}

/// Forward pass: rewrite `nodes` to compute only the rows [`needs`] found read. Tensors
/// that cannot be pruned after all are added to `deny` and the caller runs again.
#[allow(clippy::too_many_arguments)]
fn try_prune(
    nodes: &[NodeProto],
    need: &HashMap<String, Rows>,
    activation: &str,
    prefix: i64,
    facts: &ShapeFacts,
    consts: &Constants,
    opset: i64,
    b: &mut Builder,
) -> Result<Pruned, String> {
    let mut pruned: HashMap<String, Rows> = HashMap::new();
    let mut small: HashMap<(String, usize), String> = HashMap::new();
    let mut slices: Vec<TokenSlice> = Vec::new();
    let mut out_nodes: Vec<NodeProto> = Vec::with_capacity(nodes.len());
    for n in nodes {
        let target = single_output(n).and_then(|o| need.get(o).map(|&r| (o.to_owned(), r)));
        let Some((o, (ax, keep))) = target else {
            // Not pruned: it may read pruned tensors only as the readout does.
            for t in n.input.iter().filter(|t| pruned.contains_key(t.as_str())) {
                if reads_leading(n, t, prefix, facts, consts).is_none() {
                    return Err(n.output.first().cloned().unwrap_or_default());
                }
            }
            out_nodes.push(n.clone());
            continue;
        };
        let Some(r) = roles(n, ax, keep, facts, consts, opset) else { return Err(o) };
        let mut m = n.clone();
        let mut added: Vec<NodeProto> = Vec::new();
        for (j, inp) in n.input.iter().enumerate() {
            if inp.is_empty() {
                continue;
            }
            match r[j] {
                Role::Whole if op(n) == "Reshape" && j == 1 => {
                    let before = b.nodes.len();
                    let shape = facts.monomials(&o).and_then(|m| shape_from_facts(&m, Some(ax), activation, facts, b));
                    let Some(shape) = shape else { return Err(o) };
                    added.extend(b.nodes.drain(before..));
                    m.input[j] = shape;
                }
                Role::Whole if pruned.contains_key(inp.as_str()) => return Err(o),
                Role::Whole => {}
                Role::Rows(ai, ki) => match pruned.get(inp.as_str()) {
                    Some(&p) if p == (ai, ki) => {}
                    Some(_) => return Err(o),
                    None => {
                        let Some(f) = facts.get(inp) else { return Err(o) };
                        let Some(size) = f.dims.get(ai).and_then(|d| d.fixed()) else { return Err(o) };
                        if ki.pow != 0 || ki.coef > size {
                            return Err(o);
                        }
                        if ki.coef == size {
                            continue;
                        }
                        let s = match small.get(&(inp.clone(), ai)) {
                            Some(s) => s.clone(),
                            None => {
                                let before = b.nodes.len();
                                let s = b.slice(inp, &[0], &[ki.coef], &[ai as i64]);
                                added.extend(b.nodes.drain(before..));
                                small.insert((inp.clone(), ai), s.clone());
                                slices.push(TokenSlice {
                                    full: inp.clone(),
                                    small: s.clone(),
                                    axis: ai,
                                    rank: f.rank(),
                                    size,
                                    kept: ki.coef,
                                });
                                s
                            }
                        };
                        m.input[j] = s;
                    }
                },
            }
        }
        out_nodes.extend(added);
        out_nodes.push(m);
        pruned.insert(o, (ax, keep));
    }
    Ok(Pruned { nodes: out_nodes, slices, pruned })
}

/// A shape tensor built from sizes known as `k·N^p` (see [`ShapeFacts::monomials`]): fixed
/// axes as constants, axes that follow the batch as multiples of the batch read off the
/// activations, and axis `infer` (if any) as `-1`. Used for the shapes the head reads (a
/// body tensor's `Shape`) and for a pruned reshape's target.
pub(crate) fn shape_from_facts(
    m: &[(i64, u32)],
    infer: Option<usize>,
    activation: &str,
    facts: &ShapeFacts,
    b: &mut Builder,
) -> Option<String> {
    let mut parts: Vec<String> = Vec::new();
    let mut run: Vec<i64> = Vec::new();
    let mut batch: Option<String> = None;
    for (i, &(k, p)) in m.iter().enumerate() {
        if Some(i) == infer {
            run.push(-1);
            continue;
        }
        match p {
            0 => run.push(k),
            1 => {
                if !run.is_empty() {
                    parts.push(b.const_i64("dims", &[run.len() as i64], &run));
                    run.clear();
                }
                let n = match &batch {
                    Some(n) => n.clone(),
                    None => {
                        let n = batch_times(b, facts, activation, 1)?;
                        batch = Some(n.clone());
                        n
                    }
                };
                if k == 1 {
                    parts.push(n);
                } else {
                    let kk = b.const_i64("dims", &[1], &[k]);
                    parts.push(b.op("Mul", &[&n, &kk], vec![]));
                }
            }
            _ => return None,
        }
    }
    if !run.is_empty() || parts.is_empty() {
        parts.push(b.const_i64("dims", &[run.len() as i64], &run));
    }
    if parts.len() == 1 {
        return parts.pop();
    }
    let refs: Vec<&str> = parts.iter().map(String::as_str).collect();
    Some(b.op("Concat", &refs, vec![attrs::int("axis", 0)]))
}

/// `k·N` as a 1-D tensor of one element, with the batch size `N` read off the activations
/// (whose batch axis may itself be folded: `u·N` entries).
pub(crate) fn batch_times(b: &mut Builder, facts: &ShapeFacts, activation: &str, k: i64) -> Option<String> {
    let af = facts.get(activation)?;
    let at = af.dims.iter().position(|d| *d == Dim::Batch)?;
    let u = facts.monomials(activation)?[at].0;
    let sa = b.shape_of(activation);
    let n = b.slice(&sa, &[at as i64], &[at as i64 + 1], &[0]);
    let scaled = if k == u {
        n
    } else if u != 0 && k % u == 0 {
        let f = b.const_i64("dims", &[1], &[k / u]);
        b.op("Mul", &[&n, &f], vec![])
    } else {
        let (uu, kk) = (b.const_i64("dims", &[1], &[u]), b.const_i64("dims", &[1], &[k]));
        let one = b.op("Div", &[&n, &uu], vec![]);
        b.op("Mul", &[&one, &kk], vec![])
    };
    Some(scaled)
}

/// Prune `nodes` (see the module doc), retrying without the tensors that turn out not to
/// be prunable. `None` when nothing can be pruned.
#[allow(clippy::too_many_arguments)]
pub(crate) fn prune(
    nodes: &[NodeProto],
    prefix: i64,
    whole: &HashSet<String>,
    activation: &str,
    facts: &ShapeFacts,
    consts: &Constants,
    opset: i64,
    b: &mut Builder,
) -> Option<Pruned> {
    let mut deny = whole.clone();
    for _ in 0..=nodes.len() {
        let need = needs(nodes, prefix, &deny, facts, consts, opset);
        if need.is_empty() {
            return None;
        }
        let (n0, i0) = (b.nodes.len(), b.initializers.len());
        match try_prune(nodes, &need, activation, prefix, facts, consts, opset, b) {
            Ok(p) => return Some(p),
            Err(t) => {
                b.nodes.truncate(n0);
                b.initializers.truncate(i0);
                if !deny.insert(t) {
                    return None;
                }
            }
        }
    }
    None
}

/// The model's nodes with a row-pruned head in place of the original one: the body then
/// computes the model's own output the way the head computes the score, the layers after
/// the target for the leading tokens alone (ViT-B/16: its last block, a twelfth of the
/// forward, for one row). `None` where that would change anything else the model computes:
/// a pruned tensor read outside the head or given out, a tensor of the original head read
/// outside it that the pruned head does not make, a subgraph.
pub(crate) fn model_nodes(
    g: &GraphProto,
    index: &GraphIndex,
    head_set: &HashSet<usize>,
    head_nodes: &[NodeProto],
    pruned: &HashMap<String, Rows>,
) -> Option<Vec<NodeProto>> {
    if g.node.iter().any(|n| n.attribute.iter().any(|a| a.g.is_some() || !a.graphs.is_empty())) {
        return None;
    }
    let outputs: HashSet<&str> = g.output.iter().filter_map(|o| o.name.as_deref()).collect();
    let outside = |t: &str| {
        outputs.contains(t) || index.consumers.get(t).is_some_and(|c| c.iter().any(|i| !head_set.contains(i)))
    };
    if pruned.keys().any(|t| outside(t)) {
        return None;
    }
    let made: HashSet<&str> = head_nodes.iter().flat_map(|n| n.output.iter().map(String::as_str)).collect();
    let dropped = head_set.iter().flat_map(|&i| g.node[i].output.iter()).filter(|o| !o.is_empty());
    if dropped.filter(|o| !made.contains(o.as_str())).any(|o| outside(o)) {
        return None;
    }
    // Both lists are in a topological order: merge them, each node once its inputs exist.
    let body: Vec<&NodeProto> = index.order.iter().filter(|i| !head_set.contains(i)).map(|&i| &g.node[i]).collect();
    let produced: HashSet<&str> =
        body.iter().copied().chain(head_nodes).flat_map(|n| n.output.iter().map(String::as_str)).collect();
    let mut done: HashSet<&str> = HashSet::new();
    let mut merged: Vec<NodeProto> = Vec::with_capacity(body.len() + head_nodes.len());
    let (mut i, mut j) = (0, 0);
    while i < body.len() || j < head_nodes.len() {
        let ready = |n: &NodeProto, done: &HashSet<&str>| {
            n.input.iter().all(|t| t.is_empty() || !produced.contains(t.as_str()) || done.contains(t.as_str()))
        };
        let next = if i < body.len() && ready(body[i], &done) {
            i += 1;
            body[i - 1]
        } else if j < head_nodes.len() && ready(&head_nodes[j], &done) {
            j += 1;
            &head_nodes[j - 1]
        } else {
            return None;
        };
        done.extend(next.output.iter().map(String::as_str));
        merged.push(next.clone());
    }
    Some(merged)
}
