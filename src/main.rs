//! The composition root: sets up the process (memory, BLAS, logging), parses the command line
//! and hands the CLI the studio (feature `gui`). The CLI and the studio are both edges and never
//! import each other; this file is where they meet: it lends `--tab` the studio's tab names and
//! dispatches `tunelab bench ui` and the studio window through `cli::Studio`.

use clap::{CommandFactory, FromArgMatches};
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
    let cli = parse_args();
    #[cfg(feature = "gui")]
    let studio = gui::Gui;
    #[cfg(not(feature = "gui"))]
    let studio = tunelab::cli::NoStudio;
    cli.run(&studio)
}

/// The command line, with `--tab` limited to (and its help listing) the studio's tabs.
fn parse_args() -> Cli {
    let cmd = Cli::command();
    #[cfg(feature = "gui")]
    let cmd = cmd.mut_arg("tab", |a| {
        a.value_parser(clap::builder::PossibleValuesParser::new(
            tunelab::ui::Tab::names(),
        ))
    });
    let mut matches = cmd.get_matches();
    Cli::from_arg_matches_mut(&mut matches).unwrap_or_else(|e| e.exit())
}

#[cfg(feature = "gui")]
mod gui {
    use tunelab::cli::{bench::BenchUiArgs, Opening, Studio};
    use tunelab::ui::Tab;

    /// The studio of this build.
    pub struct Gui;

    impl Studio for Gui {
        fn open(&self, how: Opening<'_>) -> anyhow::Result<()> {
            let tab = how.tab.map(str::parse::<Tab>).transpose()?;
            let session = how
                .session
                .map(|s| (s.to_path_buf(), how.rater.map(String::from)));
            tunelab::ui::run(tab, session)
        }
        fn bench(&self, a: &BenchUiArgs) -> anyhow::Result<()> {
            tunelab::ui::bench::run(a.steps, a.seconds, a.json, a.device)
        }
    }
}
