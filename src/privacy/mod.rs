//! Differential privacy: the accountant that calibrates the Gaussian noise
//! of a dataset-vector release.

pub mod accounting;
