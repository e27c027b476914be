//! `b1sar demo`: the method on the embedded default data, end to end, with a report folder.

use super::Output;
use anyhow::Result;
use clap::Args;

/// Arguments of `b1sar demo`.
#[derive(Args)]
pub struct DemoArgs {
    /// Report folder.
    #[arg(long, default_value = "b1sar-demo")]
    pub out: std::path::PathBuf,
}

pub fn run(_a: DemoArgs, _out: &Output) -> Result<()> {
    anyhow::bail!("demo is being written")
}
