//! Gradient rules: one small function per operator, and the registry mapping op types to
//! them. A rule sees the forward node, the gradient flowing into each of its outputs and
//! which inputs need a gradient, and emits standard ONNX nodes computing those gradients.
//! Every rule is checked against central finite differences in `tests/grad_rules.rs`.

mod activation;
mod einsum;
mod indexing;
mod linear;
mod normalization;
mod pooling;
mod shape;

use super::GradError;
use crate::onnx::builder::Builder;
use crate::onnx::graph::Constants;
use crate::onnx::shapes::{Dim, ShapeFacts, TensorFact};
use crate::onnx::{NodeProto, node_label, op};

/// Everything a rule may look at, and the builder it emits into.
pub struct RuleCtx<'a> {
    pub node: &'a NodeProto,
    pub b: &'a mut Builder,
    pub facts: &'a ShapeFacts,
    pub consts: &'a Constants,
    /// Gradient flowing into each output (`None`: no gradient reaches it).
    pub grads: &'a [Option<String>],
    /// Which inputs need a gradient.
    pub needs: &'a [bool],
    /// Guided backpropagation: ReLU-like rules also zero negative gradients.
    pub guided: bool,
    /// The target layer, for error messages.
    pub layer: &'a str,
}

/// The rule signature: one optional gradient per input of the node.
pub type Rule = fn(&mut RuleCtx<'_>) -> Result<Vec<Option<String>>, GradError>;

impl RuleCtx<'_> {
    /// Name of input `i` (empty if absent).
    pub fn input(&self, i: usize) -> &str {
        self.node.input.get(i).map_or("", String::as_str)
    }

    pub fn output(&self, i: usize) -> &str {
        self.node.output.get(i).map_or("", String::as_str)
    }

    pub fn has_input(&self, i: usize) -> bool {
        !self.input(i).is_empty()
    }

    pub fn needs(&self, i: usize) -> bool {
        self.needs.get(i).copied().unwrap_or(false)
    }

    /// The gradient of output 0 (rules of single-output ops).
    pub fn grad(&self) -> String {
        self.grads.first().cloned().flatten().expect("rules only run when an output has a gradient")
    }

    /// Shape facts of a tensor, or an error naming it.
    pub fn fact(&self, tensor: &str) -> Result<&TensorFact, GradError> {
        self.facts.get(tensor).ok_or_else(|| GradError::ShapeUnknown { tensor: tensor.to_owned() })
    }

    pub fn dims(&self, tensor: &str) -> Result<Vec<Dim>, GradError> {
        Ok(self.fact(tensor)?.dims.clone())
    }

    pub fn rank(&self, tensor: &str) -> Result<usize, GradError> {
        Ok(self.fact(tensor)?.rank())
    }

    /// A fixed dimension, or an error naming the tensor.
    pub fn fixed_dim(&self, tensor: &str, axis: usize) -> Result<i64, GradError> {
        self.fact(tensor)?
            .dims
            .get(axis)
            .and_then(|d| d.fixed())
            .ok_or_else(|| GradError::ShapeUnknown { tensor: format!("{tensor} (axis {axis})") })
    }

    /// A constant integer input (axes, pads, starts...), or an error naming the node.
    pub fn const_ints(&self, i: usize) -> Result<Vec<i64>, GradError> {
        self.consts.ints(self.input(i)).ok_or_else(|| self.unsupported(&format!("input {i} is not a constant")))
    }

    /// An axis attribute or constant (negative: from the end) checked against `rank`.
    pub fn axis(&self, axis: i64, rank: usize) -> Result<usize, GradError> {
        let r = rank as i64;
        if (-r..r).contains(&axis) {
            Ok(norm_axis(axis, rank))
        } else {
            Err(self.unsupported(&format!("axis {axis} is out of range for a rank-{rank} tensor")))
        }
    }

    /// The number of values of a constant the rule builds with dims `dims`, or an error when
    /// it is not a real size (negative, or over [`MAX_BUILT_CONSTANT`]: shapes contradicting
    /// the node must not become a giant allocation).
    pub fn built_size(&self, dims: &[i64]) -> Result<usize, GradError> {
        dims.iter()
            .try_fold(1i64, |a, &d| if d < 0 { None } else { a.checked_mul(d) })
            .filter(|&n| n <= MAX_BUILT_CONSTANT)
            .map(|n| n as usize)
            .ok_or_else(|| self.unsupported(&format!("a constant of shape {dims:?} would be needed")))
    }

    /// An `Unsupported` error for this node with a reason.
    pub fn unsupported(&self, why: &str) -> GradError {
        GradError::Unsupported(Box::new(crate::grad::Blocked {
            op: op(self.node).to_owned(),
            node: node_label(self.node),
            layer: self.layer.to_owned(),
            detail: why.to_owned(),
            later: Vec::new(),
        }))
    }

    /// Sum `g` (shaped like the node's output `out`) down to the shape of input `x`, undoing
    /// numpy-style broadcasting: leading axes and axes where `x` has size 1 are summed.
    pub fn unbroadcast(&mut self, g: &str, out: &str, x: &str) -> Result<String, GradError> {
        let (gd, xd) = (self.dims(out)?, self.dims(x)?);
        if gd == xd {
            return Ok(g.to_owned());
        }
        if xd.len() > gd.len() {
            // Broadcasting never lowers the rank: the recorded shapes contradict the node.
            return Err(self.unsupported(&format!("input `{x}` has a higher rank than output `{out}`")));
        }
        let lead = gd.len() - xd.len();
        let mut axes: Vec<i64> = (0..lead as i64).collect();
        for (k, xdim) in xd.iter().enumerate() {
            let odim = gd[lead + k];
            match (xdim, odim) {
                (Dim::Fixed(1), Dim::Fixed(o)) if o != 1 => axes.push((lead + k) as i64),
                (Dim::Fixed(1), Dim::Batch) => axes.push((lead + k) as i64),
                (Dim::Unknown, _) | (_, Dim::Unknown) => {
                    return Err(GradError::ShapeUnknown { tensor: format!("{x} or {out} (axis {k})") });
                }
                _ => {}
            }
        }
        let summed = if axes.is_empty() { g.to_owned() } else { self.b.reduce_sum(g, &axes, true) };
        Ok(if lead > 0 { self.b.reshape_like(&summed, x) } else { summed })
    }
}

