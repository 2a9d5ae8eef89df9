//! Generates the ONNX protobuf types from the vendored `proto/onnx-ml.proto` with protox,
//! a pure-Rust protobuf compiler, so building camscope needs no `protoc`.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=proto/onnx-ml.proto");
    let descriptors = protox::compile(["onnx-ml.proto"], ["proto"])?;
    prost_build::Config::new().compile_fds(descriptors)?;
    Ok(())
}
