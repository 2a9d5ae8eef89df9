//! Appending nodes to a graph with unique names, and opset-aware helpers for the ops whose
//! signature changed across ONNX versions (axes as attribute vs input).

use std::collections::{HashMap, HashSet};

use super::{AttributeProto, GraphProto, NodeProto, TensorProto, attrs, tensors};

/// Emits new nodes and initializers. Every name it makes is unique in the graph it was
/// created for (and among what it emitted), under a readable prefix.
#[derive(Debug)]
pub struct Builder {
    opset: i64,
    prefix: String,
    used: HashSet<String>,
    counter: usize,
    pub nodes: Vec<NodeProto>,
    pub initializers: Vec<TensorProto>,
    /// Tensors made by [`Builder::slot`]: name -> (part, axis, index, size).
    slots: HashMap<String, (String, usize, i64, i64)>,
}

impl Builder {
    /// A builder for `graph` at `opset`; new names start with `prefix`.
    pub fn new(graph: &GraphProto, opset: i64, prefix: &str) -> Self {
        let mut used = HashSet::new();
        for n in &graph.node {
            used.extend(n.output.iter().cloned());
            used.extend(n.input.iter().cloned());
            if let Some(name) = &n.name {
                used.insert(name.clone());
            }
        }
        used.extend(graph.initializer.iter().filter_map(|t| t.name.clone()));
        used.extend(graph.input.iter().chain(&graph.output).filter_map(|v| v.name.clone()));
        Self {
            opset,
            prefix: prefix.to_owned(),
            used,
            counter: 0,
            nodes: Vec::new(),
            initializers: Vec::new(),
            slots: HashMap::new(),
        }
    }

    pub fn opset(&self) -> i64 {
        self.opset
    }

    /// Reserve a name (e.g. a graph input the caller adds) so nothing else takes it.
    pub fn reserve(&mut self, name: &str) -> bool {
        self.used.insert(name.to_owned())
    }

    /// A fresh, unique name built from `hint`.
    pub fn fresh(&mut self, hint: &str) -> String {
        loop {
            self.counter += 1;
            let name = format!("{}/{}_{}", self.prefix, hint, self.counter);
            if self.used.insert(name.clone()) {
                return name;
            }
        }
    }

    /// Append a node with one output; returns the output's name.
    pub fn op(&mut self, op_type: &str, inputs: &[&str], attributes: Vec<AttributeProto>) -> String {
        self.op_n(op_type, inputs, 1, attributes).remove(0)
    }

    /// Append a node with `n` outputs.
    pub fn op_n(&mut self, op_type: &str, inputs: &[&str], n: usize, attributes: Vec<AttributeProto>) -> Vec<String> {
        let outputs: Vec<String> = (0..n).map(|_| self.fresh(op_type)).collect();
        let name = self.fresh(&format!("{op_type}_node"));
        self.nodes.push(NodeProto {
            name: Some(name),
            op_type: Some(op_type.to_owned()),
            input: inputs.iter().map(|s| s.to_string()).collect(),
            output: outputs.clone(),
            attribute: attributes,
            ..Default::default()
        });
        outputs
    }

    /// Append a node writing to given output names (used to copy forward nodes).
    pub fn push_node(&mut self, node: NodeProto) {
        for o in &node.output {
            self.used.insert(o.clone());
        }
        self.nodes.push(node);
    }

    /// A float32 constant (as an initializer).
    pub fn const_f32(&mut self, hint: &str, dims: &[i64], data: &[f32]) -> String {
        let name = self.fresh(hint);
        self.initializers.push(tensors::f32(&name, dims, data));
        name
    }

    /// An int64 constant (as an initializer).
    pub fn const_i64(&mut self, hint: &str, dims: &[i64], data: &[i64]) -> String {
        let name = self.fresh(hint);
        self.initializers.push(tensors::i64(&name, dims, data));
        name
    }

