use clap::Parser;
use tunelab::cli::Cli;

fn main() -> anyhow::Result<()> {
    tunelab::memory::tune();
    // Load OpenBLAS (and set its core type) while this is the only thread.
    let _ = tunelab::models::blas::backend();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn,symphonia_core=off")),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    match cli.command {
        Some(cmd) => cmd.run(),
        None => open_studio(cli.tab.as_deref()),
    }
}

#[cfg(feature = "gui")]
fn open_studio(tab: Option<&str>) -> anyhow::Result<()> {
    let tab = tab.map(str::parse::<tunelab::ui::Tab>).transpose()?;
    tunelab::ui::run(tab)
}

#[cfg(not(feature = "gui"))]
fn open_studio(_tab: Option<&str>) -> anyhow::Result<()> {
    anyhow::bail!(
        "this build has no studio (built without the `gui` feature); see `tunelab --help`"
    )
}
