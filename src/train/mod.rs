//! Training: configuration, batches, loss, optimisation, the trainable model per mode, LoRA,
//! the run loop with its checkpoints and metrics, and exports.

pub mod checkpointing;
pub mod config;
pub mod data;
pub mod export;
pub mod learner;
pub mod lora;
pub mod loss;
pub mod midi;
pub mod musicgen;
pub mod optim;
pub mod trainable;
pub mod trainer;
