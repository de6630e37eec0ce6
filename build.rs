//! Compiles every `.proto` file under `proto/` with protox (pure Rust, no
//! system `protoc`) and generates tonic servers and clients from them. The
//! encoded file descriptor set goes to `$OUT_DIR/tidings_descriptor.bin` for
//! server reflection (`grpc::FILE_DESCRIPTOR_SET`).

use std::path::{Path, PathBuf};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let root = Path::new("proto");
    println!("cargo:rerun-if-changed={}", root.display());
    let mut files = Vec::new();
    collect_protos(root, &mut files)?;
    files.sort();
    for file in &files {
        println!("cargo:rerun-if-changed={}", file.display());
    }
    let out_dir = PathBuf::from(std::env::var("OUT_DIR")?);
    let fds = protox::compile(&files, [root])?;
    std::fs::write(
        out_dir.join("tidings_descriptor.bin"),
        prost::Message::encode_to_vec(&fds),
    )?;
    tonic_prost_build::configure()
        // The stored event JSON is shared (`bytes::Bytes`), not copied per
        // subscriber.
        .bytes(".tidings.v1.Event.json")
        .build_server(true)
        .build_client(true)
        .compile_fds(fds)?;
    Ok(())
}

/// Every `*.proto` below `dir`, so files other people add are picked up;
/// directories are walked too, so new directories re-run the build.
fn collect_protos(dir: &Path, out: &mut Vec<PathBuf>) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.is_dir() {
            println!("cargo:rerun-if-changed={}", path.display());
            collect_protos(&path, out)?;
        } else if path.extension().is_some_and(|e| e == "proto") {
            out.push(path);
        }
    }
    Ok(())
}
