//! Target layers: which tensors can be explained (4-D spatial feature maps, channels first
//! or last, and transformer token maps), which one is the default (the last map before
//! global pooling: the tutorial's `conv_7b`; for a class-token transformer the input of the
//! last attention), and how a
//! user names one (tensor name, node name, a Keras layer name inside a tf2onnx node path, or
//! a unique substring).

use std::collections::HashMap;

use serde::Serialize;

use super::GradError;
pub use super::layout::{MapLayout, TokenSpec};
use crate::onnx::graph::{Constants, GraphIndex};
use crate::onnx::shapes::{Dim, ShapeFacts, fmt_dims};
use crate::onnx::{GraphProto, NodeProto, attr_int, attr_ints, op};

/// A tensor Grad-CAM can target.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Candidate {
    pub tensor: String,
    /// Name of the producing node (empty for a graph input).
    pub node: String,
    /// Operator of the producing node (`Input` for a graph input).
    pub op: String,
    #[serde(serialize_with = "ser_dims")]
    pub dims: Vec<Dim>,
    pub layout: MapLayout,
    /// Whether the score's gradient can reach the patch positions. False for a token map
    /// after a transformer's last attention, when the head reads only the class token: every
    /// patch then gets a zero gradient and no gradient method can say anything.
    pub reaches_patches: bool,
    /// Whether this is the automatic choice.
    pub is_default: bool,
}

fn ser_dims<S: serde::Serializer>(dims: &[Dim], s: S) -> Result<S::Ok, S::Error> {
    s.collect_seq(dims.iter().map(|d| d.fixed().unwrap_or(-1)))
}

impl Candidate {
    /// (channels, height, width) of the canonical map (-1 where unknown).
    pub fn chw(&self) -> (i64, i64, i64) {
        let dims: Vec<usize> = self.dims.iter().map(|d| d.fixed().unwrap_or(1).max(0) as usize).collect();
        match self.layout.chw_of(&dims) {
            Some((c, h, w)) => (c as i64, h as i64, w as i64),
            None => (-1, -1, -1),
        }
    }

    pub fn shape_string(&self) -> String {
        fmt_dims(&self.dims)
    }
}

/// Most extra tokens (class, distillation, registers) a token map may carry around its
/// patch grid: enough for a class token plus 8 registers and a distillation token, with room.
const MAX_EXTRA_TOKENS: usize = 16;

/// Most tokens a sequence may have to be read as a map (a 1024 x 1024 patch grid): the
/// readings are found by trying divisors, so a declared length like 2^40 must not be tried.
const MAX_TOKENS: usize = 1 << 20;

/// What the graph says about where each tensor keeps its spatial map.
#[derive(Debug, Clone, Default)]
pub struct Layouts {
    pub of: HashMap<String, MapLayout>,
    /// Token sequences whose grid fits several readings (`T = k + h·w` for more than one k):
    /// the candidates, for the error that asks the user to choose with `--tokens`.
    pub ambiguous: HashMap<String, Vec<MapLayout>>,
}

