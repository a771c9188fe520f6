//! Sample-rate conversion of mono audio (rubato's FFT resampler) with the filter delay removed,
//! so a resampled clip stays in time with its source. Used by audio import, CLAP's front end and
//! every metric that compares clips of different rates.

use rubato::{FftFixedIn, Resampler};

use crate::error::{Error, Result};

/// Resamples mono audio with an FFT resampler; the output has `round(n · to / from)` samples
/// and no added delay.
pub fn resample(samples: &[f32], from: u32, to: u32) -> Result<Vec<f32>> {
    if from == 0 || to == 0 {
        return Err(Error::InvalidRequest(format!(
            "resampling {from} → {to} Hz: a sample rate must be above zero"
        )));
    }
    if from == to || samples.is_empty() {
        return Ok(samples.to_vec());
    }
    // rubato's FFT resampler panics on a NaN or an infinity (it asserts on the spectrum).
    if let Some(i) = samples.iter().position(|v| !v.is_finite()) {
        return Err(Error::InvalidRequest(format!(
            "resampling {from} → {to} Hz: sample {i} is {} (not a finite number)",
            samples[i]
        )));
    }
    let err = |e: String| Error::InvalidRequest(format!("resampling {from} → {to} Hz: {e}"));
    // rubato's FFT size is a multiple of `from / gcd`; its anti-alias filter is centred on
    // sample `size / 2` (rounded down), while `output_delay` assumes the exact half. An odd size
    // (48 or 24 kHz → 32 kHz: multiples of 3) would leave the output half an input sample early,
    // so the chunk is an even multiple and the delay removed below is exact.
    let unit = (from / gcd(from, to)) as usize;
    let chunk = 2 * unit * (1024 / (2 * unit)).max(1);
    let mut rs = FftFixedIn::<f32>::new(from as usize, to as usize, chunk, 1, 1)
        .map_err(|e| err(e.to_string()))?;
    let want = (samples.len() as f64 * to as f64 / from as f64).round() as usize;
    let delay = rs.output_delay();
    let mut out = Vec::with_capacity(want + delay + chunk);
    let mut pos = 0;
    while pos + rs.input_frames_next() <= samples.len() {
        let n = rs.input_frames_next();
        let o = rs
            .process(&[&samples[pos..pos + n]], None)
            .map_err(|e| err(e.to_string()))?;
        out.extend_from_slice(&o[0]);
        pos += n;
    }
    if pos < samples.len() {
        let o = rs
            .process_partial(Some(&[&samples[pos..]]), None)
            .map_err(|e| err(e.to_string()))?;
        out.extend_from_slice(&o[0]);
    }
    while out.len() < want + delay {
        let o = rs
            .process_partial::<&[f32]>(None, None)
            .map_err(|e| err(e.to_string()))?;
        if o[0].is_empty() {
            break;
        }
        out.extend_from_slice(&o[0]);
    }
    let mut out = out.split_off(delay.min(out.len()));
    out.resize(want, 0.0);
    Ok(out)
}

fn gcd(mut a: u32, mut b: u32) -> u32 {
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::sine;

    #[test]
    fn resampling_adds_no_delay_at_any_rate() {
        // A 3 kHz sine from each rate against the ideal one at 32 kHz, away from the edges.
        // Half an input sample early (the odd FFT size at 48 and 24 kHz) errs by 0.1 to 0.2.
        let want = sine(3_000.0, 32_000, 0.5);
        for from in [
            8_000, 11_025, 22_050, 24_000, 44_100, 48_000, 88_200, 96_000,
        ] {
            let x = sine(3_000.0, from, 0.5);
            let got = resample(&x, from, 32_000).unwrap();
            let n = (x.len() as f64 * 32_000.0 / f64::from(from)).round() as usize;
            assert_eq!(got.len(), n, "{from} Hz");
            let err = got[1000..15000]
                .iter()
                .zip(&want[1000..15000])
                .map(|(a, b)| (a - b).abs())
                .fold(0.0f32, f32::max);
            println!("{from} Hz: max error {err:.1e}");
            assert!(err < 2e-3, "{from} Hz: error {err}");
        }
    }

    #[test]
    fn a_non_finite_sample_is_an_error_not_a_panic() {
        for bad in [f32::NAN, f32::INFINITY, f32::NEG_INFINITY] {
            let mut x = sine(440.0, 44_100, 0.2);
            x[1234] = bad;
            let e = resample(&x, 44_100, 32_000).unwrap_err().to_string();
            assert!(
                e.contains("sample 1234") && e.contains("not a finite"),
                "{e}"
            );
        }
    }

    #[test]
    fn a_zero_rate_is_an_error_not_a_panic() {
        let x = sine(440.0, 8_000, 0.1);
        for (from, to) in [(0, 32_000), (32_000, 0), (0, 0)] {
            let e = resample(&x, from, to).unwrap_err().to_string();
            assert!(e.contains("above zero"), "{from} → {to}: {e}");
        }
    }
}
