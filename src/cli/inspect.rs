//! `b1sar inspect FILE`: what b1sar understands of an input before a user trusts a number from it
//! (the work is `b1sar::inspect`).

use super::Output;
use anyhow::Result;
use clap::Args;
use std::path::PathBuf;

/// Arguments of `b1sar inspect`.
#[derive(Args)]
pub struct InspectArgs {
    /// File to summarise: .nii/.nii.gz, .mat, .npz or .json.
    pub file: PathBuf,
}

pub fn run(a: InspectArgs, out: &Output) -> Result<()> {
    let r = b1sar::inspect::inspect(&a.file)?;
    for l in &r.lines {
        out.line(l);
    }
    out.result(serde_json::to_value(&r)?);
    Ok(())
}
