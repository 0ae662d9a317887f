//! Dataset vectors on disk: one safetensors file with the per-layer
//! directions `[n_layers, hidden]` (float32) and JSON metadata (layers,
//! model fingerprint, privacy parameters) in the header.

use std::collections::HashMap;
use std::path::Path;

use safetensors::tensor::{Dtype, TensorView};
use safetensors::SafeTensors;

use crate::error::{EpsvecError, Result};

const TENSOR: &str = "directions";
const METADATA: &str = "epsvec";

/// Writes `directions` (`n_layers * hidden` row-major float32) and the JSON
/// `metadata` string.
pub fn save(path: &Path, directions: &[f32], n_layers: usize, hidden: usize, metadata: &str) -> Result<()> {
    if directions.len() != n_layers * hidden || n_layers == 0 || hidden == 0 {
        return Err(EpsvecError::InvalidInput(format!(
            "a vector of {} values cannot be {n_layers} layers x {hidden}",
            directions.len()
        )));
    }
    serde_json::from_str::<serde_json::Value>(metadata)
        .map_err(|e| EpsvecError::InvalidInput(format!("vector metadata is not JSON: {e}")))?;
    let bytes: Vec<u8> = directions.iter().flat_map(|v| v.to_le_bytes()).collect();
    let view = TensorView::new(Dtype::F32, vec![n_layers, hidden], &bytes)
        .map_err(|e| EpsvecError::InvalidInput(e.to_string()))?;
    let header = HashMap::from([(METADATA.to_string(), metadata.to_string())]);
    safetensors::serialize_to_file([(TENSOR, view)], Some(header), path).map_err(|e| match e {
        safetensors::SafeTensorError::IoError(io) => EpsvecError::io(path, io),
        other => EpsvecError::InvalidInput(other.to_string()),
    })
}

/// Reads a vector file: `(directions, n_layers, hidden, metadata JSON)`.
pub fn load(path: &Path) -> Result<(Vec<f32>, usize, usize, String)> {
    let bytes = std::fs::read(path).map_err(|e| EpsvecError::io(path, e))?;
    let corrupt = |why: String| EpsvecError::corrupt(path, format!("not an epsvec vector file: {why}"));
    let (_, header) = SafeTensors::read_metadata(&bytes).map_err(|e| corrupt(e.to_string()))?;
    let metadata = header
        .metadata()
        .as_ref()
        .and_then(|m| m.get(METADATA))
        .cloned()
        .ok_or_else(|| corrupt(format!("no {METADATA:?} metadata")))?;
    serde_json::from_str::<serde_json::Value>(&metadata).map_err(|e| corrupt(format!("metadata is not JSON: {e}")))?;
    let tensors = SafeTensors::deserialize(&bytes).map_err(|e| corrupt(e.to_string()))?;
    let view = tensors.tensor(TENSOR).map_err(|_| corrupt(format!("no {TENSOR:?} tensor")))?;
    let (n_layers, hidden) = match (view.dtype(), view.shape()) {
        (Dtype::F32, &[l, h]) if l > 0 && h > 0 => (l, h),
        (dtype, shape) => {
            return Err(corrupt(format!("{TENSOR:?} is {dtype:?} {shape:?}, expected F32 [layers, hidden]")))
        }
    };
    let directions = view.data().chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect();
    Ok((directions, n_layers, hidden, metadata))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_corruption() {
        let dir = std::env::temp_dir().join(format!("epsvec-vec-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("v.safetensors");
        let data: Vec<f32> = (0..6).map(|i| i as f32 * 0.5).collect();
        save(&path, &data, 2, 3, r#"{"layers": [4, 5]}"#).unwrap();
        let (back, l, h, meta) = load(&path).unwrap();
        assert_eq!((back, l, h), (data.clone(), 2, 3));
        assert!(meta.contains("layers"));
        let bytes = std::fs::read(&path).unwrap();
        std::fs::write(&path, &bytes[..bytes.len() - 5]).unwrap();
        assert!(matches!(load(&path), Err(EpsvecError::CorruptFile { .. })));
        std::fs::write(&path, b"garbage").unwrap();
        assert!(matches!(load(&path), Err(EpsvecError::CorruptFile { .. })));
        assert!(save(&path, &data, 4, 3, "{}").is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
