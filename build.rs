//! Generates the ONNX protobuf types from the vendored `proto/onnx-ml.proto` with protox,
//! a pure-Rust protobuf compiler, so building camscope needs no `protoc`.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=proto/onnx-ml.proto");
    let descriptors = protox::compile(["onnx-ml.proto"], ["proto"])?;
    // Tensor bytes as `bytes::Bytes`: decoded from a shared buffer of the model file, the
    // weights stay slices of it (a ViT-B's 346 MB are not copied), and a derived graph can
    // point ONNX Runtime at them (see `onnx::io::SharedFile`).
    prost_build::Config::new().bytes([".onnx.TensorProto.raw_data"]).compile_fds(descriptors)?;
    Ok(())
}
