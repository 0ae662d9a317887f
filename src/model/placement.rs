//! Where and as what the engine holds tensors.

use tch::{Device, Kind};

/// What the engine loads tensors as.
#[derive(Clone, Copy, Debug)]
pub struct Placement {
    pub device: Device,
    pub kind: Kind,
}
