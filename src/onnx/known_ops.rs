//! Which operators a model may use, from the ONNX specification alone, and a copy of a model
//! without its weights.
//!
//! Why: a converter sometimes leaves an operator no runtime knows (tf2onnx's
//! `PartitionedCall`). ONNX Runtime says so only when it opens the model, which for a
//! ViT-B/16 means copying 330 MB of weights first (1.2 s here). A model with an operator
//! outside the standard set is opened once without its weights (they become graph inputs):
//! ONNX Runtime gives the same message in milliseconds.

use super::{GraphProto, ModelProto, NodeProto, ValueInfoProto, op, proto};

/// Every operator of the `ai.onnx` domain in ONNX 1.23.2, all opset versions
/// (`onnx.defs.get_all_schemas_with_history()`).
pub const AI_ONNX: &[&str] = &[
    "Abs",
    "Acos",
    "Acosh",
    "Add",
    "AffineGrid",
    "And",
    "ArgMax",
    "ArgMin",
    "Asin",
    "Asinh",
    "Atan",
    "Atanh",
    "Attention",
    "AveragePool",
    "BatchNormalization",
    "Bernoulli",
    "BitCast",
    "BitShift",
    "BitwiseAnd",
    "BitwiseNot",
    "BitwiseOr",
    "BitwiseXor",
    "BlackmanWindow",
    "Cast",
    "CastLike",
    "CausalConvWithState",
    "Ceil",
    "Celu",
    "CenterCropPad",
    "Clip",
    "Col2Im",
    "Compress",
    "Concat",
    "ConcatFromSequence",
    "Constant",
    "ConstantOfShape",
    "Conv",
    "ConvInteger",
    "ConvTranspose",
    "Cos",
    "Cosh",
    "CumProd",
    "CumSum",
    "DFT",
    "DeformConv",
    "DepthToSpace",
    "DequantizeLinear",
    "Det",
    "Div",
    "Dropout",
    "DynamicQuantizeLinear",
    "Einsum",
    "Elu",
    "Equal",
    "Erf",
    "Exp",
    "Expand",
    "EyeLike",
    "Flatten",
    "Floor",
    "GRU",
    "Gather",
    "GatherElements",
    "GatherND",
    "Gelu",
    "Gemm",
    "GlobalAveragePool",
    "GlobalLpPool",
    "GlobalMaxPool",
    "Greater",
    "GreaterOrEqual",
    "GridSample",
    "GroupNormalization",
    "HammingWindow",
    "HannWindow",
    "HardSigmoid",
    "HardSwish",
    "Hardmax",
    "Identity",
    "If",
    "ImageDecoder",
    "InstanceNormalization",
    "IsInf",
    "IsNaN",
    "LRN",
    "LSTM",
    "LayerNormalization",
    "LeakyRelu",
    "Less",
    "LessOrEqual",
    "LinearAttention",
    "Log",
    "LogSoftmax",
    "Loop",
    "LpNormalization",
    "LpPool",
    "MatMul",
    "MatMulInteger",
    "Max",
    "MaxPool",
    "MaxRoiPool",
    "MaxUnpool",
    "Mean",
    "MeanVarianceNormalization",
    "MelWeightMatrix",
    "Min",
    "Mish",
    "Mod",
    "Mul",
    "Multinomial",
    "Neg",
    "NegativeLogLikelihoodLoss",
    "NonMaxSuppression",
    "NonZero",
    "Not",
    "OneHot",
    "Optional",
    "OptionalGetElement",
    "OptionalHasElement",
    "Or",
    "PRelu",
    "Pad",
    "Pow",
    "QLinearConv",
    "QLinearMatMul",
    "QuantizeLinear",
    "RMSNormalization",
    "RNN",
    "RandomNormal",
    "RandomNormalLike",
    "RandomUniform",
    "RandomUniformLike",
    "Range",
    "Reciprocal",
    "ReduceL1",
    "ReduceL2",
    "ReduceLogSum",
    "ReduceLogSumExp",
    "ReduceMax",
    "ReduceMean",
    "ReduceMin",
    "ReduceProd",
    "ReduceSum",
    "ReduceSumSquare",
    "RegexFullMatch",
    "Relu",
    "Reshape",
    "Resize",
    "ReverseSequence",
    "RoiAlign",
    "RotaryEmbedding",
    "Round",
    "STFT",
    "Scan",
    "Scatter",
    "ScatterElements",
    "ScatterND",
    "Selu",
    "SequenceAt",
    "SequenceConstruct",
    "SequenceEmpty",
    "SequenceErase",
    "SequenceInsert",
    "SequenceLength",
    "SequenceMap",
    "Shape",
    "Shrink",
    "Sigmoid",
    "Sign",
    "Sin",
    "Sinh",
    "Size",
    "Slice",
    "Softmax",
    "SoftmaxCrossEntropyLoss",
    "Softplus",
    "Softsign",
    "SpaceToDepth",
    "Split",
    "SplitToSequence",
    "Sqrt",
    "Squeeze",
    "StringConcat",
    "StringNormalizer",
    "StringSplit",
    "Sub",
    "Sum",
    "SwiGLU",
    "Swish",
    "Tan",
    "Tanh",
    "TensorScatter",
    "TfIdfVectorizer",
    "ThresholdedRelu",
    "Tile",
    "TopK",
    "Transpose",
    "Trilu",
    "Unique",
    "Unsqueeze",
    "Upsample",
    "Where",
    "Xor",
];

