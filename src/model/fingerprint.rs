//! A fingerprint of a checkpoint's weight files, so that a dataset vector
//! made with one model is not silently used to steer another.
//!
//! SHA-256 over each file's size and 64 evenly spaced 64 KiB windows of its
//! bytes (the whole file when smaller): constant time for any model size,
//! and two different checkpoints collide only if they agree on all sampled
//! bytes. The same file loaded on another device or in another dtype gives
//! the same fingerprint.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::error::{EpsvecError, Result};

const WINDOWS: u64 = 64;
const WINDOW: u64 = 64 * 1024;

pub fn fingerprint(files: &[PathBuf]) -> Result<String> {
    let mut hasher = Sha256::new();
    for path in files {
        hash_file(&mut hasher, path)?;
    }
    Ok(hasher.finalize().iter().map(|b| format!("{b:02x}")).collect())
}

fn hash_file(hasher: &mut Sha256, path: &Path) -> Result<()> {
    let io = |e| EpsvecError::io(path, e);
    let mut file = File::open(path).map_err(io)?;
    let size = file.metadata().map_err(io)?.len();
    hasher.update(size.to_le_bytes());
    let mut buffer = vec![0u8; WINDOW as usize];
    if size <= WINDOWS * WINDOW {
        let mut all = Vec::with_capacity(size as usize);
        file.read_to_end(&mut all).map_err(io)?;
        hasher.update(&all);
        return Ok(());
    }
    let stride = (size - WINDOW) / (WINDOWS - 1);
    for i in 0..WINDOWS {
        file.seek(SeekFrom::Start(i * stride)).map_err(io)?;
        file.read_exact(&mut buffer).map_err(io)?;
        hasher.update(&buffer);
    }
    Ok(())
}
