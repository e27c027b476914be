//! What every subcommand shares: the output contract (human lines or one JSON object), progress
//! bars and spinners on stderr, and loading a field set behind a spinner.

use anyhow::Result;
use b1sar::FieldSet;
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::Value;
use std::path::Path;
use std::time::Duration;

/// Where results go: one JSON object on stdout with `--json`, human lines otherwise.
pub struct Output {
    pub json: bool,
}

impl Output {
    /// A human line (stdout without `--json`, stderr with it so stdout stays one JSON object).
    pub fn line(&self, s: impl AsRef<str>) {
        if self.json {
            eprintln!("{}", s.as_ref());
        } else {
            println!("{}", s.as_ref());
        }
    }

    /// The final machine-readable result (printed only with `--json`).
    pub fn result(&self, v: Value) {
        if self.json {
            println!(
                "{}",
                serde_json::to_string(&v).expect("JSON values serialise")
            );
        }
    }
}

/// A command's `--json` object: the library report `T`, the files written and the wall time.
#[derive(serde::Serialize)]
struct Done<'a, T: serde::Serialize> {
    #[serde(flatten)]
    report: &'a T,
    output_paths: &'a [std::path::PathBuf],
    #[serde(skip_serializing_if = "Option::is_none")]
    elapsed_s: Option<f64>,
}

/// A report with nothing to add to the files written (`export`, `pulse-export-seq`).
#[derive(serde::Serialize)]
pub struct NoReport {}

impl Output {
    /// The final result of a command: the library report `r` with the files it wrote
    /// (`output_paths`) and, when given, the wall time `elapsed_s` (printed only with `--json`).
    pub fn done<T: serde::Serialize>(
        &self,
        r: &T,
        output_paths: &[std::path::PathBuf],
        elapsed_s: Option<f64>,
    ) -> anyhow::Result<()> {
        self.result(serde_json::to_value(Done {
            report: r,
            output_paths,
            elapsed_s,
        })?);
        Ok(())
    }
}

impl Output {
    /// The final result of a command that wrote files: the library report `r` with its
    /// `outputs` (printed only with `--json`), less the keys in `drop` (kept in the report file).
    pub fn report_with_outputs<T: serde::Serialize>(
        &self,
        r: &T,
        outputs: &[std::path::PathBuf],
        drop: &[&str],
    ) -> anyhow::Result<()> {
        let mut v = serde_json::to_value(r)?;
        if let Some(o) = v.as_object_mut() {
            o.insert("outputs".into(), serde_json::to_value(outputs)?);
            for k in drop {
                o.remove(*k);
            }
        }
        self.result(v);
        Ok(())
    }
}

/// The library's progress callback ([`b1sar::optim::Progress`]) as indicatif spinners and bars.
pub fn progress() -> impl Fn(b1sar::optim::Progress<'_>) {
    let current = std::cell::RefCell::new(None::<ProgressBar>);
    move |p| match p {
        b1sar::optim::Progress::Start(msg, len) => {
            *current.borrow_mut() = Some(match len {
                Some(n) => bar(n, msg),
                None => spinner(msg),
            })
        }
        b1sar::optim::Progress::Step(k) => {
            if let Some(pb) = &*current.borrow() {
                pb.set_position(k)
            }
        }
        b1sar::optim::Progress::Finish => {
            if let Some(pb) = current.borrow_mut().take() {
                pb.finish_and_clear()
            }
        }
    }
}

/// A result that was computed and printed in full, but whose bound exceeds a safety limit. The
/// binary exits with [`EXIT_LIMIT_EXCEEDED`] so scripts can gate on it; the message names the limit.
#[derive(Debug)]
pub struct LimitExceeded(pub String);

/// Exit status of a result over a safety limit (0 success, 1 runtime failure, 2 bad input).
pub const EXIT_LIMIT_EXCEEDED: u8 = 3;

impl std::fmt::Display for LimitExceeded {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.0)
    }
}

impl std::error::Error for LimitExceeded {}

/// The input files given among optional flags, for the output-path checks
/// ([`b1sar::io::check_output_path`]): an output may not be one of them.
pub fn given<'a>(paths: &[Option<&'a std::path::PathBuf>]) -> Vec<&'a Path> {
    paths.iter().flatten().map(|p| p.as_path()).collect()
}

/// A spinner on stderr for a step of unknown length.
pub fn spinner(msg: &str) -> ProgressBar {
    let pb = ProgressBar::new_spinner();
    pb.set_style(
        ProgressStyle::with_template("{spinner} {msg} [{elapsed_precise}]")
            .expect("valid template"),
    );
    pb.set_message(msg.to_string());
    pb.enable_steady_tick(Duration::from_millis(120));
    pb
}

/// A progress bar on stderr with `len` steps.
pub fn bar(len: u64, msg: &str) -> ProgressBar {
    let pb = ProgressBar::new(len);
    pb.set_style(
        ProgressStyle::with_template(
            "{msg:24} [{bar:30}] {pos}/{len} [{elapsed_precise} < {eta_precise}]",
        )
        .expect("valid template")
        .progress_chars("=> "),
    );
    pb.set_message(msg.to_string());
    pb
}

/// Load a field set behind a spinner.
pub fn load_fields(path: &Path) -> Result<FieldSet> {
    let pb = spinner(&format!("loading {}", path.display()));
    let f = FieldSet::load(path);
    pb.finish_and_clear();
    Ok(f?)
}
