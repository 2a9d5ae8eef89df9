//! ONNX models in and out, losslessly, and a small graph IR to analyse and extend them.
//!
//! Only this module knows protobuf. Models are kept as the generated `ModelProto` (so no
//! field is ever dropped on a round trip); [`graph::GraphIndex`] adds the lookups the
//! gradient builder needs, and [`builder::Builder`] appends new nodes with unique names.

pub mod builder;
pub mod graph;
pub mod io;
pub mod known_ops;
pub mod shapes;
pub mod types;

/// Types generated from the vendored `proto/onnx-ml.proto` (ONNX 1.23.2).
#[allow(clippy::all, missing_docs)]
pub mod proto {
    include!(concat!(env!("OUT_DIR"), "/onnx.rs"));
}

pub use self::io::{
    Encoded, OnnxError, SHARED_FILE_NAME, SharedFile, decode_model, encode_external, encode_model,
    encode_with_initializers, read_model, read_model_fingerprinted, read_model_shared, write_model,
};
pub use self::proto::{AttributeProto, GraphProto, ModelProto, NodeProto, TensorProto, ValueInfoProto};

/// ONNX element type codes (`TensorProto.DataType`) camscope handles.
pub mod dtype {
    pub const FLOAT: i32 = 1;
    pub const INT32: i32 = 6;
    pub const INT64: i32 = 7;
    pub const BOOL: i32 = 9;
    pub const DOUBLE: i32 = 11;
}

/// The opset of the default (`ai.onnx`) domain.
pub fn default_opset(model: &ModelProto) -> Option<i64> {
    model
        .opset_import
        .iter()
        .find(|o| matches!(o.domain.as_deref(), None | Some("") | Some("ai.onnx")))
        .and_then(|o| o.version)
}

/// A node's name for messages: its name, else its first output.
pub fn node_label(node: &NodeProto) -> String {
    match node.name.as_deref() {
        Some(n) if !n.is_empty() => n.to_owned(),
        _ => format!("<{} producing {}>", op(node), node.output.first().map_or("nothing", String::as_str)),
    }
}

/// The operator type of a node.
pub fn op(node: &NodeProto) -> &str {
    node.op_type.as_deref().unwrap_or("")
}

/// Attribute lookup on a node.
pub fn attr<'n>(node: &'n NodeProto, name: &str) -> Option<&'n AttributeProto> {
    node.attribute.iter().find(|a| a.name.as_deref() == Some(name))
}

pub fn attr_int(node: &NodeProto, name: &str) -> Option<i64> {
    attr(node, name).and_then(|a| a.i)
}

pub fn attr_float(node: &NodeProto, name: &str) -> Option<f32> {
    attr(node, name).and_then(|a| a.f)
}

pub fn attr_ints(node: &NodeProto, name: &str) -> Option<Vec<i64>> {
    attr(node, name).map(|a| a.ints.clone())
}

pub fn attr_string(node: &NodeProto, name: &str) -> Option<String> {
    attr(node, name).and_then(|a| a.s.as_ref()).map(|s| String::from_utf8_lossy(s).into_owned())
}

/// Build attributes for new nodes.
pub mod attrs {
    use super::proto::attribute_proto::AttributeType;
    use super::{AttributeProto, TensorProto};

    fn base(name: &str, ty: AttributeType) -> AttributeProto {
        AttributeProto { name: Some(name.to_owned()), r#type: Some(ty as i32), ..Default::default() }
    }
    pub fn int(name: &str, v: i64) -> AttributeProto {
        AttributeProto { i: Some(v), ..base(name, AttributeType::Int) }
    }
    pub fn float(name: &str, v: f32) -> AttributeProto {
        AttributeProto { f: Some(v), ..base(name, AttributeType::Float) }
    }
    pub fn ints(name: &str, v: &[i64]) -> AttributeProto {
        AttributeProto { ints: v.to_vec(), ..base(name, AttributeType::Ints) }
    }
    pub fn string(name: &str, v: &str) -> AttributeProto {
        AttributeProto { s: Some(v.as_bytes().to_vec()), ..base(name, AttributeType::String) }
    }
    pub fn tensor(name: &str, t: TensorProto) -> AttributeProto {
        AttributeProto { t: Some(t), ..base(name, AttributeType::Tensor) }
    }
}

/// Tensor constructors and readers.
pub mod tensors {
    use super::{TensorProto, dtype};

