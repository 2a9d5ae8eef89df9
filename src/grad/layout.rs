//! Map layouts: how a target layer's tensor holds a spatial map, and the one conversion to
//! and from the canonical per-image `[C, H, W]`.
//!
//! CNNs give `[N, C, H, W]`; Keras graphs, Swin and timm's NHWC stages give `[N, H, W, C]`;
//! vision transformers give token sequences `[N, T, C]` with `T = k + h·w`, k extra tokens
//! (class, distillation, register tokens) around a row-major patch grid. Everything after
//! ONNX Runtime (CAM methods, normalisation, upsampling, the TUI, JSON) sees `[C, H, W]`
//! only, so a new layout is one variant here, not a change in every method. The few things
//! that go back into the graph (Ablation-CAM's ablated activations) convert back through
//! [`MapLayout::from_chw`], which keeps the extra tokens as the image had them.

use ndarray::{Array3, Array4, ArrayD, ArrayViewD, Axis, IxDyn, s};

/// Axis order of a feature map.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MapLayout {
    /// `[N, C, H, W]`.
    Nchw,
    /// `[N, H, W, C]`, channels last.
    Nhwc,
    /// `[N, T, C]` with `T = prefix + h·w + suffix`: `prefix` extra tokens (class,
    /// distillation, registers) before the row-major `h × w` patch grid and `suffix` after.
    Tokens { prefix: usize, suffix: usize, h: usize, w: usize },
}

/// Why a tensor does not fit its layout (a bug or a model whose shape changed).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("a tensor of shape {shape:?} does not fit the {layout} layout")]
pub struct LayoutError {
    pub shape: Vec<usize>,
    pub layout: String,
}

impl MapLayout {
    /// (channels, height, width) axes of a 4-D layout; `None` for tokens.
    pub fn axes(self) -> Option<(usize, usize, usize)> {
        match self {
            MapLayout::Nchw => Some((1, 2, 3)),
            MapLayout::Nhwc => Some((3, 1, 2)),
            MapLayout::Tokens { .. } => None,
        }
    }

    /// The tensor's rank, batch axis included.
    pub fn rank(self) -> usize {
        match self {
            MapLayout::Tokens { .. } => 3,
            _ => 4,
        }
    }

    /// Number of extra (non-patch) tokens.
    pub fn extra_tokens(self) -> usize {
        match self {
            MapLayout::Tokens { prefix, suffix, .. } => prefix + suffix,
            _ => 0,
        }
    }

    /// (C, H, W) of a tensor of this layout with dims `dims` (batch first).
    pub fn chw_of(self, dims: &[usize]) -> Option<(usize, usize, usize)> {
        if dims.len() != self.rank() {
            return None;
        }
        match self {
            MapLayout::Nchw => Some((dims[1], dims[2], dims[3])),
            MapLayout::Nhwc => Some((dims[3], dims[1], dims[2])),
            MapLayout::Tokens { prefix, suffix, h, w } => {
                (dims[1] == prefix + suffix + h * w).then_some((dims[2], h, w))
            }
        }
    }

    fn error(self, shape: &[usize]) -> LayoutError {
        LayoutError { shape: shape.to_vec(), layout: self.to_string() }
    }

    /// Image `i` of a batched tensor as `[C, H, W]` (extra tokens dropped).
    pub fn to_chw(self, a: ArrayViewD<'_, f32>, i: usize) -> Result<Array3<f32>, LayoutError> {
        let shape = a.shape().to_vec();
        let (c, h, w) = self.chw_of(&shape).ok_or_else(|| self.error(&shape))?;
        if i >= shape[0] {
            return Err(self.error(&shape));
        }
        let one = a.index_axis(Axis(0), i);
        Ok(match self {
            MapLayout::Nchw => one.into_shape_with_order((c, h, w)).map_err(|_| self.error(&shape))?.to_owned(),
            MapLayout::Nhwc => {
                let hwc = one.into_shape_with_order((h, w, c)).map_err(|_| self.error(&shape))?;
                hwc.permuted_axes([2, 0, 1]).as_standard_layout().to_owned()
            }
            MapLayout::Tokens { prefix, .. } => {
                let tc = one.into_dimensionality::<ndarray::Ix2>().map_err(|_| self.error(&shape))?;
                let patches = tc.slice(s![prefix..prefix + h * w, ..]);
                // [h·w, C] -> [C, h·w] -> [C, h, w]: row-major patches become rows of the map.
                let chw = patches.t().as_standard_layout().to_owned();
                chw.into_shape_with_order((c, h, w)).map_err(|_| self.error(&shape))?
            }
        })
    }

    /// A batch of `[n, C, H, W]` maps back in this layout. Token layouts take their extra
    /// tokens from `template` (one image of the original tensor, `[1, T, C]`), so a model
    /// fed the result sees its class token unchanged.
    pub fn from_chw(self, maps: Array4<f32>, template: ArrayViewD<'_, f32>) -> Result<ArrayD<f32>, LayoutError> {
        let (n, c, h, w) = maps.dim();
        Ok(match self {
            MapLayout::Nchw => maps.into_dyn(),
            MapLayout::Nhwc => maps.permuted_axes([0, 2, 3, 1]).as_standard_layout().to_owned().into_dyn(),
            MapLayout::Tokens { prefix, suffix, .. } => {
                let t = prefix + h * w + suffix;
                let ts = template.shape().to_vec();
                if ts.len() != 3 || ts[1] != t || ts[2] != c {
                    return Err(self.error(&ts));
                }
                let tmpl = template.index_axis(Axis(0), 0);
                let mut out = ArrayD::zeros(IxDyn(&[n, t, c]));
                for (k, map) in maps.outer_iter().enumerate() {
                    let mut img = out.index_axis_mut(Axis(0), k);
                    img.assign(&tmpl);
                    let patches = map.into_shape_with_order((c, h * w)).map_err(|_| self.error(&ts))?;
                    img.slice_mut(s![prefix..prefix + h * w, ..]).assign(&patches.t());
                }
                out
            }
        })
    }
}

