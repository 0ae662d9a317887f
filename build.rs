//! Let the extension find libtorch without `import torch` first: at run time
//! through torch's own lib dir next to the package, at `cargo test` time
//! through the libtorch the build used. Link libtorch's OpenMP runtime (GNU
//! libgomp, shipped in torch's lib dir) so the plain-Rust matrix products
//! run on libtorch's own threads (`src/model/matmul.rs`).
use std::path::Path;

fn main() {
    println!("cargo::rustc-check-cfg=cfg(libgomp)");
    println!("cargo:rustc-link-arg=-Wl,-rpath,$ORIGIN/../torch/lib");
    if let Ok(dir) = std::env::var("DEP_TCH_LIBTORCH_LIB") {
        println!("cargo:rustc-link-arg=-Wl,-rpath,{dir}");
        if let Some(gomp) = libgomp(Path::new(&dir)) {
            println!("cargo:rustc-link-search=native={dir}");
            println!("cargo:rustc-link-lib=dylib:+verbatim={gomp}");
            println!("cargo:rustc-cfg=libgomp");
        }
    }
}

/// libtorch's libgomp: `libgomp.so.1` in PyPI wheels, `libgomp-<hash>.so.1` in libtorch zips.
fn libgomp(dir: &Path) -> Option<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .ok()?
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| n.starts_with("libgomp") && n.contains(".so"))
        .collect();
    names.sort();
    names.into_iter().next()
}
