//! Let the extension find libtorch without `import torch` first: at run time
//! through torch's own lib dir next to the package, at `cargo test` time
//! through the libtorch the build used.
fn main() {
    println!("cargo:rustc-link-arg=-Wl,-rpath,$ORIGIN/../torch/lib");
    if let Ok(dir) = std::env::var("DEP_TCH_LIBTORCH_LIB") {
        println!("cargo:rustc-link-arg=-Wl,-rpath,{dir}");
    }
}