impl std::fmt::Display for MapLayout {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            MapLayout::Nchw => f.write_str("NCHW"),
            MapLayout::Nhwc => f.write_str("NHWC"),
            MapLayout::Tokens { prefix, suffix, h, w } => {
                write!(f, "tokens {h}x{w}")?;
                match (prefix, suffix) {
                    (0, 0) => Ok(()),
                    (p, 0) => write!(f, " +{p} first"),
                    (0, q) => write!(f, " +{q} last"),
                    (p, q) => write!(f, " +{p} first +{q} last"),
                }
            }
        }
    }
}

/// Serialised as its display text (`"NCHW"`, `"NHWC"`, `"tokens 14x14 +1 first"`).
impl serde::Serialize for MapLayout {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// A user's description of a token layout: `--tokens K` (K extra tokens first) or
/// `--tokens K+HxW` / `K,HxW`, or `HxW` (no extra tokens).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TokenSpec {
    pub prefix: usize,
    pub grid: Option<(usize, usize)>,
}

impl serde::Serialize for TokenSpec {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self.grid {
            Some((h, w)) => s.collect_str(&format_args!("{}+{h}x{w}", self.prefix)),
            None => s.collect_str(&self.prefix),
        }
    }
}

impl std::str::FromStr for TokenSpec {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let bad = || format!("bad token layout `{s}`; write K (extra tokens first), K+HxW, or HxW, e.g. 1+14x14");
        let s = s.trim();
        let grid = |g: &str| -> Result<(usize, usize), String> {
            let (h, w) = g.split_once(['x', 'X']).ok_or_else(bad)?;
            Ok((h.trim().parse().map_err(|_| bad())?, w.trim().parse().map_err(|_| bad())?))
        };
        if let Some((k, g)) = s.split_once(['+', ',']) {
            return Ok(Self { prefix: k.trim().parse().map_err(|_| bad())?, grid: Some(grid(g)?) });
        }
        if s.contains(['x', 'X']) {
            return Ok(Self { prefix: 0, grid: Some(grid(s)?) });
        }
        Ok(Self { prefix: s.parse().map_err(|_| bad())?, grid: None })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::Array;

    #[test]
    fn tokens_drop_extra_tokens_and_come_back_with_them() {
        let layout = MapLayout::Tokens { prefix: 2, suffix: 1, h: 2, w: 3 };
        // [1, T=9, C=4]: value = 100·token + channel.
        let a = Array::from_shape_fn(IxDyn(&[1, 9, 4]), |i| (100 * i[1] + i[2]) as f32);
        let chw = layout.to_chw(a.view(), 0).unwrap();
        assert_eq!(chw.dim(), (4, 2, 3));
        // Patch (row 1, col 2) is token 2 + 1·3 + 2 = 7.
        assert_eq!(chw[[3, 1, 2]], 703.0);
        assert_eq!(chw[[0, 0, 0]], 200.0);
        let mut maps = chw.clone().insert_axis(Axis(0));
        maps[[0, 1, 0, 1]] = -1.0;
        let back = layout.from_chw(maps.clone(), a.view()).unwrap();
        assert_eq!(back.shape(), &[1, 9, 4]);
        assert_eq!(back[[0, 0, 3]], 3.0, "class token kept");
        assert_eq!(back[[0, 8, 2]], 802.0, "suffix token kept");
        assert_eq!(back[[0, 3, 1]], -1.0, "patch (0, 1) is token 3");
        assert_eq!(layout.to_chw(back.view(), 0).unwrap(), maps.index_axis(Axis(0), 0));
    }

    #[test]
    fn nhwc_round_trips_and_shapes_are_checked() {
        let a = Array::from_shape_fn(IxDyn(&[2, 2, 3, 5]), |i| (1000 * i[0] + 100 * i[1] + 10 * i[2] + i[3]) as f32);
        let chw = MapLayout::Nhwc.to_chw(a.view(), 1).unwrap();
        assert_eq!(chw.dim(), (5, 2, 3));
        assert_eq!(chw[[4, 1, 2]], 1124.0);
        let back = MapLayout::Nhwc.from_chw(chw.insert_axis(Axis(0)), a.view()).unwrap();
        assert_eq!(back.index_axis(Axis(0), 0), a.index_axis(Axis(0), 1));
        let tokens = MapLayout::Tokens { prefix: 1, suffix: 0, h: 2, w: 2 };
        assert!(tokens.to_chw(Array::zeros(IxDyn(&[1, 6, 3])).view(), 0).is_err(), "6 tokens are not 1 + 2x2");
        assert!(MapLayout::Nchw.to_chw(a.view(), 2).is_err(), "image 2 of 2");
    }

    #[test]
    fn token_specs_parse() {
        assert_eq!("1".parse::<TokenSpec>().unwrap(), TokenSpec { prefix: 1, grid: None });
        assert_eq!("5+16x16".parse::<TokenSpec>().unwrap(), TokenSpec { prefix: 5, grid: Some((16, 16)) });
        assert_eq!("14x14".parse::<TokenSpec>().unwrap(), TokenSpec { prefix: 0, grid: Some((14, 14)) });
        assert!("x".parse::<TokenSpec>().is_err());
        assert_eq!(MapLayout::Tokens { prefix: 1, suffix: 0, h: 14, w: 14 }.to_string(), "tokens 14x14 +1 first");
    }
}
