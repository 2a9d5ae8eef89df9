//! Element types of every tensor, inferred from the graph alone. Classifiers compute in one
//! float type and do shape arithmetic in int64; the rules below cover the ops that change
//! type, and every other op keeps the type of its first typed input.

use std::collections::HashMap;

use super::graph::GraphIndex;
use super::{GraphProto, attr, attr_int, dtype, op, value_info_dims};

/// Element type of each tensor the graph declares or computes (ONNX `DataType` codes).
pub fn infer_elem_types(graph: &GraphProto, index: &GraphIndex) -> HashMap<String, i32> {
    let mut types: HashMap<String, i32> = HashMap::new();
    for v in graph.input.iter().chain(&graph.output).chain(&graph.value_info) {
        if let (Some(n), Some((t, _))) = (&v.name, value_info_dims(v)) {
            if t != 0 {
                types.insert(n.clone(), t);
            }
        }
    }
    for t in &graph.initializer {
        if let (Some(n), Some(d)) = (&t.name, t.data_type) {
            types.insert(n.clone(), d);
        }
    }
    for &i in &index.order {
        let n = &graph.node[i];
        let first = n.input.iter().find_map(|x| types.get(x).copied());
        let out: Option<i32> = match op(n) {
            "Shape" | "Size" | "NonZero" | "ArgMax" | "ArgMin" | "NonMaxSuppression" => Some(dtype::INT64),
            "Equal" | "Greater" | "GreaterOrEqual" | "Less" | "LessOrEqual" | "Not" | "And" | "Or" | "Xor"
            | "IsNaN" | "IsInf" => Some(dtype::BOOL),
            "Cast" => attr_int(n, "to").map(|t| t as i32),
            "CastLike" => n.input.get(1).and_then(|x| types.get(x).copied()),
            "Constant" => attr(n, "value").and_then(|a| a.t.as_ref()).and_then(|t| t.data_type).or_else(|| {
                n.attribute.iter().find_map(|a| match a.name.as_deref() {
                    Some("value_int" | "value_ints") => Some(dtype::INT64),
                    Some("value_float" | "value_floats") => Some(dtype::FLOAT),
                    _ => None,
                })
            }),
            "ConstantOfShape" => {
                Some(attr(n, "value").and_then(|a| a.t.as_ref()).and_then(|t| t.data_type).unwrap_or(dtype::FLOAT))
            }
            "Where" => n.input.get(1).and_then(|x| types.get(x).copied()),
            "QuantizeLinear" => n.input.get(2).and_then(|x| types.get(x).copied()).or(Some(2)),
            "DequantizeLinear" => Some(dtype::FLOAT),
            _ => first,
        };
        if let Some(t) = out {
            for (k, o) in n.output.iter().enumerate() {
                if o.is_empty() {
                    continue;
                }
                // Second outputs with their own types: MaxPool's indices, TopK's indices.
                let t = match (op(n), k) {
                    ("MaxPool" | "TopK", 1) => dtype::INT64,
                    _ => t,
                };
                types.entry(o.clone()).or_insert(t);
            }
        }
    }
    types
}