    pub fn scalar_f32(&mut self, v: f32) -> String {
        self.const_f32("scalar", &[], &[v])
    }

    pub fn vec_i64(&mut self, v: &[i64]) -> String {
        self.const_i64("ints", &[v.len() as i64], v)
    }

    pub fn mul(&mut self, a: &str, b: &str) -> String {
        self.op("Mul", &[a, b], vec![])
    }

    pub fn div(&mut self, a: &str, b: &str) -> String {
        self.op("Div", &[a, b], vec![])
    }

    pub fn add(&mut self, a: &str, b: &str) -> String {
        self.op("Add", &[a, b], vec![])
    }

    pub fn sub(&mut self, a: &str, b: &str) -> String {
        self.op("Sub", &[a, b], vec![])
    }

    pub fn neg(&mut self, a: &str) -> String {
        self.op("Neg", &[a], vec![])
    }

    pub fn mul_scalar(&mut self, a: &str, v: f32) -> String {
        let s = self.scalar_f32(v);
        self.mul(a, &s)
    }

    /// `Where(cond, x, 0)`.
    pub fn mask(&mut self, cond: &str, x: &str) -> String {
        let zero = self.scalar_f32(0.0);
        self.op("Where", &[cond, x, &zero], vec![])
    }

    pub fn shape_of(&mut self, x: &str) -> String {
        self.op("Shape", &[x], vec![])
    }

    pub fn reshape_like(&mut self, x: &str, like: &str) -> String {
        let s = self.shape_of(like);
        self.op("Reshape", &[x, &s], vec![])
    }

    pub fn reshape_to(&mut self, x: &str, dims: &[i64]) -> String {
        let s = self.vec_i64(dims);
        self.op("Reshape", &[x, &s], vec![])
    }

    pub fn expand_like(&mut self, x: &str, like: &str) -> String {
        let s = self.shape_of(like);
        self.op("Expand", &[x, &s], vec![])
    }

    pub fn transpose(&mut self, x: &str, perm: &[i64]) -> String {
        self.op("Transpose", &[x], vec![attrs::ints("perm", perm)])
    }

    /// `ReduceSum` over `axes` (axes as input from opset 13, attribute before).
    pub fn reduce_sum(&mut self, x: &str, axes: &[i64], keepdims: bool) -> String {
        let keep = attrs::int("keepdims", i64::from(keepdims));
        if self.opset >= 13 {
            let a = self.vec_i64(axes);
            self.op("ReduceSum", &[x, &a], vec![keep])
        } else {
            self.op("ReduceSum", &[x], vec![attrs::ints("axes", axes), keep])
        }
    }

    /// `ReduceMean` over `axes` (axes as input from opset 18, attribute before).
    pub fn reduce_mean(&mut self, x: &str, axes: &[i64], keepdims: bool) -> String {
        let keep = attrs::int("keepdims", i64::from(keepdims));
        if self.opset >= 18 {
            let a = self.vec_i64(axes);
            self.op("ReduceMean", &[x, &a], vec![keep])
        } else {
            self.op("ReduceMean", &[x], vec![attrs::ints("axes", axes), keep])
        }
    }

    /// `Unsqueeze` (axes as input from opset 13, attribute before).
    pub fn unsqueeze(&mut self, x: &str, axes: &[i64]) -> String {
        if self.opset >= 13 {
            let a = self.vec_i64(axes);
            self.op("Unsqueeze", &[x, &a], vec![])
        } else {
            self.op("Unsqueeze", &[x], vec![attrs::ints("axes", axes)])
        }
    }

    /// `Squeeze` (axes as input from opset 13, attribute before).
    pub fn squeeze(&mut self, x: &str, axes: &[i64]) -> String {
        if self.opset >= 13 {
            let a = self.vec_i64(axes);
            self.op("Squeeze", &[x, &a], vec![])
        } else {
            self.op("Squeeze", &[x], vec![attrs::ints("axes", axes)])
        }
    }

