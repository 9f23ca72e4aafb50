//! Build script. Protocol buffers arrive with the gRPC server (compiled with protox, never a
//! system `protoc`); until then there is nothing to generate.
fn main() {
    println!("cargo:rerun-if-changed=build.rs");
}
