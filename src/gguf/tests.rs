//! Header parsing: a valid file, and every way of breaking it giving an Err.

use super::*;

const F32: u32 = 0;
const Q8_0: u32 = 8;

/// Value type ids used below.
const T_U32: u32 = 4;
const T_F32: u32 = 6;
const T_BOOL: u32 = 7;
const T_STRING: u32 = 8;
const T_ARRAY: u32 = 9;

fn gstr(s: &[u8]) -> Vec<u8> {
    let mut out = (s.len() as u64).to_le_bytes().to_vec();
    out.extend_from_slice(s);
    out
}

/// A type id followed by its encoded payload.
fn val(ty: u32, payload: &[u8]) -> Vec<u8> {
    let mut out = ty.to_le_bytes().to_vec();
    out.extend_from_slice(payload);
    out
}

fn string_array(items: &[&str]) -> Vec<u8> {
    let mut payload = T_STRING.to_le_bytes().to_vec();
    payload.extend((items.len() as u64).to_le_bytes());
    for s in items {
        payload.extend(gstr(s.as_bytes()));
    }
    val(T_ARRAY, &payload)
}

#[derive(Clone)]
struct Tensor {
    name: &'static str,
    dims: Vec<u64>,
    ty: u32,
    offset: u64,
}

/// A GGUF file under construction; tests break one field at a time.
#[derive(Clone)]
struct Builder {
    magic: [u8; 4],
    version: u32,
    n_tensors: Option<u64>,
    n_kv: Option<u64>,
    kvs: Vec<(Vec<u8>, Vec<u8>)>,
    tensors: Vec<Tensor>,
    /// Padding before the data section (must match `general.alignment`).
    alignment: usize,
    data: Vec<u8>,
}

impl Builder {
    /// Five metadata pairs and two tensors: an F32 [4] and a Q8_0 [32, 2]
    /// whose last byte is the file's last byte.
    fn valid() -> Self {
        let mut data: Vec<u8> = [1.0f32, 2.0, 3.0, 4.0].iter().flat_map(|v| v.to_le_bytes()).collect();
        data.resize(32, 0);
        for sign in [1i8, -1] {
            data.extend([0x00, 0x3C]); // f16 1.0
            data.extend((0..32i8).map(|q| (sign * q) as u8));
        }
        Self {
            magic: *b"GGUF",
            version: 3,
            n_tensors: None,
            n_kv: None,
            kvs: vec![
                (b"general.architecture".to_vec(), val(T_STRING, &gstr(b"llama"))),
                (b"llama.block_count".to_vec(), val(T_U32, &30u32.to_le_bytes())),
                (b"llama.rope.freq_base".to_vec(), val(T_F32, &10000f32.to_le_bytes())),
                (b"tokenizer.ggml.add_bos_token".to_vec(), val(T_BOOL, &[1])),
                (b"tokenizer.ggml.tokens".to_vec(), string_array(&["a", "b", "<s>"])),
            ],
            tensors: vec![
                Tensor { name: "norm", dims: vec![4], ty: F32, offset: 0 },
                Tensor { name: "embd", dims: vec![32, 2], ty: Q8_0, offset: 32 },
            ],
            alignment: 32,
            data,
        }
    }

    fn kv(mut self, key: &str, value: Vec<u8>) -> Self {
        self.kvs.push((key.as_bytes().to_vec(), value));
        self
    }

    fn bytes(&self) -> Vec<u8> {
        let mut out = self.magic.to_vec();
        out.extend(self.version.to_le_bytes());
        out.extend(self.n_tensors.unwrap_or(self.tensors.len() as u64).to_le_bytes());
        out.extend(self.n_kv.unwrap_or(self.kvs.len() as u64).to_le_bytes());
        for (key, value) in &self.kvs {
            out.extend(gstr(key));
            out.extend(value);
        }
        for t in &self.tensors {
            out.extend(gstr(t.name.as_bytes()));
            out.extend((t.dims.len() as u32).to_le_bytes());
            for d in &t.dims {
                out.extend(d.to_le_bytes());
            }
            out.extend(t.ty.to_le_bytes());
            out.extend(t.offset.to_le_bytes());
        }
        out.resize(out.len().next_multiple_of(self.alignment), 0);
        out.extend(&self.data);
        out
    }

    fn parse(&self) -> Parse<Header> {
        parse(&self.bytes())
    }

    /// The parse error, which must exist.
    fn error(&self) -> String {
        match self.parse() {
            Ok(_) => panic!("expected a parse error"),
            Err(e) => e,
        }
    }
}

fn assert_error(b: Builder, needle: &str) {
    let err = b.error();
    assert!(err.contains(needle), "error {err:?} does not mention {needle:?}");
}

