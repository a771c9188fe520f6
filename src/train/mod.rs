//! Training, top to bottom: the run loop ([`trainer`]) and what it tells its observer
//! ([`events`]); each family's model and batches behind one trait ([`learner`]: [`musicgen`],
//! [`midi`]); the loss, batches, schedule and optimiser; activation checkpointing; which LM
//! weights are trainable per mode ([`trainable`]); and exports of a finished run ([`export`]).
//!
//! The run folder's layout, checkpoint format and manifest (`TrainConfig`) belong to
//! `crate::store`, which every reader of a run shares; LoRA and PEFT naming to `crate::models`.

pub mod checkpointing;
pub mod data;
pub mod events;
pub mod export;
pub mod learner;
pub mod loss;
pub mod midi;
pub mod musicgen;
pub mod optim;
pub mod schedule;
pub mod trainable;
pub mod trainer;