/// Layouts of the tensors that can hold a map: 4-D layouts propagated from the image input
/// through the graph (a Transpose that makes a map channels-last is followed), then, where
/// propagation stops (reshapes in a Swin's window attention), read from the shape: `[N, h,
/// w, C]` or `[N, C, h, w]` with `h × w` a grid of the model. Token sequences `[N, T, C]`
/// get their grid from the patch embedding (a 4-D map with `h·w = T - k`), or from the
/// input's aspect ratio and a whole patch size; the extra tokens' positions come from the
/// Concat that joins learned tokens to the patch sequence (before it: prefix).
pub fn layouts(
    graph: &GraphProto,
    index: &GraphIndex,
    facts: &ShapeFacts,
    input: &str,
    input_layout: MapLayout,
    tokens: Option<TokenSpec>,
) -> Layouts {
    let mut out = HashMap::new();
    out.insert(input.to_owned(), input_layout);
    let float_rank = |t: &str, r: usize| {
        facts.get(t).is_some_and(|f| f.rank() == r && f.is_float() && matches!(f.dims[0], Dim::Batch | Dim::Fixed(1)))
            && facts.per_image(t)
    };
    for &i in &index.order {
        let n = &graph.node[i];
        let Some(y) = n.output.first() else { continue };
        if !float_rank(y, 4) {
            continue;
        }
        let first_in = n.input.iter().find(|t| out.contains_key(*t)).and_then(|t| out.get(t)).copied();
        let layout = match op(n) {
            "Conv"
            | "ConvTranspose"
            | "MaxPool"
            | "AveragePool"
            | "LpPool"
            | "BatchNormalization"
            | "InstanceNormalization"
            | "LRN"
            | "GlobalAveragePool"
            | "GlobalMaxPool"
            | "Resize"
            | "Upsample"
            | "DepthToSpace"
            | "SpaceToDepth"
            | "QLinearConv" => Some(MapLayout::Nchw),
            "Transpose" => match (attr_ints(n, "perm").as_deref(), first_in) {
                (Some([0, 2, 3, 1]), Some(MapLayout::Nchw)) => Some(MapLayout::Nhwc),
                (Some([0, 3, 1, 2]), Some(MapLayout::Nhwc)) => Some(MapLayout::Nchw),
                (Some([0, 1, 2, 3]), l) => l,
                _ => None,
            },
            "Concat" => match (first_in, attr_int(n, "axis")) {
                (Some(MapLayout::Nchw), Some(1 | -3)) | (Some(MapLayout::Nhwc), Some(3 | -1)) => first_in,
                _ => None,
            },
            // Ops on the last axis keep a channels-last map channels-last (a Linear layer in
            // a Swin or ConvNeXt block; LayerNorm over channels).
            "LayerNormalization" | "MatMul" | "Softmax" if first_in == Some(MapLayout::Nhwc) => first_in,
            "Relu" | "LeakyRelu" | "PRelu" | "Clip" | "Sigmoid" | "HardSigmoid" | "HardSwish" | "Tanh" | "Elu"
            | "Selu" | "Celu" | "Gelu" | "Mish" | "Softplus" | "Identity" | "Dropout" | "Add" | "Sub" | "Mul"
            | "Div" | "Sum" | "Max" | "Min" | "Neg" | "Abs" | "Pad" | "Erf" | "Exp" | "Sqrt" | "Pow" | "Cast"
            | "Where" => first_in,
            _ => None,
        };
        if let Some(l) = layout {
            out.insert(y.clone(), l);
        }
    }
    // Grids the graph shows (every propagated map's h × w), and the input's size.
    let (in_h, in_w) = match (facts.get(input), input_layout.axes()) {
        (Some(f), Some((_, h, w))) if f.rank() == 4 => {
            (f.dims[h].fixed().unwrap_or(0) as usize, f.dims[w].fixed().unwrap_or(0) as usize)
        }
        _ => (0, 0),
    };
    let mut grids: Vec<(usize, usize)> = Vec::new();
    for (t, l) in &out {
        if t == input {
            continue;
        }
        let dims: Option<Vec<usize>> =
            facts.get(t).map(|f| f.dims.iter().map(|d| d.fixed().unwrap_or(1).max(0) as usize).collect());
        if let Some((_, h, w)) = dims.and_then(|d| l.chw_of(&d)) {
            if h * w > 1 && !grids.contains(&(h, w)) {
                grids.push((h, w));
            }
        }
    }
    grids.sort_unstable();
    // A grid a whole patch size (stride) makes of the input.
    let strided = |h: usize, w: usize| h > 0 && w > 0 && in_h % h == 0 && in_w % w == 0 && in_h / h == in_w / w;
    let is_grid = |h: usize, w: usize| h * w > 1 && (grids.contains(&(h, w)) || strided(h, w));
    let fixed = |t: &str| -> Option<Vec<usize>> {
        facts.get(t)?.dims.iter().skip(1).map(|d| d.fixed().map(|v| v as usize)).collect()
    };
    for &i in &index.order {
        let n = &graph.node[i];
        let Some(y) = n.output.first() else { continue };
        if out.contains_key(y) || !float_rank(y, 4) {
            continue;
        }
        let Some(d) = fixed(y) else { continue };
        match (is_grid(d[0], d[1]), is_grid(d[1], d[2])) {
            (true, false) => out.insert(y.clone(), MapLayout::Nhwc),
            (false, true) => out.insert(y.clone(), MapLayout::Nchw),
            _ => None,
        };
    }
    // Token sequences.
    let token_concats = token_concats(graph, index, facts);
    let mut ambiguous = HashMap::new();
    for &i in &index.order {
        let n = &graph.node[i];
        let Some(y) = n.output.first() else { continue };
        if !float_rank(y, 3) {
            continue;
        }
        let Some(d) = fixed(y) else { continue };
        let (t, c) = (d[0], d[1]);
        if t < 2 || c < 2 {
            continue;
        }
        let readings = token_readings(t, tokens, &grids, &strided);
        match readings.as_slice() {
            [] => {}
            [(k, h, w)] => {
                let prefix = match tokens {
                    Some(spec) => spec.prefix,
                    None => token_concats
                        .iter()
                        .find_map(|&(total, before, patches)| (total == t && patches == h * w).then_some(before))
                        .unwrap_or(*k),
                };
                out.insert(y.clone(), MapLayout::Tokens { prefix, suffix: k - prefix.min(*k), h: *h, w: *w });
            }
            many => {
                ambiguous.insert(
                    y.clone(),
                    many.iter().map(|&(k, h, w)| MapLayout::Tokens { prefix: k, suffix: 0, h, w }).collect(),
                );
            }
        }
    }
    Layouts { of: out, ambiguous }
}

