//! Guided Grad-CAM (Selvaraju et al. 2017): the Grad-CAM map at input resolution times the guided-backprop
//! gradient of the score with respect to the input image.
//!
//! As pytorch-grad-cam's `cam.py` example combines them: `cam_mask = merge([grayscale_cam] * 3)`,
//! `cam_gb = deprocess_image(cam_mask * gb)`, where `grayscale_cam` is the normalised Grad-CAM map upsampled to the
//! input (`scale_cam_image` with cv2's bilinear resize, then normalised again) and `gb` the guided-backprop input
//! gradient. The product is here; `deprocess_image` (visualisation) is `render::deprocess_image`.
//!
//! Guided backprop is the engine's job: the gradient through every ReLU is masked by both `input > 0` and
//! `gradient > 0`. The peer only replaces modules of type `torch.nn.ReLU`; ReLU6, SiLU, etc. keep their ordinary
//! gradient, so for the bundled EfficientNet-Lite0 (ReLU6 only) its "guided" gradient is the plain input gradient.

use ndarray::{Array3, ArrayView2, ArrayView3, Axis};

use super::CamError;

/// `input_gradient · cam` per colour channel: `input_gradient` is `[channels, H, W]`, `cam` the normalised map
/// already upsampled to `[H, W]`.
pub fn guided_grad_cam(input_gradient: ArrayView3<'_, f32>, cam: ArrayView2<'_, f32>) -> Result<Array3<f32>, CamError> {
    let (c, h, w) = input_gradient.dim();
    if cam.dim() != (h, w) {
        return Err(CamError::Shape {
            what: "upsampled Grad-CAM map",
            expected: vec![h, w],
            got: cam.shape().to_vec(),
        });
    }
    let cam3 = cam.insert_axis(Axis(0));
    let mut out = input_gradient.to_owned();
    out.zip_mut_with(&cam3.broadcast((c, h, w)).expect("same spatial size"), |g, &m| *g *= m);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use ndarray::array;

    use super::*;

    #[test]
    fn product_per_colour_channel() {
        let gb = Array3::from_shape_vec((2, 1, 2), vec![1.0, -2.0, 3.0, 4.0]).unwrap();
        let cam = array![[0.5, 0.0]];
        let out = guided_grad_cam(gb.view(), cam.view()).unwrap();
        assert_eq!(out, Array3::from_shape_vec((2, 1, 2), vec![0.5, -0.0, 1.5, 0.0]).unwrap());
        let wrong = array![[0.5, 0.0, 1.0]];
        assert!(matches!(guided_grad_cam(gb.view(), wrong.view()), Err(CamError::Shape { .. })));
    }
}
