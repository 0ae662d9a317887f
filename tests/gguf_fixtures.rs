//! Dequantization is bit-exact with gguf-py on one tensor of every supported
//! type (fixtures from tests/data/make_quant_fixtures.py).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use epsvec::gguf::GgufFile;
use safetensors::{Dtype, SafeTensors};

fn data(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data").join(name)
}

#[test]
fn dequantize_matches_gguf_py_bitwise() {
    let gguf = GgufFile::open(&data("quants.gguf")).unwrap();
    let expected_bytes = std::fs::read(data("quants_expected.safetensors")).unwrap();
    let expected = SafeTensors::deserialize(&expected_bytes).unwrap();

    let names: BTreeSet<_> = gguf.tensors.iter().map(|t| t.name.as_str()).collect();
    let expected_names: BTreeSet<_> = expected.names().into_iter().collect();
    assert_eq!(names, expected_names);
    assert_eq!(names.len(), 14);

    for info in &gguf.tensors {
        let want = expected.tensor(&info.name).unwrap();
        assert_eq!(want.dtype(), Dtype::F32);
        let shape: Vec<i64> = want.shape().iter().map(|&d| d as i64).collect();
        assert_eq!(info.shape(), shape, "{}", info.name);

        let got = gguf.dequantize(info).unwrap();
        let want: Vec<u32> =
            want.data().chunks_exact(4).map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect();
        let got: Vec<u32> = got.iter().map(|v| v.to_bits()).collect();
        let mismatches = got.iter().zip(&want).filter(|(a, b)| a != b).count();
        assert_eq!(got.len(), want.len(), "{}", info.name);
        assert_eq!(mismatches, 0, "{} ({}): {mismatches} elements differ", info.name, info.ty);
    }
}

#[test]
fn fixture_header() {
    let gguf = GgufFile::open(&data("quants.gguf")).unwrap();
    assert_eq!(gguf.version, 3);
    assert_eq!(gguf.get("general.architecture").and_then(|v| v.as_str()), Some("quant-fixtures"));
    let t = gguf.tensor("Q8_0_3d").unwrap();
    assert_eq!((t.dims.as_slice(), t.shape()), (&[64, 3, 2][..], vec![2, 3, 64]));
}