    /// `Slice` with constant starts/ends/axes (inputs since opset 10).
    pub fn slice(&mut self, x: &str, starts: &[i64], ends: &[i64], axes: &[i64]) -> String {
        let (s, e, a) = (self.vec_i64(starts), self.vec_i64(ends), self.vec_i64(axes));
        self.op("Slice", &[x, &s, &e, &a], vec![])
    }

    /// Constant zero-padding with per-axis `(begin, end)` pads (pads as input since opset 11).
    pub fn pad(&mut self, x: &str, begins: &[i64], ends: &[i64]) -> String {
        let pads: Vec<i64> = begins.iter().chain(ends).copied().collect();
        let p = self.vec_i64(&pads);
        self.op("Pad", &[x, &p], vec![attrs::string("mode", "constant")])
    }

    /// Zeros shaped like `like`.
    pub fn zeros_like(&mut self, like: &str) -> String {
        let s = self.shape_of(like);
        self.op("ConstantOfShape", &[&s], vec![attrs::tensor("value", tensors::f32("", &[1], &[0.0]))])
    }

    /// `part` placed at `index` of a new axis `axis` of `size`, zeros elsewhere (`rank`: the
    /// result's): the gradient of one scalar-index Gather. Remembered, so that a
    /// [`Builder::sum`] of slots filling every index becomes one Concat (a transformer's q, k
    /// and v taken from one tensor by index come back as three padded copies otherwise,
    /// summed: 1 ms of a ViT-B class switch).
    pub fn slot(&mut self, part: &str, rank: usize, axis: usize, index: i64, size: i64) -> String {
        let u = self.unsqueeze(part, &[axis as i64]);
        let mut begins = vec![0i64; rank];
        let mut ends = vec![0i64; rank];
        begins[axis] = index;
        ends[axis] = size - 1 - index;
        let out = self.pad(&u, &begins, &ends);
        self.slots.insert(out.clone(), (u, axis, index, size));
        out
    }

    /// Sum of several tensors (one input passes through).
    pub fn sum(&mut self, xs: &[String]) -> String {
        match xs {
            [one] => one.clone(),
            _ => {
                if let Some(c) = self.concat_slots(xs) {
                    return c;
                }
                let refs: Vec<&str> = xs.iter().map(String::as_str).collect();
                self.op("Sum", &refs, vec![])
            }
        }
    }

    /// The sum of slots filling every index of one axis, as a Concat of their parts (the
    /// padded copies are dropped).
    fn concat_slots(&mut self, xs: &[String]) -> Option<String> {
        let slots: Vec<&(String, usize, i64, i64)> = xs.iter().map(|x| self.slots.get(x)).collect::<Option<_>>()?;
        let (axis, size) = (slots[0].1, slots[0].3);
        if slots.iter().any(|s| s.1 != axis || s.3 != size) || size != xs.len() as i64 {
            return None;
        }
        let mut parts: Vec<Option<String>> = vec![None; xs.len()];
        for s in &slots {
            let p = parts.get_mut(usize::try_from(s.2).ok()?)?;
            if p.is_some() {
                return None;
            }
            *p = Some(s.0.clone());
        }
        let parts: Vec<String> = parts.into_iter().collect::<Option<_>>()?;
        let pads: HashSet<&String> = xs.iter().collect();
        let dropped: HashSet<String> = self
            .nodes
            .iter()
            .filter(|n| n.output.iter().any(|o| pads.contains(o)))
            .filter_map(|n| n.input.get(1).cloned())
            .collect();
        self.nodes.retain(|n| !n.output.iter().any(|o| pads.contains(o)));
        self.initializers.retain(|t| !t.name.as_ref().is_some_and(|n| dropped.contains(n)));
        for x in xs {
            self.slots.remove(x);
        }
        let refs: Vec<&str> = parts.iter().map(String::as_str).collect();
        Some(self.op("Concat", &refs, vec![attrs::int("axis", axis as i64)]))
    }
}
