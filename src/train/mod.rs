//! Training: loss, optimisation and the trainable model. (Dataset import, runs, checkpoints and
//! the training loop itself are issue #3's remaining work.)

pub mod lora;
pub mod loss;
pub mod optim;
pub mod trainable;
