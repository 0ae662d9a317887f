//! `epsvec._epsvec.Engine`: a loaded model. The Python facade
//! (`epsvec.model.Model`) validates arguments and documents the API.

use std::path::PathBuf;
use std::sync::Mutex;

use numpy::{IntoPyArray, PyArray2, PyArray3, PyReadonlyArray3};
use pyo3::prelude::*;
use pyo3::types::PyDict;
use tch::{Device, Kind};

use super::errors::run;
use super::sampling::PySamplingParams;
use crate::engine::Engine;
use crate::error::EpsvecError;
use crate::generate::{RowLength, SteerBatch};
use crate::hooks::{Pool, Positions};
use crate::model::blocks::BlockMode;

#[pyclass(name = "Engine", module = "epsvec._epsvec")]
pub struct PyEngine {
    // tch tensors are Send but not Sync; the lock serialises callers, and
    // libtorch already uses every core within one call.
    inner: Mutex<Engine>,
}

/// Asks libtorch about CUDA only when the name is not "cpu": the first such
/// question fixes, for the whole process (torch's too), whether CUDA exists,
/// so it must come after `epsvec._cuda.enable_cuda` has loaded torch's CUDA library.
fn parse_device(name: &str) -> crate::Result<Device> {
    if name == "cpu" {
        return Ok(Device::Cpu);
    }
    let cuda_count = tch::Cuda::device_count() as usize;
    let cuda = |index: usize| {
        if cuda_count == 0 {
            Err(EpsvecError::Device(format!(
                "device {name:?} was asked for but CUDA is not available (no GPU or driver visible to libtorch); \
                 use device=\"cpu\" or \"auto\""
            )))
        } else if index >= cuda_count {
            Err(EpsvecError::Device(format!("device {name:?}: only {cuda_count} CUDA device(s) are visible")))
        } else {
            Ok(Device::Cuda(index))
        }
    };
    match name {
        "auto" => Ok(if cuda_count > 0 { Device::Cuda(0) } else { Device::Cpu }),
        "cuda" => cuda(0),
        other => match other.strip_prefix("cuda:").and_then(|i| i.parse::<usize>().ok()) {
            Some(index) => cuda(index),
            None => Err(EpsvecError::InvalidInput(format!(
                "device must be \"cpu\", \"cuda\", \"cuda:N\" or \"auto\", got {other:?}"
            ))),
        },
    }
}

/// The dtype to load as, and whether quantized GGUF weights stay in their
/// blocks: "auto" on the CPU keeps them (float32 activations); "float32"
/// dequantizes the whole file at load, the reference path.
/// The tensors' kind, and how GGUF blocks are computed with: kept (with
/// `activations`) only for `dtype="auto"` on the CPU.
fn parse_dtype(name: &str, device: Device, activations: &str) -> crate::Result<(Kind, BlockMode)> {
    let (kind, blocks) = match name {
        "auto" if device == Device::Cpu => (Kind::Float, true),
        "auto" => (Kind::BFloat16, false),
        "float32" | "f32" | "fp32" => (Kind::Float, false),
        "bfloat16" | "bf16" => (Kind::BFloat16, false),
        "float16" | "f16" | "fp16" | "half" => (Kind::Half, false),
        other => {
            return Err(EpsvecError::InvalidInput(format!(
                "dtype must be \"auto\", \"float32\", \"bfloat16\" or \"float16\", got {other:?}"
            )))
        }
    };
    let mode = match (blocks, activations) {
        (true, "auto") => BlockMode::Auto,
        (true, "int8") => BlockMode::Int8,
        (true, "float32") => BlockMode::Exact,
        (false, "auto" | "float32") => BlockMode::Dequantized,
        (false, "int8") => return Err(EpsvecError::InvalidInput(
            "activations=\"int8\" computes from GGUF blocks on the CPU: use it with dtype=\"auto\" and device=\"cpu\""
                .into(),
        )),
        (_, other) => {
            return Err(EpsvecError::InvalidInput(format!(
                "activations must be \"auto\", \"int8\" or \"float32\", got {other:?}"
            )))
        }
    };
    Ok((kind, mode))
}

pub(super) fn parse_pool(name: Option<&str>) -> crate::Result<Pool> {
    match name {
        Some("mean") => Ok(Pool::Mean),
        Some("last") => Ok(Pool::Last),
        None => Ok(Pool::None),
        Some(other) => {
            Err(EpsvecError::InvalidInput(format!("pool must be \"mean\", \"last\" or None, got {other:?}")))
        }
    }
}

fn device_name(device: Device) -> String {
    match device {
        Device::Cuda(i) => format!("cuda:{i}"),
        _ => "cpu".into(),
    }
}