/// Every operator of the `ai.onnx.ml` domain in ONNX 1.23.2.
pub const AI_ONNX_ML: &[&str] = &[
    "ArrayFeatureExtractor",
    "Binarizer",
    "CastMap",
    "CategoryMapper",
    "DictVectorizer",
    "FeatureVectorizer",
    "Imputer",
    "LabelEncoder",
    "LinearClassifier",
    "LinearRegressor",
    "Normalizer",
    "OneHotEncoder",
    "SVMClassifier",
    "SVMRegressor",
    "Scaler",
    "TreeEnsemble",
    "TreeEnsembleClassifier",
    "TreeEnsembleRegressor",
    "ZipMap",
];

/// Whether `node` is a standard operator (or in another domain, such as ONNX Runtime's
/// `com.microsoft` contrib ops or a custom one, which only the runtime can judge).
pub fn is_known(node: &NodeProto) -> bool {
    match node.domain.as_deref().unwrap_or("") {
        "" | "ai.onnx" => AI_ONNX.binary_search(&op(node)).is_ok(),
        "ai.onnx.ml" => AI_ONNX_ML.binary_search(&op(node)).is_ok(),
        _ => true,
    }
}

/// The first node (in file order) whose operator the ONNX standard does not define, in the
/// graph or its subgraphs.
pub fn first_unknown(graph: &GraphProto) -> Option<&NodeProto> {
    graph.node.iter().find_map(|n| {
        if !is_known(n) {
            return Some(n);
        }
        n.attribute.iter().flat_map(|a| a.g.iter().chain(a.graphs.iter())).find_map(first_unknown)
    })
}

/// A copy of `model` whose initializers are graph inputs of the same type and shape: what
/// a runtime needs to check the graph, at a fraction of the bytes.
pub fn without_weights(model: &ModelProto) -> ModelProto {
    let graph = model.graph.as_ref().map(|g| {
        let declared: std::collections::HashSet<&str> = g.input.iter().filter_map(|v| v.name.as_deref()).collect();
        let mut input = g.input.clone();
        input.extend(
            g.initializer.iter().filter(|t| !t.name.as_deref().is_some_and(|n| declared.contains(n))).map(value_info),
        );
        GraphProto {
            node: g.node.clone(),
            name: g.name.clone(),
            input,
            output: g.output.clone(),
            value_info: g.value_info.clone(),
            ..Default::default()
        }
    });
    ModelProto {
        ir_version: model.ir_version,
        opset_import: model.opset_import.clone(),
        producer_name: model.producer_name.clone(),
        producer_version: model.producer_version.clone(),
        domain: model.domain.clone(),
        model_version: model.model_version,
        functions: model.functions.clone(),
        graph,
        ..Default::default()
    }
}

fn value_info(t: &proto::TensorProto) -> ValueInfoProto {
    use proto::tensor_shape_proto::{Dimension, dimension::Value};
    use proto::type_proto::{Tensor, Value as TypeValue};
    let shape = proto::TensorShapeProto {
        dim: t.dims.iter().map(|&d| Dimension { value: Some(Value::DimValue(d)), ..Default::default() }).collect(),
    };
    ValueInfoProto {
        name: t.name.clone(),
        r#type: Some(proto::TypeProto {
            value: Some(TypeValue::TensorType(Tensor { elem_type: t.data_type, shape: Some(shape) })),
            ..Default::default()
        }),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_lists_are_sorted_for_binary_search_and_hold_the_common_ops() {
        assert!(AI_ONNX.windows(2).all(|w| w[0] < w[1]));
        assert!(AI_ONNX_ML.windows(2).all(|w| w[0] < w[1]));
        for o in ["Conv", "Gemm", "LayerNormalization", "Gelu", "Einsum", "LpNormalization"] {
            assert!(AI_ONNX.binary_search(&o).is_ok(), "{o}");
        }
        let node =
            |o: &str, d: &str| NodeProto { op_type: Some(o.into()), domain: Some(d.into()), ..Default::default() };
        assert!(!is_known(&node("PartitionedCall", "")));
        assert!(is_known(&node("FusedMatMul", "com.microsoft")));
        assert!(is_known(&node("Relu", "ai.onnx")));
    }
}