#[test]
fn valid_file_parses() {
    let h = Builder::valid().parse().unwrap();
    assert_eq!(h.version, 3);
    assert_eq!(h.alignment, 32);
    assert_eq!(h.metadata["general.architecture"].as_str(), Some("llama"));
    assert_eq!(h.metadata["llama.block_count"].as_u64(), Some(30));
    assert_eq!(h.metadata["llama.rope.freq_base"].as_f64(), Some(10000.0));
    assert_eq!(h.metadata["tokenizer.ggml.add_bos_token"].as_bool(), Some(true));
    assert_eq!(h.metadata["tokenizer.ggml.tokens"].as_string_list(), Some(vec!["a", "b", "<s>"]));
    assert_eq!(h.tensors.len(), 2);
    let embd = &h.tensors[h.by_name["embd"]];
    assert_eq!((embd.ty, embd.shape(), embd.n_elements(), embd.n_bytes()), (GgmlType::Q8_0, vec![2, 32], 64, 68));
    assert_eq!(h.data_offset % 32, 0);
}

#[test]
fn version_2_parses() {
    let mut b = Builder::valid();
    b.version = 2;
    assert_eq!(b.parse().unwrap().version, 2);
}

#[test]
fn every_truncation_is_an_error() {
    let bytes = Builder::valid().bytes();
    for len in 0..bytes.len() {
        let err = parse(&bytes[..len]).err();
        let err = err.unwrap_or_else(|| panic!("prefix of {len} bytes parsed"));
        let known = ["truncated", "cannot fit", "past the end"];
        assert!(known.iter().any(|k| err.contains(k)), "{len}: {err}");
    }
}

#[test]
fn bad_magic() {
    let mut b = Builder::valid();
    b.magic = *b"GGML";
    assert_error(b, "magic");
}

#[test]
fn unsupported_versions() {
    for (version, needle) in [(1, "version 1"), (4, "version 4"), (0x0300_0000, "big-endian")] {
        let mut b = Builder::valid();
        b.version = version;
        assert_error(b, needle);
    }
}

#[test]
fn absurd_counts() {
    for n in [1u64 << 60, u64::MAX, 1000] {
        let mut b = Builder::valid();
        b.n_tensors = Some(n);
        assert_error(b, "tensor count");
        let mut b = Builder::valid();
        b.n_kv = Some(n);
        assert_error(b, "metadata count");
    }
}

#[test]
fn absurd_array_and_string_lengths() {
    let mut huge_array = T_U32.to_le_bytes().to_vec();
    huge_array.extend((1u64 << 60).to_le_bytes());
    assert_error(Builder::valid().kv("x", val(T_ARRAY, &huge_array)), "array length");
    let huge_string = (1u64 << 62).to_le_bytes();
    assert_error(Builder::valid().kv("x", val(T_STRING, &huge_string)), "truncated");
    let mut bytes = Builder::valid().bytes();
    bytes[24..32].copy_from_slice(&u64::MAX.to_le_bytes()); // the first key's length
    assert!(parse(&bytes).unwrap_err().contains("metadata key"));
}

#[test]
fn bad_metadata_values() {
    assert_error(Builder::valid().kv("x", val(13, &[0; 8])), "unknown value type 13");
    let mut nested = T_ARRAY.to_le_bytes().to_vec();
    nested.extend(0u64.to_le_bytes());
    assert_error(Builder::valid().kv("x", val(T_ARRAY, &nested)), "arrays of arrays");
    let mut bad_elem = 99u32.to_le_bytes().to_vec();
    bad_elem.extend(0u64.to_le_bytes());
    assert_error(Builder::valid().kv("x", val(T_ARRAY, &bad_elem)), "element type 99");
    assert_error(Builder::valid().kv("x", val(T_STRING, &gstr(&[0xFF, 0xFE]))), "UTF-8");
    let mut b = Builder::valid();
    b.kvs.push((vec![0xC0], val(T_BOOL, &[0])));
    assert_error(b, "UTF-8");
    assert_error(Builder::valid().kv("llama.block_count", val(T_U32, &[0; 4])), "duplicate metadata key");
}

#[test]
fn alignment_is_read_and_checked() {
    let mut b = Builder::valid().kv("general.alignment", val(T_U32, &64u32.to_le_bytes()));
    b.alignment = 64;
    b.tensors[1].offset = 64;
    b.data.splice(32..32, [0; 32]);
    let h = b.parse().unwrap();
    assert_eq!((h.alignment, h.data_offset % 64), (64, 0));
    for bad in [0u32, 3, 48] {
        assert_error(Builder::valid().kv("general.alignment", val(T_U32, &bad.to_le_bytes())), "power of two");
    }
    assert_error(Builder::valid().kv("general.alignment", val(T_STRING, &gstr(b"32"))), "power of two");
}

/// Breaks one tensor info.
type Break = fn(&mut Tensor);

