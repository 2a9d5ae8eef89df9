//! camscope: explain image classifiers (Grad-CAM and friends) for any ONNX model, from a
//! terminal. See `../shared/DESIGN.md` for the architecture; each module has one job.

pub mod cam;
pub mod dataset;
pub mod engine;
pub mod explanation;
pub mod fsutil;
pub mod grad;
pub mod imaging;
pub mod model;
pub mod onnx;
pub mod render;
pub mod scores;
pub mod triage;
pub mod tui;