/// Most values a constant built by a rule may have (16 Mi: far over any real feature map).
pub const MAX_BUILT_CONSTANT: i64 = 1 << 24;

/// The registry: op type -> rule. `None` for ops camscope cannot differentiate.
pub fn rule_for(op_type: &str) -> Option<Rule> {
    Some(match op_type {
        "Gemm" => linear::gemm,
        "MatMul" => linear::matmul,
        "Conv" => linear::conv,
        "Add" => linear::add,
        "Sub" => linear::sub,
        "Mul" => linear::mul,
        "Div" => linear::div,
        "Sum" => linear::sum,
        "Neg" => linear::neg,
        "Relu" => activation::relu,
        "LeakyRelu" => activation::leaky_relu,
        "Clip" => activation::clip,
        "Sigmoid" => activation::sigmoid,
        "HardSigmoid" => activation::hard_sigmoid,
        "HardSwish" => activation::hard_swish,
        "Tanh" => activation::tanh,
        "Erf" => activation::erf,
        "Exp" => activation::exp,
        "Log" => activation::log,
        "Sqrt" => activation::sqrt,
        "Pow" => activation::pow,
        "Softmax" => activation::softmax,
        "LogSoftmax" => activation::log_softmax,
        "Gelu" => activation::gelu,
        "Abs" => activation::abs,
        "Reciprocal" => activation::reciprocal,
        "Softplus" => activation::softplus,
        "Elu" => activation::elu,
        "Mish" => activation::mish,
        "Sin" => activation::sin,
        "Cos" => activation::cos,
        "Max" | "Min" => linear::max_min,
        "CumSum" => linear::cum_sum,
        "Einsum" => einsum::einsum,
        "Gather" => indexing::gather,
        "GatherElements" => indexing::gather_elements,
        "GatherND" => indexing::gather_nd,
        "ScatterND" => indexing::scatter_nd,
        "ScatterElements" => indexing::scatter_elements,
        "Where" => indexing::where_,
        "GlobalAveragePool" => pooling::global_average_pool,
        "GlobalMaxPool" => pooling::global_max_pool,
        "ReduceMean" => pooling::reduce_mean,
        "ReduceSum" => pooling::reduce_sum,
        "ReduceMax" | "ReduceMin" => pooling::reduce_extreme,
        "ReduceL2" => pooling::reduce_l2,
        "ReduceL1" => pooling::reduce_l1,
        "ReduceSumSquare" => pooling::reduce_sum_square,
        "AveragePool" => pooling::average_pool,
        "MaxPool" => pooling::max_pool,
        "Flatten" | "Reshape" | "Squeeze" | "Unsqueeze" => shape::reshape_back,
        "Expand" => shape::expand,
        "Tile" => shape::tile,
        "Transpose" => shape::transpose,
        "Concat" => shape::concat,
        "Split" => shape::split,
        "Slice" => shape::slice,
        "Pad" => shape::pad,
        "Identity" | "Dropout" => shape::identity,
        "Cast" => shape::cast,
        "CastLike" => shape::cast_like,
        "BatchNormalization" => normalization::batch_norm,
        "LayerNormalization" => normalization::layer_norm,
        _ => return None,
    })
}

/// Ops whose outputs carry no gradient (shape arithmetic, comparisons, indices, rounding):
/// the walk stops there without error.
pub fn is_non_differentiable(op_type: &str) -> bool {
    matches!(
        op_type,
        "Shape"
            | "Size"
            | "Constant"
            | "ConstantOfShape"
            | "NonZero"
            | "ArgMax"
            | "ArgMin"
            | "Equal"
            | "Greater"
            | "GreaterOrEqual"
            | "Less"
            | "LessOrEqual"
            | "Not"
            | "And"
            | "Or"
            | "Xor"
            | "Floor"
            | "Ceil"
            | "Round"
            | "Sign"
            | "IsNaN"
            | "IsInf"
            | "TopK"
            | "Range"
            | "EyeLike"
            | "RandomNormalLike"
            | "RandomUniformLike"
            | "RandomNormal"
            | "RandomUniform"
            | "Bernoulli"
            | "Multinomial"
            | "OneHot"
            | "NonMaxSuppression"
    )
}

/// Normalise a possibly negative axis.
pub(crate) fn norm_axis(axis: i64, rank: usize) -> usize {
    if axis < 0 { (axis + rank as i64) as usize } else { axis as usize }
}
