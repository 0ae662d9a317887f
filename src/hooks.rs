//! Hook points on the residual stream: the forward pass hands the output of
//! every decoder block to each hook in turn. Capture (hidden states,
//! extraction) and steering are hooks; the forward knows neither.

use tch::{Kind, Tensor};

use crate::error::Result;

/// Something that reads or edits the residual stream between blocks.
pub trait BlockHook {
    /// Called with the output of decoder block `layer`, `[batch, seq, hidden]`
    /// (HF `hidden_states[layer + 1]`, before any final norm).
    fn after_block(&mut self, layer: usize, hidden: &mut Tensor) -> Result<()>;

    /// The deepest block this hook needs; the forward may stop after it.
    /// `None` means the hook does not limit the forward.
    fn last_layer(&self) -> Option<usize> {
        None
    }
}

/// How a captured `[batch, seq, hidden]` state is reduced over tokens.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Pool {
    /// Mean over the non-pad tokens.
    Mean,
    /// Sum over the non-pad tokens (weighted by the mask): partial means
    /// that are combined later.
    Sum,
    /// The last token (with left padding, the last position of every row).
    Last,
    /// Every token, unreduced.
    None,
}

/// Records the residual stream at chosen blocks, pooled on the device.
pub struct Capture {
    layers: Vec<usize>,
    pool: Pool,
    /// `[batch, seq]` 1.0 on real tokens, 0.0 on padding (float32).
    mask: Tensor,
    states: Vec<Option<Tensor>>,
}

impl Capture {
    /// `layers` in the order the results should come back; `mask` is the
    /// batch's attention mask.
    pub fn new(layers: Vec<usize>, pool: Pool, mask: &Tensor) -> Result<Self> {
        let states = layers.iter().map(|_| None).collect();
        Ok(Self { layers, pool, mask: mask.f_to_kind(Kind::Float)?, states })
    }

    fn reduce(&self, hidden: &Tensor) -> Result<Tensor> {
        let hidden = hidden.f_to_kind(Kind::Float)?;
        Ok(match self.pool {
            Pool::Mean => {
                let mask = self.mask.f_unsqueeze(-1)?;
                let total = hidden.f_mul(&mask)?.f_sum_dim_intlist(1, false, Kind::Float)?;
                total.f_div(&mask.f_sum_dim_intlist(1, false, Kind::Float)?.f_clamp_min(1.0)?)?
            }
            Pool::Sum => hidden.f_mul(&self.mask.f_unsqueeze(-1)?)?.f_sum_dim_intlist(1, false, Kind::Float)?,
            Pool::Last => hidden.f_select(1, -1)?,
            Pool::None => hidden,
        })
    }

    /// The captured states in the requested layer order:
    /// `[batch, hidden]` each when pooled, `[batch, seq, hidden]` otherwise.
    pub fn into_states(self) -> Vec<Tensor> {
        self.states.into_iter().flatten().collect()
    }
}

impl BlockHook for Capture {
    fn after_block(&mut self, layer: usize, hidden: &mut Tensor) -> Result<()> {
        for i in 0..self.layers.len() {
            if self.layers[i] == layer {
                self.states[i] = Some(self.reduce(hidden)?);
            }
        }
        Ok(())
    }

    fn last_layer(&self) -> Option<usize> {
        self.layers.iter().copied().max()
    }
}

/// Where a steering vector is added.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Positions {
    /// The last position of every forward pass: the prompt's last token at
    /// prefill, then each generated token (the EPSVec default).
    Last,
    /// Every position, prompt included.
    All,
    /// Generated tokens only (not the prompt).
    Generated,
}

/// Adds a vector per batch row to the residual stream after chosen blocks.
pub struct Steering {
    layers: Vec<usize>,
    /// `[batch, n_layers, hidden]` in the model's dtype, strength applied.
    vectors: Tensor,
    positions: Positions,
    /// Whether the next forward is the prompt's prefill.
    pub prefill: bool,
}

impl Steering {
    pub fn new(layers: Vec<usize>, vectors: Tensor, positions: Positions) -> Self {
        Self { layers, vectors, positions, prefill: true }
    }

