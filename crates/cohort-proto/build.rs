//! Compiles every `.proto` under `proto/` with protox (pure Rust, so no protoc is needed) and
//! generates the prost messages and tonic clients and servers, plus a descriptor set for gRPC
//! reflection.

use std::path::{Path, PathBuf};

use prost::Message;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let root = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR")?).join("../../proto");
    println!("cargo:rerun-if-changed={}", root.display());
    let mut files = Vec::new();
    collect(&root, &root, &mut files)?;
    files.sort();
    let fds = protox::compile(&files, [&root])?;
    let out = PathBuf::from(std::env::var("OUT_DIR")?);
    std::fs::write(out.join("cohort_descriptor.bin"), fds.encode_to_vec())?;
    // Every service decodes with src/codec.rs, so a malformed message is INVALID_ARGUMENT. The
    // config service gets its small-buffer codec and its hand-written SyncResponse; everything
    // else the default buffers and, but for the hand-written EvaluateResponse, generated types.
    let mut config = fds.clone();
    // With the well-known types it imports (prost-types provides them; nothing is generated).
    config.file.retain(|f| matches!(f.package(), "cohort.config.v1" | "google.protobuf"));
    let mut rest = fds;
    rest.file.retain(|f| f.package() != "cohort.config.v1");
    generator()
        .codec_path("crate::codec::ConfigCodec")
        // Written by hand (src/config_sync.rs) so a server can send a response encoded once.
        .extern_path(".cohort.config.v1.SyncResponse", "crate::config_sync::SyncResponse")
        .compile_fds(config)?;
    generator()
        .codec_path("crate::codec::ProtoCodec")
        // Written by hand (src/evaluate_response.rs) so a server can encode decisions directly.
        .extern_path(".cohort.evaluation.v1.EvaluateResponse", "crate::evaluate_response::EvaluateResponse")
        .compile_fds(rest)?;
    Ok(())
}

fn generator() -> tonic_prost_build::Builder {
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        // Snapshots are shared by every stream of an environment: `Bytes` clones are refcounts.
        .bytes(".")
}

/// Every `.proto` below `dir`, relative to `root`.
fn collect(root: &Path, dir: &Path, out: &mut Vec<String>) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        println!("cargo:rerun-if-changed={}", path.display());
        if path.is_dir() {
            collect(root, &path, out)?;
        } else if path.extension().is_some_and(|e| e == "proto") {
            let relative = path.strip_prefix(root).map_err(std::io::Error::other)?;
            out.push(relative.to_string_lossy().replace('\\', "/"));
        }
    }
    Ok(())
}