/// Ways to read `t` tokens as `k` extra tokens plus an `h × w` grid: from a user's
/// [`TokenSpec`], else from the grids the graph shows, else from the input's aspect ratio.
fn token_readings(
    t: usize,
    spec: Option<TokenSpec>,
    grids: &[(usize, usize)],
    strided: &dyn Fn(usize, usize) -> bool,
) -> Vec<(usize, usize, usize)> {
    if t > MAX_TOKENS {
        return Vec::new();
    }
    if let Some(TokenSpec { prefix, grid }) = spec {
        if prefix >= t {
            return Vec::new();
        }
        return match grid {
            Some((h, w)) if prefix + h * w == t => vec![(prefix, h, w)],
            Some(_) => Vec::new(),
            None => {
                let n = t - prefix;
                let from_graph: Vec<_> =
                    grids.iter().filter(|(h, w)| h * w == n).map(|&(h, w)| (prefix, h, w)).collect();
                if !from_graph.is_empty() {
                    return from_graph;
                }
                (1..=n).filter(|h| n % h == 0 && strided(*h, n / h)).map(|h| (prefix, h, n / h)).collect()
            }
        };
    }
    let from_graph: Vec<_> = grids
        .iter()
        .filter(|(h, w)| h * w > 1 && h * w <= t && t - h * w <= MAX_EXTRA_TOKENS)
        .map(|&(h, w)| (t - h * w, h, w))
        .collect();
    if !from_graph.is_empty() {
        return from_graph;
    }
    // From the input's shape alone, a reading needs more patches than extra tokens (13
    // tokens are not 9 extra tokens around a 2x2 grid).
    let mut out = Vec::new();
    for k in 0..=MAX_EXTRA_TOKENS.min(t.saturating_sub(2)) {
        let n = t - k;
        for h in 1..=n {
            if n % h == 0 && n > k && h * (n / h) > 1 && strided(h, n / h) {
                out.push((k, h, n / h));
            }
        }
    }
    out
}

/// Concats that join learned tokens and a patch sequence along the token axis:
/// (tokens out, tokens before the longest input, tokens of the longest input).
fn token_concats(graph: &GraphProto, index: &GraphIndex, facts: &ShapeFacts) -> Vec<(usize, usize, usize)> {
    let mut out = Vec::new();
    for &i in &index.order {
        let n = &graph.node[i];
        if op(n) != "Concat" || !matches!(attr_int(n, "axis"), Some(1 | -2)) {
            continue;
        }
        let tokens = |t: &str| -> Option<usize> {
            let f = facts.get(t)?;
            (f.rank() == 3).then_some(())?;
            f.dims[1].fixed().map(|v| v as usize)
        };
        let Some(sizes) = n.input.iter().map(|t| tokens(t)).collect::<Option<Vec<usize>>>() else { continue };
        let Some((longest, &patches)) = sizes.iter().enumerate().max_by_key(|(_, s)| **s) else { continue };
        out.push((sizes.iter().sum(), sizes[..longest].iter().sum(), patches));
    }
    out
}

