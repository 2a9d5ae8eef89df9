//! Lookups over a graph: who produces and consumes each tensor, topological order,
//! reachability, and constant values.

use std::collections::{HashMap, HashSet, VecDeque};

use super::proto::attribute_proto::AttributeType;
use super::{GraphProto, NodeProto, TensorProto, node_label, op, tensors};

/// Why a graph cannot be analysed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum GraphError {
    #[error("the graph has a cycle through node {node}; ONNX graphs must be acyclic")]
    Cycle { node: String },
    #[error("tensor `{tensor}` is produced by two nodes ({first} and {second}); the model is malformed")]
    DuplicateProducer { tensor: String, first: String, second: String },
    #[error("the model has no graph")]
    NoGraph,
}

/// Index of a graph. Node indices refer to `graph.node`.
#[derive(Debug, Clone)]
pub struct GraphIndex {
    /// Tensor name -> (node index, output slot).
    pub producer: HashMap<String, (usize, usize)>,
    /// Tensor name -> nodes reading it (explicitly, or implicitly from a subgraph).
    pub consumers: HashMap<String, Vec<usize>>,
    /// Initializer name -> index in `graph.initializer`.
    pub initializers: HashMap<String, usize>,
    /// Graph inputs that are not initializers: what the caller must feed.
    pub inputs: Vec<String>,
    pub outputs: Vec<String>,
    /// Node indices in a topological order (stable: the file's order where valid).
    pub order: Vec<usize>,
    /// Per node: every tensor it reads, including outer-scope names used by subgraphs.
    reads: Vec<Vec<String>>,
}

impl GraphIndex {
    pub fn new(graph: &GraphProto) -> Result<Self, GraphError> {
        let initializers: HashMap<String, usize> =
            graph.initializer.iter().enumerate().filter_map(|(i, t)| Some((t.name.clone()?, i))).collect();
        let inputs: Vec<String> =
            graph.input.iter().filter_map(|v| v.name.clone()).filter(|n| !initializers.contains_key(n)).collect();
        let outputs = graph.output.iter().filter_map(|v| v.name.clone()).collect();
        let mut producer = HashMap::new();
        for (i, n) in graph.node.iter().enumerate() {
            for (slot, o) in n.output.iter().enumerate() {
                if o.is_empty() {
                    continue;
                }
                if let Some(&(j, _)) = producer.get(o) {
                    return Err(GraphError::DuplicateProducer {
                        tensor: o.clone(),
                        first: node_label(&graph.node[j]),
                        second: node_label(n),
                    });
                }
                producer.insert(o.clone(), (i, slot));
            }
        }
        let reads: Vec<Vec<String>> = graph.node.iter().map(node_reads).collect();
        let mut consumers: HashMap<String, Vec<usize>> = HashMap::new();
        for (i, r) in reads.iter().enumerate() {
            for t in r {
                let c = consumers.entry(t.clone()).or_default();
                if c.last() != Some(&i) {
                    c.push(i);
                }
            }
        }
        // Kahn's algorithm, preferring file order so an already sorted graph keeps its order.
        let mut pending: Vec<usize> = reads
            .iter()
            .map(|r| r.iter().filter(|t| producer.contains_key(*t)).collect::<HashSet<_>>().len())
            .collect();
        let mut ready: std::collections::BTreeSet<usize> =
            pending.iter().enumerate().filter(|(_, p)| **p == 0).map(|(i, _)| i).collect();
        let mut order = Vec::with_capacity(graph.node.len());
        while let Some(i) = ready.pop_first() {
            order.push(i);
            let mut done = HashSet::new();
            for o in &graph.node[i].output {
                if o.is_empty() || !done.insert(o) {
                    continue;
                }
                for &c in consumers.get(o).into_iter().flatten() {
                    pending[c] -= 1;
                    if pending[c] == 0 {
                        ready.insert(c);
                    }
                }
            }
        }
        if order.len() != graph.node.len() {
            let stuck = (0..graph.node.len()).find(|i| pending[*i] > 0).unwrap_or(0);
            return Err(GraphError::Cycle { node: node_label(&graph.node[stuck]) });
        }
        Ok(Self { producer, consumers, initializers, inputs, outputs, order, reads })
    }

    /// Every tensor node `i` reads.
    pub fn reads(&self, i: usize) -> &[String] {
        &self.reads[i]
    }

