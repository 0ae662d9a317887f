//! Differential privacy: the accountant that calibrates the Gaussian noise
//! of a dataset-vector release, and the mechanism that makes the release.

pub mod accounting;
pub mod clip;
pub mod mechanism;
pub mod noise;
pub mod release;
pub mod rounded_gaussian;