/// All candidate target layers in topological order (the input itself first).
#[allow(clippy::too_many_arguments)]
pub fn candidates(
    graph: &GraphProto,
    index: &GraphIndex,
    consts: &Constants,
    facts: &ShapeFacts,
    input: &str,
    input_layout: MapLayout,
    output: &str,
    tokens: Option<TokenSpec>,
) -> Vec<Candidate> {
    let layout = layouts(graph, index, facts, input, input_layout, tokens).of;
    let feeds_output = index.ancestors(&[output]);
    let spatial = |t: &str, l: MapLayout| {
        let Some(f) = facts.get(t) else { return false };
        let dims: Vec<usize> = f.dims.iter().map(|d| d.fixed().unwrap_or(1).max(0) as usize).collect();
        let fixed_map = f.dims.iter().skip(1).all(|d| d.fixed().is_some());
        fixed_map && l.chw_of(&dims).is_some_and(|(_, h, w)| h * w > 1)
    };
    let dark = patch_blind(graph, index, consts, facts, &layout, &feeds_output);
    let mut out = Vec::new();
    if spatial(input, input_layout) {
        out.push(Candidate {
            tensor: input.to_owned(),
            node: String::new(),
            op: "Input".into(),
            dims: facts.get(input).map(|f| f.dims.clone()).unwrap_or_default(),
            layout: input_layout,
            reaches_patches: true,
            is_default: false,
        });
    }
    for &i in &index.order {
        let n = &graph.node[i];
        let Some(y) = n.output.first() else { continue };
        let Some(&l) = layout.get(y) else { continue };
        // Padding, identities and casts are not layers anyone means to explain.
        if !spatial(y, l) || !feeds_output.contains(y) || matches!(op(n), "Identity" | "Pad" | "Cast") {
            continue;
        }
        out.push(Candidate {
            tensor: y.clone(),
            node: n.name.clone().unwrap_or_default(),
            op: op(n).to_owned(),
            dims: facts.get(y).map(|f| f.dims.clone()).unwrap_or_default(),
            layout: l,
            reaches_patches: !dark.contains(y.as_str()),
            is_default: false,
        });
    }
    // A transformer's readout of its tokens, or a CNN's global pooling: whichever comes last
    // on the way to the score decides (a Swin's windows look like tokens, but its map is
    // pooled later; a hybrid's CNN stem is followed by tokens).
    let tokens = token_default(graph, index, consts, facts, &out, &layout, &feeds_output);
    let spatial = default_index(graph, index, consts, facts, &out, output);
    let default = match (tokens, spatial) {
        (Some((tp, t)), Some((Some(sp), s))) => Some(if sp > tp { s } else { t }),
        (Some((_, t)), _) => Some(t),
        (None, s) => s.map(|(_, s)| s),
    };
    if let Some(d) = default {
        out[d].is_default = true;
    }
    out
}

/// Whether node `n` reads token map `t` (laid out as `l`) only to pick extra tokens (the
/// class token `x[:, 0]`, a distillation token), leaving every patch position out.
fn selects_extra_tokens(n: &NodeProto, t: &str, l: MapLayout, consts: &Constants) -> bool {
    let MapLayout::Tokens { prefix, h, w, .. } = l else { return false };
    let total = (l.extra_tokens() + h * w) as i64;
    let extra = |i: i64| {
        let i = if i < 0 { i + total } else { i };
        i < prefix as i64 || i >= (prefix + h * w) as i64
    };
    if n.input.first().map(String::as_str) != Some(t) {
        return false;
    }
    match op(n) {
        "Gather" => {
            matches!(attr_int(n, "axis"), Some(1 | -2))
                && n.input
                    .get(1)
                    .and_then(|i| consts.ints(i))
                    .is_some_and(|idx| !idx.is_empty() && idx.iter().all(|&i| extra(i)))
        }
        "Slice" => {
            let ints = |k: usize| n.input.get(k).and_then(|i| consts.ints(i));
            let (Some(starts), Some(ends)) = (ints(1), ints(2)) else { return false };
            let axes = ints(3).unwrap_or_else(|| (0..starts.len() as i64).collect());
            let steps = ints(4).unwrap_or_else(|| vec![1; starts.len()]);
            let clamp = |v: i64| if v < 0 { (v + total).max(0) } else { v.min(total) };
            let mut on_tokens = false;
            for ((&a, (&s, &e)), &st) in axes.iter().zip(starts.iter().zip(&ends)).zip(&steps) {
                if matches!(a, 1 | -2) {
                    let (s, e) = (clamp(s), clamp(e));
                    if st != 1 || s >= e || !(s..e).all(extra) {
                        return false;
                    }
                    on_tokens = true;
                }
            }
            on_tokens
        }
        _ => false,
    }
}

