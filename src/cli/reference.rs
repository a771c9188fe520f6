//! The PyTorch references the benchmarks run beside tunelab (`tools/bench_*_pytorch.py`), so
//! a ratio is only ever printed against a number measured in the same invocation.

use anyhow::Context;

/// Runs `tools/<script> --json <args…>` with python3 and returns the JSON object it prints last.
pub fn run_python_json(script: &str, args: &[&str]) -> anyhow::Result<serde_json::Value> {
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tools")
        .join(script);
    let out = std::process::Command::new("python3")
        .arg(&script)
        .arg("--json")
        .args(args)
        .output()
        .with_context(|| format!("running {}", script.display()))?;
    if !out.status.success() {
        anyhow::bail!(
            "{} failed: {}",
            script.display(),
            String::from_utf8_lossy(&out.stderr)
                .lines()
                .last()
                .unwrap_or("")
        );
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text
        .lines()
        .rev()
        .find(|l| l.trim_start().starts_with('{'))
        .with_context(|| format!("{} printed no JSON", script.display()))?;
    Ok(serde_json::from_str(line)?)
}