fn parse_positions(name: &str) -> crate::Result<Positions> {
    match name {
        "last" => Ok(Positions::Last),
        "all" => Ok(Positions::All),
        "generated" => Ok(Positions::Generated),
        other => Err(EpsvecError::InvalidInput(format!(
            "positions must be \"last\", \"all\" or \"generated\", got {other:?}"
        ))),
    }
}

fn kind_name(kind: Kind) -> &'static str {
    match kind {
        Kind::BFloat16 => "bfloat16",
        Kind::Half => "float16",
        _ => "float32",
    }
}

impl PyEngine {
    pub(super) fn engine(&self) -> std::sync::MutexGuard<'_, Engine> {
        // A panic inside a call is caught and reported; the engine holds no
        // half-updated state, so a poisoned lock is still usable.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[pymethods]
impl PyEngine {
    #[new]
    #[pyo3(signature = (path, device = "auto", dtype = "auto", activations = "auto"))]
    fn new(py: Python<'_>, path: PathBuf, device: &str, dtype: &str, activations: &str) -> PyResult<Self> {
        let engine = run(py, || {
            let device = parse_device(device)?;
            let (kind, blocks) = parse_dtype(dtype, device, activations)?;
            Engine::load(&path, device, kind, blocks)
        })?;
        Ok(Self { inner: Mutex::new(engine) })
    }

    /// The resolved configuration as a dict.
    fn config<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let engine = self.engine();
        let c = &engine.model.config;
        let d = PyDict::new(py);
        d.set_item("architecture", c.architecture.hf_name())?;
        d.set_item("num_layers", c.num_layers)?;
        d.set_item("hidden_size", c.hidden_size)?;
        d.set_item("intermediate_size", c.intermediate_size)?;
        d.set_item("num_heads", c.num_heads)?;
        d.set_item("num_kv_heads", c.num_kv_heads)?;
        d.set_item("head_dim", c.head_dim)?;
        d.set_item("vocab_size", c.vocab_size)?;
        d.set_item("context_length", c.max_position_embeddings)?;
        d.set_item("rope_theta", c.rope_theta)?;
        d.set_item("tie_word_embeddings", c.tie_word_embeddings)?;
        d.set_item("bos_token_id", c.bos_token_id)?;
        d.set_item("eos_token_ids", c.eos_token_ids.clone())?;
        d.set_item("format", engine.format)?;
        d.set_item("device", device_name(engine.device()))?;
        d.set_item("dtype", kind_name(engine.model.placement.kind))?;
        d.set_item(
            "weights",
            if engine.model.holds_blocks() { "gguf blocks" } else { kind_name(engine.model.placement.kind) },
        )?;
        d.set_item("chat_template", engine.tokenizer.chat_template.clone())?;
        Ok(d)
    }

    /// A fingerprint of the weight files (see `model::fingerprint`).
    fn fingerprint(&self, py: Python<'_>) -> PyResult<String> {
        run(py, || self.engine().fingerprint())
    }

    /// Token ids per text (special tokens added as transformers does),
    /// and how many texts were cut to the context length.
    #[pyo3(signature = (texts, add_special_tokens = true))]
    fn encode(&self, py: Python<'_>, texts: Vec<String>, add_special_tokens: bool) -> PyResult<(Vec<Vec<u32>>, usize)> {
        run(py, || {
            let encoded = self.engine().encode(&texts, add_special_tokens)?;
            Ok((encoded.ids, encoded.truncated))
        })
    }

    #[pyo3(signature = (ids, skip_special_tokens = false))]
    fn decode(&self, py: Python<'_>, ids: Vec<u32>, skip_special_tokens: bool) -> PyResult<String> {
        run(py, || self.engine().tokenizer.decode(&ids, skip_special_tokens))
    }