/// Ops that work on each element of their first input alone (other inputs are bounds,
/// ratios or attributes): through them every row stays where it was.
pub(crate) const PER_ELEMENT: &[&str] = &[
    "Relu",
    "LeakyRelu",
    "Clip",
    "Sigmoid",
    "HardSigmoid",
    "HardSwish",
    "Tanh",
    "Erf",
    "Exp",
    "Log",
    "Sqrt",
    "Neg",
    "Abs",
    "Reciprocal",
    "Gelu",
    "Elu",
    "Selu",
    "Celu",
    "Softplus",
    "Mish",
    "Identity",
    "Dropout",
    "Cast",
    "Sin",
    "Cos",
];

/// Whether node `n` works on each token separately with respect to its input `t` (rank
/// `r`): elementwise ops, LayerNorm/Softmax/reductions over the last axis, a Linear layer.
/// Through such ops, which tokens carry gradient does not change.
fn per_token(n: &NodeProto, t: &str, r: usize, consts: &Constants, facts: &ShapeFacts) -> bool {
    let last = |a: i64| (if a < 0 { a + r as i64 } else { a }) == r as i64 - 1;
    let out_rank = n.output.first().and_then(|o| facts.get(o)).map(|f| f.rank());
    match op(n) {
        o if PER_ELEMENT.contains(&o) || o == "PRelu" => true,
        "Add" | "Sub" | "Mul" | "Div" | "Pow" | "Where" | "Max" | "Min" | "Sum" | "Mean" => out_rank == Some(r),
        "LayerNormalization" => last(attr_int(n, "axis").unwrap_or(-1)),
        "Softmax" | "LogSoftmax" => attr_int(n, "axis").is_some_and(last) || (attr_int(n, "axis").is_none() && r == 2),
        "ReduceMean" | "ReduceSum" | "ReduceMax" | "ReduceMin" | "ReduceL2" => {
            let axes = attr_ints(n, "axes").or_else(|| n.input.get(1).and_then(|a| consts.ints(a)));
            axes.is_some_and(|a| a.len() == 1 && last(a[0]))
        }
        "MatMul" => {
            n.input.first().map(String::as_str) == Some(t)
                && n.input.get(1).and_then(|w| facts.get(w)).is_some_and(|f| f.rank() <= 2)
        }
        _ => false,
    }
}

/// Tensors whose gradient is zero on every patch position: those whose every path to the
/// score picks extra tokens (or goes through ops that keep tokens apart until it does).
/// Computed backwards from the score, in reverse topological order.
fn patch_blind<'g>(
    graph: &'g GraphProto,
    index: &GraphIndex,
    consts: &Constants,
    facts: &ShapeFacts,
    layout: &HashMap<String, MapLayout>,
    feeds_output: &std::collections::HashSet<String>,
) -> std::collections::HashSet<&'g str> {
    let mut blind: std::collections::HashSet<&'g str> = std::collections::HashSet::new();
    // Only token maps and what they feed matter; without a token map nothing is blind.
    if !layout.values().any(|l| matches!(l, MapLayout::Tokens { .. })) {
        return blind;
    }
    let mut selected_any = false;
    for &i in index.order.iter().rev() {
        let node = &graph.node[i];
        for t in node.output.iter().filter(|o| feeds_output.contains(*o)) {
            let Some(consumers) = index.consumers.get(t) else { continue };
            let r = facts.get(t).map_or(0, |f| f.rank());
            let on_path: Vec<&NodeProto> = consumers
                .iter()
                .map(|&c| &graph.node[c])
                .filter(|c| c.output.iter().any(|o| feeds_output.contains(o)))
                .collect();
            if on_path.is_empty() {
                continue;
            }
            let ok = on_path.iter().all(|c| {
                let picks = layout.get(t).is_some_and(|&l| selects_extra_tokens(c, t, l, consts));
                selected_any |= picks;
                picks
                    || (per_token(c, t, r, consts, facts)
                        && c.output.iter().filter(|o| feeds_output.contains(*o)).all(|o| blind.contains(o.as_str())))
            });
            if ok {
                blind.insert(t.as_str());
            }
        }
    }
    if !selected_any {
        blind.clear();
    }
    blind
}

