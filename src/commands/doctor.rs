//! `camscope doctor`: which ONNX Runtime and which bundled model this camscope uses, and from
//! where. Installs differ (a checkout with `.deps`, `cargo install`, `pip install camscope`
//! with `onnxruntime` or `onnxruntime-gpu`), and "why is it not using my GPU" starts with
//! which library was loaded; CI's wheel check reads the `onnxruntime` line too.

use std::path::Path;
use std::process::ExitCode;

use anyhow::Result;
use camscope::engine::runtime;

use crate::ModelArgs;

pub fn run(args: &ModelArgs) -> Result<ExitCode> {
    let exe = std::env::current_exe().map(|p| p.display().to_string()).unwrap_or_else(|_| "?".into());
    println!("camscope {} ({exe})", env!("CARGO_PKG_VERSION"));
    let lib = runtime::init(args.ort_lib.as_deref(), args.threads, None)?;
    println!("onnxruntime {}: {} (from {})", lib.version, lib.path.display(), lib.origin);
    let cuda = if lib.has_cuda_provider() {
        "this build has the CUDA provider (--device auto uses it when CUDA and a GPU are found)"
    } else {
        "not in this build (CPU only; `pip install onnxruntime-gpu` for CUDA)"
    };
    println!("cuda: {cuda}");
    // onnxruntime and onnxruntime-gpu of one version write the same file: name a package
    // whose library the other one has since overwritten, with the fix.
    let site = lib.path.parent().filter(|capi| capi.ends_with("onnxruntime/capi")).and_then(Path::parent);
    for d in site.and_then(Path::parent).map(runtime::distributions).unwrap_or_default() {
        if !d.intact {
            println!(
                "note: {} {} is installed but its {} was overwritten by another onnxruntime package; \
                 to use it, `pip install --force-reinstall --no-deps {}=={}`",
                d.name,
                d.version,
                d.library.file_name().map(|f| f.to_string_lossy()).unwrap_or_default(),
                d.name.replace('_', "-"),
                d.version
            );
        }
    }
    match super::model_path(args) {
        Ok(model) => println!("model: {}", model.display()),
        Err(e) => println!("model: {}", super::one_line(&e)),
    }
    Ok(ExitCode::SUCCESS)
}