    pub fn f32(name: &str, dims: &[i64], data: &[f32]) -> TensorProto {
        debug_assert_eq!(dims.iter().product::<i64>().max(1) as usize, data.len().max(1));
        TensorProto {
            name: Some(name.to_owned()),
            dims: dims.to_vec(),
            data_type: Some(dtype::FLOAT),
            raw_data: Some(data.iter().flat_map(|v| v.to_le_bytes()).collect()),
            ..Default::default()
        }
    }

    pub fn i64(name: &str, dims: &[i64], data: &[i64]) -> TensorProto {
        TensorProto {
            name: Some(name.to_owned()),
            dims: dims.to_vec(),
            data_type: Some(dtype::INT64),
            raw_data: Some(data.iter().flat_map(|v| v.to_le_bytes()).collect()),
            ..Default::default()
        }
    }

    /// Integer contents of an INT64/INT32 tensor (raw or typed storage).
    pub fn read_i64(t: &TensorProto) -> Option<Vec<i64>> {
        match t.data_type? {
            dtype::INT64 => match &t.raw_data {
                Some(raw) => Some(raw.chunks_exact(8).map(|c| i64::from_le_bytes(c.try_into().unwrap())).collect()),
                None => Some(t.int64_data.clone()),
            },
            dtype::INT32 => match &t.raw_data {
                Some(raw) => {
                    Some(raw.chunks_exact(4).map(|c| i64::from(i32::from_le_bytes(c.try_into().unwrap()))).collect())
                }
                None => Some(t.int32_data.iter().map(|&v| i64::from(v)).collect()),
            },
            _ => None,
        }
    }

    /// Float contents of a FLOAT/DOUBLE tensor (raw or typed storage).
    pub fn read_f32(t: &TensorProto) -> Option<Vec<f32>> {
        match t.data_type? {
            dtype::FLOAT => match &t.raw_data {
                Some(raw) => Some(raw.chunks_exact(4).map(|c| f32::from_le_bytes(c.try_into().unwrap())).collect()),
                None => Some(t.float_data.clone()),
            },
            dtype::DOUBLE => match &t.raw_data {
                Some(raw) => {
                    Some(raw.chunks_exact(8).map(|c| f64::from_le_bytes(c.try_into().unwrap()) as f32).collect())
                }
                None => Some(t.double_data.iter().map(|&v| v as f32).collect()),
            },
            _ => None,
        }
    }
}

/// A graph input/output declaration with element type and dims (`-1` or `< 0`: symbolic,
/// named by `dim_names` where given).
pub fn value_info(name: &str, elem_type: i32, dims: &[i64], dim_names: &[Option<&str>]) -> ValueInfoProto {
    use proto::tensor_shape_proto::{Dimension, dimension};
    use proto::type_proto;
    let dim = dims
        .iter()
        .enumerate()
        .map(|(i, &d)| Dimension {
            value: Some(if d >= 0 {
                dimension::Value::DimValue(d)
            } else {
                dimension::Value::DimParam(dim_names.get(i).copied().flatten().unwrap_or("N").to_owned())
            }),
            ..Default::default()
        })
        .collect();
    ValueInfoProto {
        name: Some(name.to_owned()),
        r#type: Some(proto::TypeProto {
            value: Some(type_proto::Value::TensorType(type_proto::Tensor {
                elem_type: Some(elem_type),
                shape: Some(proto::TensorShapeProto { dim }),
            })),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// Element type and dims (`-1` for symbolic/unknown) of a declared value, if it is a tensor.
pub fn value_info_dims(v: &ValueInfoProto) -> Option<(i32, Option<Vec<i64>>)> {
    use proto::tensor_shape_proto::dimension;
    let Some(proto::type_proto::Value::TensorType(t)) = v.r#type.as_ref()?.value.as_ref() else { return None };
    let dims = t.shape.as_ref().map(|s| {
        s.dim
            .iter()
            .map(|d| match d.value {
                Some(dimension::Value::DimValue(v)) => v,
                _ => -1,
            })
            .collect()
    });
    Some((t.elem_type.unwrap_or(0), dims))
}