/// Where a transformer's head reads only extra tokens (its class token): the number of
/// leading tokens it reads. The head graph then computes what leads to them for those
/// rows alone (`grad::rows`; ViT-B/16: the last attention's queries and MLP on 1 token).
#[allow(clippy::too_many_arguments)]
pub(crate) fn extra_token_readout(
    graph: &GraphProto,
    index: &GraphIndex,
    consts: &Constants,
    facts: &ShapeFacts,
    input: &str,
    input_layout: MapLayout,
    output: &str,
    tokens: Option<TokenSpec>,
) -> Option<usize> {
    let layout = layouts(graph, index, facts, input, input_layout, tokens).of;
    let feeds_output = index.ancestors(&[output]);
    let blind = patch_blind(graph, index, consts, facts, &layout, &feeds_output);
    // Every pick must read leading tokens only, all from maps of one token count.
    let mut reads: Option<(usize, usize)> = None;
    for &i in &index.order {
        let n = &graph.node[i];
        let Some(x) = n.input.first() else { continue };
        let Some(&l @ MapLayout::Tokens { prefix, suffix, h, w }) = layout.get(x) else { continue };
        if !blind.contains(x.as_str()) || !selects_extra_tokens(n, x, l, consts) {
            continue;
        }
        if suffix > 0 || prefix == 0 {
            return None;
        }
        let here = (prefix, prefix + h * w);
        if reads.is_some_and(|r| r != here) {
            return None;
        }
        reads = Some(here);
    }
    reads.map(|(prefix, _)| prefix)
}

/// The automatic target of a transformer: the last token map as wide as the one the head
/// reads whose gradient still reaches the patches. With a class-token head that is the
/// input of the last attention (the last block's first LayerNorm, pytorch-grad-cam's
/// documented choice); with pooled tokens it is the map the pooling reads.
#[allow(clippy::too_many_arguments)]
fn token_default(
    graph: &GraphProto,
    index: &GraphIndex,
    consts: &Constants,
    facts: &ShapeFacts,
    cands: &[Candidate],
    layout: &HashMap<String, MapLayout>,
    feeds_output: &std::collections::HashSet<String>,
) -> Option<(usize, usize)> {
    // The readout: the last node on the way to the score that turns a token map into one
    // vector per image (picking extra tokens, pooling tokens, or flattening).
    let (pos, readout) = index.order.iter().enumerate().rev().find_map(|(pos, &i)| {
        let n = &graph.node[i];
        let x = n.input.first()?;
        let l = *layout.get(x)?;
        if !matches!(l, MapLayout::Tokens { .. }) || !n.output.iter().any(|o| feeds_output.contains(o)) {
            return None;
        }
        let r = facts.get(x)?.rank();
        let reads = selects_extra_tokens(n, x, l, consts)
            || (!per_token(n, x, r, consts, facts)
                && n.output.first().and_then(|o| facts.get(o)).is_some_and(|f| f.rank() < r));
        reads.then_some((pos, x.clone()))
    })?;
    let width = facts.get(&readout)?.dims.last()?.fixed()?;
    let anc = index.ancestors(&[readout.as_str()]);
    let found = cands.iter().rposition(|c| {
        matches!(c.layout, MapLayout::Tokens { .. })
            && c.reaches_patches
            && c.dims.last().and_then(|d| d.fixed()) == Some(width)
            && (anc.contains(&c.tensor) || c.tensor == readout)
    })?;
    Some((pos, found))
}