#[test]
fn bad_tensor_infos() {
    let cases: [(Break, &str); 7] = [
        (|t| t.dims = vec![1; 5], "5 dimensions"),
        (|t| t.ty = 4, "unknown ggml type id 4"),
        (|t| t.ty = 1000, "unknown ggml type id 1000"),
        (|t| t.dims = vec![16, 4], "whole number of Q8_0 blocks"),
        (|t| t.dims = vec![1 << 32, 1 << 32, 1 << 32], "i64 range"),
        (|t| t.dims = vec![0, 1 << 63], "i64 range"),
        (|t| t.offset = 48, "multiple of the alignment"),
    ];
    for (breaks, needle) in cases {
        let mut b = Builder::valid();
        breaks(&mut b.tensors[1]);
        assert_error(b, needle);
    }
    let mut b = Builder::valid();
    b.tensors[1].ty = Q8_0 + 1000; // not a type at all
    assert_error(b, "unknown ggml type");
    let mut b = Builder::valid();
    b.tensors[1].name = "norm";
    assert_error(b, "duplicate tensor name");
}

#[test]
fn tensor_out_of_bounds() {
    for offset in [64, 1 << 40, u64::MAX - 31] {
        let mut b = Builder::valid();
        b.tensors[1].offset = offset;
        assert_error(b, "past the end");
    }
    let mut b = Builder::valid();
    b.tensors[1].dims = vec![32, 3];
    assert_error(b, "past the end");
}

#[test]
fn zero_tensors_and_zero_sized_tensors_are_fine() {
    let mut b = Builder::valid();
    b.tensors.clear();
    b.data.clear();
    assert!(b.parse().unwrap().tensors.is_empty());
    let mut b = Builder::valid();
    b.tensors[0].dims = vec![0, 7];
    assert_eq!(b.parse().unwrap().tensors[0].n_bytes(), 0);
}

/// A file in the temp dir, removed when dropped.
struct TempFile(PathBuf);

impl TempFile {
    fn new(name: &str, bytes: &[u8]) -> Self {
        let path = std::env::temp_dir().join(format!("epsvec-gguf-{}-{name}", std::process::id()));
        std::fs::write(&path, bytes).unwrap();
        Self(path)
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

#[test]
fn open_reads_tensors() {
    let file = TempFile::new("valid.gguf", &Builder::valid().bytes());
    let g = GgufFile::open(&file.0).unwrap();
    assert_eq!(g.get("general.architecture").and_then(GgufValue::as_str), Some("llama"));
    let norm = g.tensor("norm").unwrap();
    assert_eq!(g.dequantize(norm).unwrap(), [1.0, 2.0, 3.0, 4.0]);
    let embd = g.tensor("embd").unwrap();
    assert_eq!(g.tensor_bytes(embd).len(), 68);
    let y = g.dequantize(embd).unwrap();
    assert_eq!((y[0], y[5], y[32 + 5]), (0.0, 5.0, -5.0));
    assert!(g.tensor("missing").is_none());
}

#[test]
fn foreign_tensor_info_is_an_error_not_a_panic() {
    let file = TempFile::new("foreign.gguf", &Builder::valid().bytes());
    let g = GgufFile::open(&file.0).unwrap();
    let foreign = TensorInfo { name: "x".into(), dims: vec![32, 1 << 40], ty: GgmlType::Q8_0, offset: 0 };
    assert!(g.tensor_bytes(&foreign).is_empty());
    assert!(g.dequantize(&foreign).is_err());
}

#[test]
fn open_errors_carry_the_path() {
    let missing = Path::new("/nonexistent/model.gguf");
    assert!(matches!(GgufFile::open(missing), Err(EpsvecError::Io { .. })));
    let empty = TempFile::new("empty.gguf", &[]);
    match GgufFile::open(&empty.0) {
        Err(EpsvecError::CorruptFile { path, reason }) => {
            assert!(path.ends_with("empty.gguf"), "{path}");
            assert!(reason.contains("magic"), "{reason}");
        }
        other => panic!("expected CorruptFile, got {:?}", other.map(|_| ())),
    }
}

#[test]
fn random_corruptions_never_panic() {
    let valid = Builder::valid().bytes();
    let mut state = 0x2545_F491_4F6C_DD1Du64;
    let mut next = move || {
        // xorshift64: deterministic, no dependency.
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    for _ in 0..20_000 {
        let mut bytes = valid.clone();
        for _ in 0..1 + next() % 4 {
            let i = (next() % bytes.len() as u64) as usize;
            bytes[i] = match next() % 3 {
                0 => next() as u8,
                1 => 0xFF,
                _ => 0,
            };
        }
        let len = bytes.len() - (next() % 8) as usize;
        let _ = parse(&bytes[..len]);
    }
}