    /// The node producing `tensor`, if any.
    pub fn producer_node<'g>(&self, graph: &'g GraphProto, tensor: &str) -> Option<&'g NodeProto> {
        self.producer.get(tensor).map(|&(i, _)| &graph.node[i])
    }

    /// All tensors computed from any of `from` (including them).
    pub fn descendants(&self, graph: &GraphProto, from: &[&str]) -> HashSet<String> {
        let mut seen: HashSet<String> = from.iter().map(|s| s.to_string()).collect();
        let mut queue: VecDeque<String> = seen.iter().cloned().collect();
        while let Some(t) = queue.pop_front() {
            for &c in self.consumers.get(&t).into_iter().flatten() {
                for o in &graph.node[c].output {
                    if !o.is_empty() && seen.insert(o.clone()) {
                        queue.push_back(o.clone());
                    }
                }
            }
        }
        seen
    }

    /// All tensors `of` depends on (including them).
    pub fn ancestors(&self, of: &[&str]) -> HashSet<String> {
        let mut seen: HashSet<String> = of.iter().map(|s| s.to_string()).collect();
        let mut queue: VecDeque<String> = seen.iter().cloned().collect();
        while let Some(t) = queue.pop_front() {
            if let Some(&(i, _)) = self.producer.get(&t) {
                for r in &self.reads[i] {
                    if seen.insert(r.clone()) {
                        queue.push_back(r.clone());
                    }
                }
            }
        }
        seen
    }

    /// Tensors that depend on a real graph input (everything else is a constant).
    pub fn input_dependent(&self, graph: &GraphProto) -> HashSet<String> {
        let ins: Vec<&str> = self.inputs.iter().map(String::as_str).collect();
        self.descendants(graph, &ins)
    }
}

/// The tensors a node reads: its non-empty inputs plus names its subgraphs take from the
/// enclosing scope (If/Loop/Scan bodies), so reachability sees through control flow.
fn node_reads(node: &NodeProto) -> Vec<String> {
    let mut reads: Vec<String> = node.input.iter().filter(|s| !s.is_empty()).cloned().collect();
    for a in &node.attribute {
        let graphs: Vec<&GraphProto> = match a.r#type {
            Some(t) if t == AttributeType::Graph as i32 => a.g.iter().collect(),
            Some(t) if t == AttributeType::Graphs as i32 => a.graphs.iter().collect(),
            _ => continue,
        };
        for g in graphs {
            outer_scope_reads(g, &mut reads);
        }
    }
    let mut seen = HashSet::new();
    reads.retain(|r| seen.insert(r.clone()));
    reads
}

fn outer_scope_reads(g: &GraphProto, reads: &mut Vec<String>) {
    let mut defined: HashSet<&str> = g.input.iter().filter_map(|v| v.name.as_deref()).collect();
    defined.extend(g.initializer.iter().filter_map(|t| t.name.as_deref()));
    for n in &g.node {
        defined.extend(n.output.iter().map(String::as_str));
    }
    for n in &g.node {
        for r in node_reads(n) {
            if !defined.contains(r.as_str()) {
                reads.push(r);
            }
        }
    }
}

/// Constant tensors of a graph (initializers and `Constant` node outputs), for reading
/// axes, pads, starts, indices and the like. Weights are left out: no rule reads their
/// values, and keeping a copy of them cost 346 MB and 0.2 s on ViT-B/16.
/// Initializers larger than this are weights, not constants a rule reads (the largest
/// index table seen, Swin's relative positions, has 2,401 values).
const MAX_CONSTANT_ELEMENTS: i64 = 1 << 16;

#[derive(Debug, Default, Clone)]
pub struct Constants {
    values: HashMap<String, TensorProto>,
}

impl Constants {
    pub fn new(graph: &GraphProto) -> Self {
        let mut values = HashMap::new();
        for t in &graph.initializer {
            // Dims are the file's word: negative or overflowing products are not small.
            let elements = t.dims.iter().try_fold(1i64, |a, &d| if d < 0 { None } else { a.checked_mul(d) });
            if let (Some(n), true) = (&t.name, elements.is_some_and(|e| e <= MAX_CONSTANT_ELEMENTS)) {
                values.insert(n.clone(), t.clone());
            }
        }
        for n in &graph.node {
            if op(n) != "Constant" || n.output.is_empty() {
                continue;
            }
            let t = n.attribute.iter().find_map(|a| match a.name.as_deref() {
                Some("value") => a.t.clone(),
                Some("value_int") => a.i.map(|v| tensors::i64("", &[], &[v])),
                Some("value_ints") => Some(tensors::i64("", &[a.ints.len() as i64], &a.ints)),
                Some("value_float") => a.f.map(|v| tensors::f32("", &[], &[v])),
                Some("value_floats") => Some(tensors::f32("", &[a.floats.len() as i64], &a.floats)),
                _ => None,
            });
            if let Some(t) = t {
                values.insert(n.output[0].clone(), t);
            }
        }
        Self { values }
    }

    pub fn get(&self, name: &str) -> Option<&TensorProto> {
        self.values.get(name)
    }

    pub fn ints(&self, name: &str) -> Option<Vec<i64>> {
        self.values.get(name).and_then(tensors::read_i64)
    }

    pub fn floats(&self, name: &str) -> Option<Vec<f32>> {
        self.values.get(name).and_then(tensors::read_f32)
    }

    pub fn insert(&mut self, name: &str, t: TensorProto) {
        self.values.insert(name.to_owned(), t);
    }
}