/// Whether `n` pools a spatial map down to one value per channel (global pooling, a
/// spatial mean/max, a pool whose window covers the map, or flattening into a dense layer).
fn is_global_pool(n: &NodeProto, consts: &Constants, facts: &ShapeFacts, layout: Option<MapLayout>) -> bool {
    let x = n.input.first().map(String::as_str).unwrap_or("");
    let spatial_axes = |axes: &[i64]| {
        let mut a: Vec<i64> = axes.iter().map(|&v| if v < 0 { v + 4 } else { v }).collect();
        a.sort_unstable();
        match layout {
            Some(MapLayout::Nhwc) => a == [1, 2],
            _ => a == [2, 3],
        }
    };
    match op(n) {
        "GlobalAveragePool" | "GlobalMaxPool" | "GlobalLpPool" | "Flatten" => true,
        "ReduceMean" | "ReduceMax" | "ReduceSum" => {
            let axes = attr_ints(n, "axes").or_else(|| n.input.get(1).and_then(|a| consts.ints(a)));
            axes.is_some_and(|a| spatial_axes(&a))
        }
        "AveragePool" | "MaxPool" => {
            let (k, f) = (attr_ints(n, "kernel_shape"), facts.get(x));
            matches!((k, f), (Some(k), Some(f)) if k.len() == 2 && f.rank() == 4
                && Some(k[0]) == f.dims[2].fixed() && Some(k[1]) == f.dims[3].fixed())
        }
        "Reshape" => facts.get(n.output.first().map(String::as_str).unwrap_or("")).is_some_and(|f| f.rank() == 2),
        _ => false,
    }
}

/// The automatic target: the input of the last global pooling on the way to the scores
/// (or the nearest candidate before it); without pooling, the last candidate. With the
/// pooling's position in topological order, when there is one.
fn default_index(
    graph: &GraphProto,
    index: &GraphIndex,
    consts: &Constants,
    facts: &ShapeFacts,
    cands: &[Candidate],
    output: &str,
) -> Option<(Option<usize>, usize)> {
    let feeds_output = index.ancestors(&[output]);
    let by_tensor: HashMap<&str, usize> = cands.iter().enumerate().map(|(i, c)| (c.tensor.as_str(), i)).collect();
    let pools = index.order.iter().enumerate().rev().map(|(pos, &i)| (pos, &graph.node[i])).filter(|(_, n)| {
        n.output.first().is_some_and(|y| feeds_output.contains(y))
            && n.input.first().is_some_and(|x| {
                let l = cands.iter().find(|c| &c.tensor == x).map(|c| c.layout);
                facts.get(x).is_some_and(|f| f.rank() == 4) && is_global_pool(n, consts, facts, l)
            })
    });
    // The last pool that pools a feature map. A pool of the image itself (a branch that feeds
    // the image's statistics to the score) pools no layer: an earlier pool decides.
    for (pos, pool) in pools {
        let x = &pool.input[0];
        let found = match by_tensor.get(x.as_str()) {
            Some(&i) => Some(i).filter(|&i| cands[i].op != "Input"),
            // The pool reads a non-candidate (e.g. a 1x1 map); take the latest candidate feeding it.
            None => {
                let anc = index.ancestors(&[x]);
                cands.iter().rposition(|c| anc.contains(&c.tensor) && c.op != "Input")
            }
        };
        if let Some(i) = found {
            return Some((Some(pos), i));
        }
    }
    cands.iter().rposition(|c| c.op != "Input" && c.reaches_patches).map(|i| (None, i))
}

/// Resolve a user's layer name among the candidates: exact tensor name, exact node name, a
/// `/`-separated path (Keras layer names inside tf2onnx node names), then a unique substring.
///
/// Keras layer names may contain `/` themselves (DenseNet's `conv1/relu`), so a path match
/// prefers the shallowest place: `relu` on DenseNet121 is `densenet121/relu/...`, not
/// `densenet121/conv1/relu/...`. A Keras layer that exports as several nodes (swish is a
/// Sigmoid and a Mul) resolves to the last of them, the layer's output. Only matches that
/// these rules cannot tell apart are an ambiguity error listing them.
pub fn resolve<'c>(cands: &'c [Candidate], query: &str, all_tensors: &[String]) -> Result<&'c Candidate, GradError> {
    let exact: [&dyn Fn(&Candidate) -> bool; 2] = [&|c| c.tensor == query, &|c| !c.node.is_empty() && c.node == query];
    for step in exact {
        if let Some(c) = cands.iter().find(|c| step(c)) {
            return Ok(c);
        }
    }
    if let Some(c) = by_path(cands, query)? {
        return Ok(c);
    }
    let hits: Vec<&Candidate> = cands.iter().filter(|c| c.tensor.contains(query) || c.node.contains(query)).collect();
    match hits.as_slice() {
        [one] => return Ok(one),
        [] => {}
        many => {
            return Err(GradError::AmbiguousLayer {
                query: query.to_owned(),
                matches: many.iter().map(|c| c.tensor.clone()).collect(),
            });
        }
    }
    let not_spatial = all_tensors.iter().any(|t| t == query);
    Err(GradError::LayerNotFound {
        query: query.to_owned(),
        detail: if not_spatial {
            "exists but is not a feature map ([N, C, H, W], [N, H, W, C], or tokens [N, T, C] with T = k + h·w)".into()
        } else {
            "matches no tensor or node".into()
        },
        suggestions: closest(cands, query),
    })
}

