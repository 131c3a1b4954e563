//! Generates the gRPC service of `protoshelf serve` from
//! proto/protoregistry/v1/registry.proto, compiled with protox (pure Rust:
//! no protoc needed to build protoshelf).

fn main() {
    let proto = "proto/protoregistry/v1/registry.proto";
    println!("cargo:rerun-if-changed={proto}");
    let fds = protox::compile([proto], ["proto"]).expect("registry.proto compiles");
    let out = std::path::PathBuf::from(std::env::var("OUT_DIR").expect("OUT_DIR"));
    // Reflection serves this set (with source info, so descriptions show).
    std::fs::write(
        out.join("registry_descriptor.binpb"),
        prost::Message::encode_to_vec(&fds),
    )
    .expect("write descriptor set");
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        .compile_fds(fds)
        .expect("generate the gRPC code");
}
