//! Per-layer key/value cache, preallocated for the whole generation and
//! written in place (no concatenation per step).

use tch::Tensor;

use crate::error::{EpsvecError, Result};
use crate::model::config::ModelConfig;
use crate::model::placement::Placement;

pub struct KvCache {
    /// Per layer: keys and values `[batch, kv_heads, capacity, head_dim]`.
    layers: Vec<(Tensor, Tensor)>,
    /// Positions filled so far (the same for every row: rows are left-padded).
    len: i64,
    capacity: i64,
}

impl KvCache {
    pub fn new(config: &ModelConfig, batch: i64, capacity: i64, at: Placement) -> Result<Self> {
        let shape = [batch, config.num_kv_heads, capacity, config.head_dim];
        let layers = (0..config.num_layers)
            .map(|_| Ok((Tensor::f_zeros(shape, (at.kind, at.device))?, Tensor::f_zeros(shape, (at.kind, at.device))?)))
            .collect::<Result<Vec<_>>>()?;
        Ok(Self { layers, len: 0, capacity })
    }

    /// A cache of `batch` rows that all start with the one-row `prefix`
    /// cache's contents, with room for `capacity` positions.
    pub fn repeat_prefix(prefix: &KvCache, batch: i64, capacity: i64) -> Result<Self> {
        let layers = prefix
            .layers
            .iter()
            .map(|(k, v)| {
                let grow = |t: &Tensor| -> Result<Tensor> {
                    let mut shape = t.size();
                    shape[0] = batch;
                    shape[2] = capacity;
                    let out = Tensor::f_zeros(shape.as_slice(), (t.kind(), t.device()))?;
                    out.f_narrow(2, 0, prefix.len)?
                        .f_copy_(&t.f_narrow(2, 0, prefix.len)?.f_expand([batch, -1, -1, -1], false)?)?;
                    Ok(out)
                };
                Ok((grow(k)?, grow(v)?))
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Self { layers, len: prefix.len, capacity })
    }

    /// Writes `t` new keys/values `[batch, kv_heads, t, head_dim]` of `layer`
    /// after the cached ones and returns views over everything cached.
    pub fn append(&mut self, layer: usize, k: &Tensor, v: &Tensor) -> Result<(Tensor, Tensor)> {
        let t = k.size()[2];
        if self.len + t > self.capacity {
            return Err(EpsvecError::InvalidInput(format!(
                "KV cache full: {} + {t} positions exceed its capacity {}",
                self.len, self.capacity
            )));
        }
        let (keys, values) = &mut self.layers[layer];
        keys.f_narrow(2, self.len, t)?.f_copy_(k)?;
        values.f_narrow(2, self.len, t)?.f_copy_(v)?;
        Ok((keys.f_narrow(2, 0, self.len + t)?, values.f_narrow(2, 0, self.len + t)?))
    }

    /// Marks `t` more positions as filled (after every layer appended them).
    pub fn advance(&mut self, t: i64) {
        self.len += t;
    }

    /// Positions filled so far.
    pub fn filled(&self) -> i64 {
        self.len
    }

    /// Layer `layer`'s key and value buffers, `[batch, kv_heads, capacity, head_dim]`.
    pub fn buffers(&mut self, layer: usize) -> &mut (Tensor, Tensor) {
        &mut self.layers[layer]
    }

    /// Keeps only the batch rows in `rows` (int64 indices), so finished
    /// rows stop costing compute.
    pub fn keep_rows(&mut self, rows: &Tensor) -> Result<()> {
        for (k, v) in self.layers.iter_mut() {
            *k = k.f_index_select(0, rows)?;
            *v = v.f_index_select(0, rows)?;
        }
        Ok(())
    }
}
