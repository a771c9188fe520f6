//! `tunelab demo`: makes the offline demo ready (imports the shipped MIDI collections) and says
//! where everything is.

use anyhow::Context;
use clap::Args;

#[derive(Debug, Args)]
pub struct DemoArgs {}

impl DemoArgs {
    pub fn run(&self) -> anyhow::Result<()> {
        let datasets = crate::demo::prepare().context("preparing the demo")?;
        for d in &datasets {
            println!("dataset {}", d.display());
        }
        let model = crate::demo::model_dir();
        if crate::models::music_transformer::is_model_dir(&model) {
            println!("model   {}", model.display());
        } else {
            println!(
                "model   missing: {} (tools/train_demo_model.sh makes it)",
                model.display()
            );
        }
        Ok(())
    }
}