    /// Keeps only the batch rows in `rows` (int64 indices).
    pub fn keep_rows(&mut self, rows: &Tensor) -> Result<()> {
        self.vectors = self.vectors.f_index_select(0, rows)?;
        Ok(())
    }

    /// `(layer, [batch, hidden] vectors)` pairs in float32: what a decoding
    /// step (one new position, never the prefill) adds in every mode.
    pub fn layer_vectors(&self) -> Result<Vec<(usize, Vec<f32>)>> {
        let vectors = self.vectors.f_to_kind(Kind::Float)?;
        let of =
            |i: usize| -> Result<Vec<f32>> { Ok(Vec::try_from(vectors.f_select(1, i as i64)?.f_flatten(0, -1)?)?) };
        self.layers.iter().enumerate().map(|(i, &l)| Ok((l, of(i)?))).collect()
    }
}

impl BlockHook for Steering {
    fn after_block(&mut self, layer: usize, hidden: &mut Tensor) -> Result<()> {
        let Some(i) = self.layers.iter().position(|&l| l == layer) else { return Ok(()) };
        if self.positions == Positions::Generated && self.prefill {
            return Ok(());
        }
        let vector = self.vectors.f_select(1, i as i64)?.f_unsqueeze(1)?;
        match self.positions {
            Positions::Last => {
                let t = hidden.size()[1];
                let _ = hidden.f_narrow(1, t - 1, 1)?.f_add_(&vector)?;
            }
            Positions::All | Positions::Generated => {
                let _ = hidden.f_add_(&vector)?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::Device;

    fn capture(pool: Pool) -> Tensor {
        // Row 0 is left-padded by one token; row 1 is full.
        let mask = Tensor::from_slice(&[0i64, 1, 1, 1, 1, 1]).reshape([2, 3]);
        let mut hidden = Tensor::arange(12, (Kind::Float, Device::Cpu)).reshape([2, 3, 2]);
        let mut cap = Capture::new(vec![4], pool, &mask).unwrap();
        cap.after_block(3, &mut hidden).unwrap();
        cap.after_block(4, &mut hidden).unwrap();
        assert_eq!(cap.last_layer(), Some(4));
        cap.into_states().pop().unwrap()
    }

    #[test]
    fn mean_pool_skips_padding() {
        let got = capture(Pool::Mean);
        // Row 0 averages positions 1, 2: (2,3),(4,5) -> (3,4).
        let want = Tensor::from_slice(&[3.0f32, 4.0, 8.0, 9.0]).reshape([2, 2]);
        assert!(got.allclose(&want, 1e-6, 1e-6, false));
    }

    #[test]
    fn steering_adds_at_the_chosen_positions() {
        let vectors = Tensor::from_slice(&[1.0f32, 2.0, 3.0, 4.0]).reshape([2, 1, 2]);
        for (positions, prefill, touched) in [
            (Positions::Last, true, vec![2]),
            (Positions::All, true, vec![0, 1, 2]),
            (Positions::Generated, true, vec![]),
            (Positions::Generated, false, vec![0, 1, 2]),
        ] {
            let mut steering = Steering::new(vec![5], vectors.shallow_clone(), positions);
            steering.prefill = prefill;
            let mut hidden = Tensor::zeros([2, 3, 2], (Kind::Float, Device::Cpu));
            steering.after_block(4, &mut hidden).unwrap();
            assert_eq!(hidden.abs().sum(Kind::Float).double_value(&[]), 0.0);
            steering.after_block(5, &mut hidden).unwrap();
            for t in 0..3 {
                let want = if touched.contains(&t) { vec![1.0f32, 2.0, 3.0, 4.0] } else { vec![0.0; 4] };
                let got: Vec<f32> = Vec::try_from(hidden.select(1, t).flatten(0, 1)).unwrap();
                assert_eq!(got, want, "{positions:?} prefill={prefill} position {t}");
            }
        }
    }

    #[test]
    fn last_pool_takes_final_position() {
        let want = Tensor::from_slice(&[4.0f32, 5.0, 10.0, 11.0]).reshape([2, 2]);
        assert!(capture(Pool::Last).equal(&want));
    }
}
