//! camscope's rendering against what OpenCV, PyTorch and pytorch-grad-cam compute on the same inputs
//! (arrays written by `scripts/reference_render.py`).

mod common;

use std::path::PathBuf;

use camscope::render::{self, Colormap, resize};
use image::RgbImage;
use ndarray::{Array2, ArrayD, Ix2, Ix3};
use ndarray_npy::ReadNpyExt;

fn path(name: &str) -> PathBuf {
    common::data("reference/render").join(name)
}

fn read<T: ndarray_npy::ReadableElement>(name: &str) -> ArrayD<T> {
    let p = path(name);
    let f = std::fs::File::open(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
    ArrayD::<T>::read_npy(f).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

fn read2(name: &str) -> Array2<f32> {
    read::<f32>(name).into_dimensionality::<Ix2>().expect("2-D")
}

fn rgb(a: &ArrayD<u8>) -> RgbImage {
    let a = a.view().into_dimensionality::<Ix3>().expect("[H, W, 3]");
    let (h, w, _) = a.dim();
    RgbImage::from_raw(w as u32, h as u32, a.iter().copied().collect()).expect("H*W*3 bytes")
}

#[test]
fn resize_matches_opencv_inter_linear() {
    for tag in ["7x7_to_224x224", "3x5_to_17x11", "9x13_to_4x5", "1x4_to_3x9"] {
        let x = read2(&format!("resize_{tag}_in.npy"));
        let want = read2(&format!("resize_{tag}_out.npy"));
        let got = resize::resize(x.view(), want.nrows(), want.ncols());
        let d = common::max_abs_diff(&format!("resize {tag}"), &got, &want);
        println!("resize {tag}: max |camscope - cv2| = {d:.2e}");
        assert!(d <= 1e-5, "{tag}: {d}");
    }
}

#[test]
fn align_corners_matches_torch_upsampling_bilinear2d() {
    for tag in ["3x5_to_17x11", "2x3_to_2x8", "7x7_to_32x20"] {
        let x = read2(&format!("align_{tag}_in.npy"));
        let want = read2(&format!("align_{tag}_out.npy"));
        let got = resize::resize_align_corners(x.view(), want.nrows(), want.ncols());
        let d = common::max_abs_diff(&format!("align_corners {tag}"), &got, &want);
        println!("align_corners {tag}: max |camscope - torch| = {d:.2e}");
        assert!(d <= 1e-6, "{tag}: {d}");
    }
}

#[test]
fn blend_matches_show_cam_on_image_pixel_for_pixel() {
    let image = rgb(&read::<u8>("blend_image.npy"));
    let mask = read2("blend_mask.npy");
    let alpha = read::<f64>("blend_alpha.npy")[[0]];
    let heat = render::heatmap_image(mask.view(), Colormap::Jet);
    let peer = render::blend_like_peer(&image, &heat, alpha).unwrap();
    assert_eq!(peer, rgb(&read::<u8>("blend_peer.npy")), "show_cam_on_image(use_rgb=True)");
    let plain = render::blend(&image, &heat, alpha).unwrap();
    assert_eq!(plain, rgb(&read::<u8>("blend_plain.npy")), "the same without the division by the maximum");
    // The two differ: the peer's stretch is real (so the tests above tell them apart).
    assert_ne!(peer, plain);
    // overlay() with a map of the image's size is heatmap + blend.
    assert_eq!(render::overlay(&image, mask.view(), Colormap::Jet, alpha).unwrap(), plain);
}

#[test]
fn deprocess_matches_the_peer() {
    let x = read::<f32>("deprocess_in.npy").into_dimensionality::<Ix3>().unwrap();
    let want = rgb(&read::<u8>("deprocess_out.npy"));
    let got = render::deprocess_image(x.view()).unwrap();
    // Statistics in f64 here, f32 in NumPy: a value on a truncation boundary may land one level apart.
    let worst = got.as_raw().iter().zip(want.as_raw()).map(|(a, b)| a.abs_diff(*b)).max().unwrap();
    let off = got.as_raw().iter().zip(want.as_raw()).filter(|(a, b)| a != b).count();
    println!("deprocess: {off} of {} values differ, by at most {worst}", want.as_raw().len());
    assert!(worst <= 1, "{worst}");
}
