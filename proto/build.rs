//! Compiles every `.proto` under `persys/` with protox, so building needs no system `protoc`,
//! and writes the descriptor set that servers mount for reflection.

use std::{env, fs, path::PathBuf};

use prost::Message;

fn collect(dir: &std::path::Path, out: &mut Vec<PathBuf>) {
    let mut entries: Vec<_> = fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("reading {}: {e}", dir.display()))
        .map(|e| e.expect("directory entry").path())
        .collect();
    entries.sort();
    for path in entries {
        if path.is_dir() {
            collect(&path, out);
        } else if path.extension().is_some_and(|ext| ext == "proto") {
            out.push(path);
        }
    }
}

fn main() {
    let root = PathBuf::from(env::var("CARGO_MANIFEST_DIR").expect("manifest dir"));
    let mut files = Vec::new();
    collect(&root.join("persys"), &mut files);
    println!("cargo:rerun-if-changed=persys");
    for f in &files {
        println!("cargo:rerun-if-changed={}", f.display());
    }
    let relative: Vec<PathBuf> =
        files.iter().map(|f| f.strip_prefix(&root).expect("under root").to_path_buf()).collect();
    let fds = protox::compile(&relative, [&root]).unwrap_or_else(|e| panic!("{e:?}"));
    let out = PathBuf::from(env::var("OUT_DIR").expect("out dir"));
    fs::write(out.join("persys_descriptor.bin"), fds.encode_to_vec()).expect("write descriptor set");
    tonic_prost_build::configure()
        .build_server(true)
        .build_client(true)
        // Clients are built on the kit's channels; the generated `connect` constructor would
        // also clash with `AgentService.Connect`.
        .build_transport(false)
        .compile_fds(fds)
        .expect("generate rust code");
}
