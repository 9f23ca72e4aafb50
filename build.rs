//! Build script: compiles `proto/**/*.proto` with protox (pure Rust: no system `protoc`) and
//! generates the tonic services with tonic-prost-build. The encoded descriptor set is written
//! beside the generated code for gRPC server reflection.
//!
//! The Eligibility service is generated a second time, server side only, into `OUT_DIR/encoded`:
//! there its reply type is `server::eligibility::Encoded`, a reply already written as protobuf
//! bytes, so that a lookup writes its answer straight from per-generation templates instead of
//! building and encoding a tree of messages. Clients and every other type are the ones above.

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
    let mut eligibility = fds.clone();
    eligibility
        .file
        .retain(|f| f.name() == "mianshen/v1/eligibility.proto");
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        .compile_fds(fds)?;
    let encoded = out.join("encoded");
    std::fs::create_dir_all(&encoded)?;
    tonic_prost_build::configure()
        .build_client(false)
        .build_server(true)
        .out_dir(&encoded)
        .extern_path(".mianshen.v1", "crate::server::pb::v1")
        .extern_path(
            ".mianshen.v1.EligibilityReply",
            "crate::server::eligibility::Encoded",
        )
        .compile_fds(eligibility)?;
    Ok(())
}