    /// Pooled states `[n, n_layers, hidden]` (pool "mean"/"last"); `weights`
    /// (one list per text, one value per token) make "mean" a weighted mean.
    #[pyo3(signature = (ids, layers, pool, batch_size, weights = None))]
    fn pooled_states<'py>(
        &self,
        py: Python<'py>,
        ids: Vec<Vec<u32>>,
        layers: Option<Vec<i64>>,
        pool: &str,
        batch_size: usize,
        weights: Option<Vec<Vec<f32>>>,
    ) -> PyResult<Bound<'py, PyArray3<f32>>> {
        let states = run(py, || {
            let engine = self.engine();
            let layers = engine.resolve_layers(layers.as_deref())?;
            let pool = parse_pool(Some(pool))?;
            if pool == Pool::None {
                return Err(EpsvecError::InvalidInput("use token_states for unpooled states".into()));
            }
            engine.pooled_states(&ids, &layers, pool, weights.as_deref(), batch_size)
        })?;
        Ok(states.into_pyarray(py))
    }

    /// Per-token states, one `[n_tokens, n_layers, hidden]` array per text.
    #[pyo3(signature = (ids, layers, batch_size))]
    fn token_states<'py>(
        &self,
        py: Python<'py>,
        ids: Vec<Vec<u32>>,
        layers: Option<Vec<i64>>,
        batch_size: usize,
    ) -> PyResult<Vec<Bound<'py, PyArray3<f32>>>> {
        let states = run(py, || {
            let engine = self.engine();
            let layers = engine.resolve_layers(layers.as_deref())?;
            engine.token_states(&ids, &layers, batch_size)
        })?;
        Ok(states.into_iter().map(|a| a.into_pyarray(py)).collect())
    }

    /// Logits at every position, one `[n_tokens, vocab]` array per text.
    #[pyo3(signature = (ids, batch_size))]
    fn logits<'py>(
        &self,
        py: Python<'py>,
        ids: Vec<Vec<u32>>,
        batch_size: usize,
    ) -> PyResult<Vec<Bound<'py, PyArray2<f32>>>> {
        let logits = run(py, || self.engine().logits(&ids, batch_size))?;
        Ok(logits.into_iter().map(|a| a.into_pyarray(py)).collect())
    }

    /// Log-probabilities of `candidates` as each text's next token
    /// (`Engine::next_token_logprobs`): `[n_texts, n_candidates]`.
    #[pyo3(signature = (ids, candidates, batch_size))]
    fn next_token_logprobs<'py>(
        &self,
        py: Python<'py>,
        ids: Vec<Vec<u32>>,
        candidates: Vec<u32>,
        batch_size: usize,
    ) -> PyResult<Bound<'py, PyArray2<f32>>> {
        Ok(run(py, || self.engine().next_token_logprobs(&ids, &candidates, batch_size))?.into_pyarray(py))
    }

    /// Logits at every position of each text, one decoding step per token
    /// (`Engine::stepwise_logits`).
    fn stepwise_logits<'py>(&self, py: Python<'py>, ids: Vec<Vec<u32>>) -> PyResult<Vec<Bound<'py, PyArray2<f32>>>> {
        let logits =
            run(py, || ids.iter().map(|t| self.engine().stepwise_logits(t)).collect::<crate::Result<Vec<_>>>())?;
        Ok(logits.into_iter().map(|a| a.into_pyarray(py)).collect())
    }

    /// Continuations of one batch of prompts (token ids):
    /// `(generated ids, text, finish reason)` per prompt. `streams` name
    /// each prompt's random stream; `steer` is `(layers, vectors
    /// [rows, layers, hidden], positions)`; `lengths` each prompt's
    /// `(min_new_tokens, end_at_sentence_after)` (default: the params'
    /// minimum, no sentence end).
    #[pyo3(signature = (ids, streams, params, stop, steer = None, lengths = None))]
    #[allow(clippy::too_many_arguments)]
    fn generate(
        &self,
        py: Python<'_>,
        ids: Vec<Vec<u32>>,
        streams: Vec<usize>,
        params: PySamplingParams,
        stop: Vec<String>,
        steer: Option<(Vec<usize>, PyReadonlyArray3<'_, f32>, String)>,
        lengths: Option<Vec<(usize, Option<usize>)>>,
    ) -> PyResult<Vec<(Vec<u32>, String, &'static str)>> {
        let steer = match steer {
            Some((layers, vectors, positions)) => {
                Some((layers, vectors.as_array().iter().copied().collect::<Vec<f32>>(), positions))
            }
            None => None,
        };
        run(py, || {
            let steer = match steer {
                Some((layers, vectors, positions)) => {
                    Some(SteerBatch { layers, vectors, positions: parse_positions(&positions)? })
                }
                None => None,
            };
            let lengths: Option<Vec<RowLength>> = lengths.map(|l| {
                l.into_iter()
                    .map(|(min_new, end_at_sentence_after)| RowLength { min_new, end_at_sentence_after })
                    .collect()
            });
            let out =
                self.engine().generate(&ids, &streams, &params.inner, &stop, steer.as_ref(), lengths.as_deref())?;
            Ok(out.into_iter().map(|g| (g.ids, g.text, g.finish.as_str())).collect())
        })
    }
}

/// How many CUDA devices libtorch sees (0 without a GPU or driver); call
/// through `epsvec.cuda_device_count`, which loads torch's CUDA library first.
#[pyfunction]
pub fn cuda_device_count() -> usize {
    tch::Cuda::device_count() as usize
}
