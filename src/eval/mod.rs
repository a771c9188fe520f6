//! Evaluation: the blind listening test and objective metrics.

pub mod listen;
pub mod metrics;
pub mod report;
pub mod verdict;
