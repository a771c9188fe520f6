//! Signal processing with no knowledge of files, models or datasets: resampling and the log-mel
//! front end. It sits just above `error`, so audio import (`data`), models (CLAP) and the
//! metrics (`eval`) share one implementation — what the dataset browser shows is what the
//! metrics measure.

pub mod mel;
pub mod resample;

pub use resample::resample;