/// The path-segment step of [`resolve`]: `Ok(None)` when no candidate's path contains the
/// query as whole segments.
fn by_path<'c>(cands: &'c [Candidate], query: &str) -> Result<Option<&'c Candidate>, GradError> {
    let q: Vec<&str> = segments(query).collect();
    if q.is_empty() {
        return Ok(None);
    }
    // (depth of the match, the path up to the matched layer, candidate)
    let mut hits: Vec<(usize, String, &Candidate)> = Vec::new();
    for c in cands {
        for name in [&c.node, &c.tensor] {
            let segs: Vec<&str> = segments(name).collect();
            if let Some(j) = (0..segs.len().saturating_sub(q.len() - 1)).find(|&j| segs[j..j + q.len()] == q[..]) {
                hits.push((j, segs[..j + q.len()].join("/"), c));
                break;
            }
        }
    }
    let Some(depth) = hits.iter().map(|h| h.0).min() else { return Ok(None) };
    hits.retain(|h| h.0 == depth);
    let mut layers: Vec<&str> = hits.iter().map(|h| h.1.as_str()).collect();
    layers.sort_unstable();
    layers.dedup();
    if layers.len() > 1 {
        return Err(GradError::AmbiguousLayer {
            query: query.to_owned(),
            matches: hits.iter().map(|h| h.2.tensor.clone()).collect(),
        });
    }
    // One layer, perhaps several nodes: its output is the last of them.
    Ok(hits.last().map(|h| h.2))
}

/// `a/b/c:0` -> `a`, `b`, `c`.
fn segments(name: &str) -> impl Iterator<Item = &str> {
    name.split(['/', ':']).filter(|s| !s.is_empty())
}

fn closest(cands: &[Candidate], query: &str) -> Vec<String> {
    let q = query.to_lowercase();
    let mut scored: Vec<(usize, &Candidate)> =
        cands.iter().map(|c| (edit_distance(&q, &c.tensor.to_lowercase()), c)).collect();
    scored.sort_by_key(|(d, _)| *d);
    scored.into_iter().take(3).map(|(_, c)| c.tensor.clone()).collect()
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            cur[j + 1] = (prev[j] + usize::from(ca != *cb)).min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strided_by(size: usize) -> impl Fn(usize, usize) -> bool {
        move |h, w| h > 0 && w > 0 && size % h == 0 && size % w == 0 && size / h == size / w
    }

    #[test]
    fn token_grids_come_from_the_graph_then_from_the_input() {
        let s224 = strided_by(224);
        // ViT-B/16: the patch embedding's 14x14 map is in the graph.
        assert_eq!(token_readings(197, None, &[(14, 14)], &s224), vec![(1, 14, 14)]);
        assert_eq!(token_readings(201, None, &[(14, 14)], &s224), vec![(5, 14, 14)]);
        // No map in the graph: 196 = 14x14 (stride 16) is the only square within 16 extra tokens.
        assert_eq!(token_readings(197, None, &[], &s224), vec![(1, 14, 14)]);
        // 13 tokens on a 224 input fit no grid with more patches than extra tokens.
        assert!(token_readings(13, None, &[], &s224).is_empty());
    }

    #[test]
    fn an_ambiguous_count_lists_every_reading_and_a_spec_decides() {
        // 65 tokens on a 56x56 input: 1 + 8x8 (stride 7) or 16 + 7x7 (stride 8).
        let s56 = strided_by(56);
        let readings = token_readings(65, None, &[], &s56);
        assert_eq!(readings, vec![(1, 8, 8), (16, 7, 7)]);
        let spec = |s: &str| Some(s.parse::<TokenSpec>().unwrap());
        assert_eq!(token_readings(65, spec("1"), &[], &s56), vec![(1, 8, 8)]);
        assert_eq!(token_readings(65, spec("16+7x7"), &[], &s56), vec![(16, 7, 7)]);
        assert!(token_readings(65, spec("2+8x8"), &[], &s56).is_empty(), "2 + 64 is not 65");
    }
}
