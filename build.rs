//! Build script: compiles `proto/**/*.proto` with protox (pure Rust: no system `protoc`) and
//! generates the tonic services with tonic-prost-build. The encoded descriptor set is written
//! beside the generated code for gRPC server reflection.

use std::path::PathBuf;

use prost::Message;

const PROTOS: &[&str] = &[
    "mianshen/v1/common.proto",
    "mianshen/v1/match.proto",
    "mianshen/v1/whatif.proto",
    "mianshen/v1/eligibility.proto",
    "mianshen/v1/profiles.proto",
    "mianshen/v1/workflow.proto",
    "mianshen/v1/supervision.proto",
    "mianshen/v1/admin.proto",
    "mianshen/yardstick/greeter.proto",
];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-changed=proto");
    let fds = protox::compile(PROTOS, ["proto"])?;
    let out = PathBuf::from(std::env::var("OUT_DIR")?);
    std::fs::write(out.join("mianshen_descriptor.bin"), fds.encode_to_vec())?;
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        .compile_fds(fds)?;
    Ok(())
}
