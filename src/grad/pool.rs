//! Grad-CAM's pooled gradient, computed where it is cheapest.
//!
//! Grad-CAM reads the gradient only through its mean over the map's positions, one number
//! per channel. The sum over rows commutes with what the backward does last: a transpose,
//! and the product with a weight (`Σ_t G[t]·W = (Σ_t G[t])·W`). So the sum moves up the
//! backward graph past those ops, and the last product runs on one row instead of every
//! token. On a ViT that product is the attention's in-projection, `[T, 3C] x [3C, C]`: the
//! biggest product of a class switch (half its backward on ViT-B/16), which becomes a
//! vector-matrix product. Where nothing commutes (a CNN's ReLU mask), the sum is taken of
//! the gradient itself, as the host would: the same result, never more work.
//!
//! Only ops whose operands' shapes are implied by the op are crossed, so no shape has to be
//! known beyond ranks: a transpose, a product whose summed axis is a row or batch axis of
//! its left operand, a sum of same-shaped gradients (the contributions to one tensor).

use std::collections::{HashMap, HashSet};

use super::layout::MapLayout;
use crate::onnx::builder::Builder;
use crate::onnx::{NodeProto, attr_int, attr_ints, op};

/// One summed axis of a tensor and the range of it that is summed (`end` past the axis's
/// size means to its end).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) struct Span {
    pub axis: usize,
    pub start: i64,
    pub end: i64,
}

/// The map positions of a target tensor in `layout`: the patch tokens of a token sequence
/// (its extra tokens left out), both spatial axes of a 4-D map.
pub(crate) fn map_positions(layout: MapLayout) -> Vec<Span> {
    let whole = |axis| Span { axis, start: 0, end: i64::MAX };
    match layout {
        MapLayout::Nchw => vec![whole(2), whole(3)],
        MapLayout::Nhwc => vec![whole(1), whole(2)],
        MapLayout::Tokens { prefix, h, w, .. } => {
            vec![Span { axis: 1, start: prefix as i64, end: (prefix + h * w) as i64 }]
        }
    }
}

/// What the pushdown needs to know of the graph it rewrites.
pub(crate) struct Graph<'a> {
    /// The backward nodes, in topological order.
    pub nodes: &'a [NodeProto],
    /// Sums of contributions to one tensor: their inputs have the sum's shape.
    pub merges: &'a HashSet<String>,
    /// Ranks of tensors the nodes read from outside (forward values, weights).
    pub rank: &'a dyn Fn(&str) -> Option<usize>,
}

/// `Σ` of `gradient` (of rank `rank`) over `spans`, kept as size-1 axes: nodes appended to
/// `b`, the result's name returned.
pub(crate) fn pooled(g: &Graph<'_>, gradient: &str, rank: usize, spans: &[Span], b: &mut Builder) -> String {
    let producer: HashMap<&str, &NodeProto> =
        g.nodes.iter().flat_map(|n| n.output.iter().map(move |o| (o.as_str(), n))).collect();
    let mut p = Pusher { g, producer, b };
    p.pool(gradient, rank, spans)
}

struct Pusher<'a, 'b> {
    g: &'a Graph<'a>,
    producer: HashMap<&'a str, &'a NodeProto>,
    b: &'b mut Builder,
}

impl Pusher<'_, '_> {
    fn rank(&self, t: &str) -> Option<usize> {
        if let Some(r) = (self.g.rank)(t) {
            return Some(r);
        }
        let n = self.producer.get(t)?;
        match op(n) {
            "Transpose" | "Identity" | "Neg" => self.rank(&n.input[0]),
            _ => None,
        }
    }

    fn pool(&mut self, t: &str, rank: usize, spans: &[Span]) -> String {
        if let Some(n) = self.producer.get(t).copied() {
            if let Some(out) = self.through(n, rank, spans) {
                return out;
            }
        }
        self.sum_here(t, spans)
    }

    /// The sum pushed past node `n` (which produces the tensor summed), where it commutes.
    fn through(&mut self, n: &NodeProto, rank: usize, spans: &[Span]) -> Option<String> {
        let x = n.input.first()?.clone();
        match op(n) {
            "Identity" => Some(self.pool(&x, rank, spans)),
            "Transpose" => {
                let perm = attr_ints(n, "perm").unwrap_or_else(|| (0..rank as i64).rev().collect());
                let moved: Vec<Span> = spans
                    .iter()
                    .map(|s| Some(Span { axis: usize::try_from(*perm.get(s.axis)?).ok()?, ..*s }))
                    .collect::<Option<_>>()?;
                let inner = self.pool(&x, rank, &moved);
                Some(self.b.transpose(&inner, &perm))
            }
            "MatMul" => {
                // Rows or batch axes of the left operand only; a batch axis needs a right
                // operand without one (a weight), which also makes the left one full rank.
                let w = n.input.get(1)?.clone();
                let w_is_matrix = self.rank(&w) == Some(2);
                let fits = |s: &Span| s.axis + 2 == rank || (s.axis + 2 < rank && w_is_matrix);
                if rank < 2 || !spans.iter().all(fits) || !(w_is_matrix || self.rank(&x) == Some(rank)) {
                    return None;
                }
                let inner = self.pool(&x, rank, spans);
                Some(self.b.op("MatMul", &[&inner, &w], vec![]))
            }
            "Gemm" if attr_int(n, "transA").unwrap_or(0) == 0 && n.input.len() == 2 => {
                if rank != 2 || spans.iter().any(|s| s.axis != 0) {
                    return None;
                }
                let inner = self.pool(&x, rank, spans);
                let mut g = n.clone();
                g.input[0] = inner;
                let out = self.b.fresh("Gemm");
                g.output = vec![out.clone()];
                g.name = Some(self.b.fresh("Gemm_node"));
                self.b.push_node(g);
                Some(out)
            }
            "Sum" if n.output.first().is_some_and(|o| self.g.merges.contains(o)) => {
                let parts: Vec<String> = n.input.iter().map(|i| self.pool(i, rank, spans)).collect();
                Some(self.b.sum(&parts))
            }
            _ => None,
        }
    }

    /// The sum taken of `t` itself.
    fn sum_here(&mut self, t: &str, spans: &[Span]) -> String {
        let cut: Vec<&Span> = spans.iter().filter(|s| s.start != 0 || s.end != i64::MAX).collect();
        let part = if cut.is_empty() {
            t.to_owned()
        } else {
            let starts: Vec<i64> = cut.iter().map(|s| s.start).collect();
            let ends: Vec<i64> = cut.iter().map(|s| s.end).collect();
            let axes: Vec<i64> = cut.iter().map(|s| s.axis as i64).collect();
            self.b.slice(t, &starts, &ends, &axes)
        };
        let axes: Vec<i64> = spans.iter().map(|s| s.axis as i64).collect();
        self.b.reduce_sum(&part, &axes, true)
    }
}

/// The nodes of `nodes` that `outputs` need, in their order.
pub(crate) fn needed(nodes: Vec<NodeProto>, outputs: &[&str]) -> Vec<NodeProto> {
    let mut need: HashSet<String> = outputs.iter().map(|s| (*s).to_owned()).collect();
    let mut keep = vec![false; nodes.len()];
    for (k, n) in nodes.iter().enumerate().rev() {
        if n.output.iter().any(|o| need.contains(o)) {
            keep[k] = true;
            need.extend(n.input.iter().filter(|i| !i.is_empty()).cloned());
        }
    }
    nodes.into_iter().zip(keep).filter(|(_, k)| *k).map(|(n, _)| n).collect()
}
