//! README.md read as a new user would (issue 9): every command in it runs as written.
//!
//! - Fenced shell blocks (```sh, ```bash) are run with bash, block by block, in a temporary folder
//!   that holds the repository's `examples/` and `pulses/` (symbolic links) and
//!   `target/release/b1sar` (the binary under test); `b1sar ...` and `cargo run --release -- ...`
//!   call that binary, `/tmp/` is mapped into the temporary folder, and every non-heavy command must
//!   exit 0.
//! - Heavy commands (minutes to hours: demo, population simulation, training, cross-validation) are
//!   marked in README with `# heavy` at the end of the line or a block fenced ```sh heavy. They are
//!   not run; their subcommand must exist and every `--flag` they use must be one clap accepts
//!   (found in the subcommand's --help, or accepted by the parser for hidden aliases).
//! - The same flag check covers every inline `b1sar ...` code span (the subcommand table, prose).
//! - `cargo run --release --example NAME -- ARGS` lines: `examples/NAME.rs` must exist and, when the
//!   example's binary is at least as new as its source (cargo test builds the examples first), its
//!   clap parser must accept ARGS (run with ARGS followed by --help). Other cargo commands (`cargo
//!   test`) are not run.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_b1sar");

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// A fenced code block: its info string, the line of its opening fence (1-based) and its lines.
struct Block {
    info: String,
    line: usize,
    lines: Vec<String>,
}

fn fenced_blocks(md: &str) -> Vec<Block> {
    let mut out = Vec::new();
    let mut cur: Option<Block> = None;
    for (i, l) in md.lines().enumerate() {
        let t = l.trim_start();
        if let Some(rest) = t.strip_prefix("```") {
            match cur.take() {
                Some(b) => out.push(b),
                None => {
                    cur = Some(Block {
                        info: rest.trim().to_string(),
                        line: i + 1,
                        lines: Vec::new(),
                    })
                }
            }
        } else if let Some(b) = cur.as_mut() {
            b.lines.push(l.to_string());
        }
    }
    assert!(cur.is_none(), "README.md: an unclosed code fence");
    out
}

fn is_shell(b: &Block) -> bool {
    matches!(
        b.info.split_whitespace().next(),
        Some("sh" | "bash" | "shell")
    )
}

fn heavy_block(b: &Block) -> bool {
    b.info.split_whitespace().any(|w| w == "heavy")
}

fn heavy_line(l: &str) -> bool {
    l.contains("# heavy")
}

/// Inline code spans (`...`) outside fenced blocks, with their line numbers.
fn inline_spans(md: &str) -> Vec<(usize, String)> {
    let mut out = Vec::new();
    let mut in_fence = false;
    for (i, l) in md.lines().enumerate() {
        if l.trim_start().starts_with("```") {
            in_fence = !in_fence;
            continue;
        }
        if in_fence {
            continue;
        }
        let parts: Vec<&str> = l.split('`').collect();
        for (k, p) in parts.iter().enumerate() {
            if k % 2 == 1 && k + 1 < parts.len() {
                out.push((i + 1, p.to_string()));
            }
        }
    }
    out
}

/// One `b1sar` invocation found in text: subcommand, optional second word, `--flags`.
#[derive(Debug)]
struct Invocation {
    sub: String,
    word: Option<String>,
    flags: Vec<String>,
    text: String,
}

/// Every `b1sar SUB ...` in `text` (with `cargo run --release --` and the binary path already
/// rewritten to `b1sar`). Arguments end at a quote, `;`, `&`, `#`, `)` or ` | `.
fn invocations(text: &str) -> Vec<Invocation> {
    let mut out = Vec::new();
    let bytes = text.as_bytes();
    let mut from = 0;
    while let Some(p) = text[from..].find("b1sar ") {
        let start = from + p;
        from = start + 6;
        let prev = start.checked_sub(1).map(|i| bytes[i] as char);
        if matches!(prev, Some(c) if c.is_ascii_alphanumeric() || "-_:.".contains(c)) {
            continue;
        }
        let rest = &text[start + 6..];
        let mut end = rest
            .find(['\'', '"', ';', '&', '#', ')', '\n'])
            .unwrap_or(rest.len());
        if let Some(q) = rest[..end].find(" | ") {
            end = q;
        }
        let args = &rest[..end];
        let mut toks = args.split_whitespace();
        let Some(sub) = toks.next() else { continue };
        if !sub
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        {
            continue;
        }
        let toks: Vec<&str> = toks.collect();
        let word = toks
            .first()
            .filter(|t| t.starts_with(|c: char| c.is_ascii_lowercase()))
            .map(|t| {
                t.split(['\\', '|'])
                    .next()
                    .expect("split yields at least one part")
                    .to_string()
            });
        let flags = toks
            .iter()
            .filter_map(|t| {
                let t = t.trim_start_matches(['[', '(']);
                let name: String = t
                    .strip_prefix("--")?
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '-')
                    .collect();
                (!name.is_empty()).then(|| format!("--{name}"))
            })
            .collect();
        out.push(Invocation {
            sub: sub.to_string(),
            word,
            flags,
            text: format!("b1sar {}", args.trim()),
        });
    }
    out
}

/// `cargo run --release -- ARGS` and the binary's path call the same program as `b1sar ARGS`;
/// `$b` when the block set `b=` to the binary.
fn normalise(line: &str, b_is_binary: bool) -> String {
    let mut l = line
        .replace("cargo run --release -- ", "b1sar ")
        .replace("./target/release/b1sar ", "b1sar ");
    if b_is_binary {
        l = l.replace("$b ", "b1sar ");
    }
    l
}

fn run(args: &[&str]) -> (bool, String, String) {
    let o = Command::new(BIN)
        .args(args)
        .current_dir(repo())
        .output()
        .expect("the b1sar binary runs");
    (
        o.status.success(),
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

/// Checks subcommands and flags with clap, caching each subcommand's help text.
struct FlagChecker {
    subcommands: BTreeSet<String>,
    help: std::collections::HashMap<(String, Option<String>), String>,
}

impl FlagChecker {
    fn new() -> Self {
        let (ok, help, err) = run(&["--help"]);
        assert!(ok, "b1sar --help failed: {err}");
        let mut subcommands = BTreeSet::new();
        let mut in_commands = false;
        for l in help.lines() {
            if l.starts_with("Commands:") {
                in_commands = true;
            } else if in_commands && l.starts_with("  ") {
                if let Some(w) = l.split_whitespace().next() {
                    subcommands.insert(w.to_string());
                }
            } else if in_commands && !l.trim().is_empty() {
                in_commands = false;
            }
        }
        assert!(
            subcommands.contains("sar"),
            "no subcommands in b1sar --help"
        );
        FlagChecker {
            subcommands,
            help: Default::default(),
        }
    }

    fn help_of(&mut self, sub: &str, word: Option<&str>) -> String {
        let key = (sub.to_string(), word.map(str::to_string));
        if let Some(h) = self.help.get(&key) {
            return h.clone();
        }
        let mut text = run(&[sub, "--help"]).1;
        if let Some(w) = word {
            let (ok, h, _) = run(&[sub, w, "--help"]);
            if ok {
                text.push_str(&h);
            }
        }
        self.help.insert(key, text.clone());
        text
    }

    /// Problems with one invocation (empty when clap accepts its subcommand and flags).
    fn check(&mut self, inv: &Invocation) -> Vec<String> {
        if !self.subcommands.contains(&inv.sub) {
            return vec![format!(
                "`{}`: no subcommand `{}` (b1sar --help lists {:?})",
                inv.text, inv.sub, self.subcommands
            )];
        }
        let help = self.help_of(&inv.sub, inv.word.as_deref());
        let mut problems = Vec::new();
        for f in &inv.flags {
            if f == "--help" || f == "--json" || in_help(&help, f) {
                continue;
            }
            // Not in --help (a hidden alias?): ask the parser, with an unknown flag after it so
            // that nothing can run.
            let mut args = vec![inv.sub.as_str()];
            if let Some(w) = &inv.word {
                args.push(w);
            }
            let probe = format!("{f}=0");
            args.push(&probe);
            args.push("--readme-test-probe");
            let (_, _, err) = run(&args);
            if err.contains(&format!("unexpected argument '{f}")) || !err.contains("error") {
                problems.push(format!(
                    "`{}`: `b1sar {}` does not accept {f}",
                    inv.text, inv.sub
                ));
            }
        }
        problems
    }
}

fn in_help(help: &str, flag: &str) -> bool {
    help.match_indices(flag).any(|(i, _)| {
        !help[i + flag.len()..]
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphanumeric() || c == '-')
    })
}

/// `cargo run [--release] [--features F] --example NAME [-- ARGS]`: NAME and ARGS.
fn example_of(line: &str) -> Option<(String, Vec<String>, bool)> {
    let l = line.split(" #").next().unwrap_or(line).trim();
    if !l.starts_with("cargo run") {
        return None;
    }
    let (head, args) = match l.split_once(" -- ") {
        Some((h, a)) => (h, a.split_whitespace().map(str::to_string).collect()),
        None => (l, Vec::new()),
    };
    let toks: Vec<&str> = head.split_whitespace().collect();
    let i = toks.iter().position(|t| *t == "--example")?;
    let name = toks.get(i + 1)?.to_string();
    Some((name, args, head.contains("--features")))
}

fn mtime(p: &Path) -> Option<std::time::SystemTime> {
    std::fs::metadata(p).and_then(|m| m.modified()).ok()
}

#[test]
fn readme_commands_run_as_written() {
    let md = std::fs::read_to_string(repo().join("README.md")).expect("README.md is readable");
    let mut checker = FlagChecker::new();
    let mut problems: Vec<String> = Vec::new();

    // Inline `b1sar ...` spans: subcommands and flags exist.
    for (line, span) in inline_spans(&md) {
        // Table cells escape `|` as `\|`: kept, so that ` | ` only ends a shell pipeline.
        let text = normalise(&span, false);
        for inv in invocations(&text) {
            for p in checker.check(&inv) {
                problems.push(format!("README.md:{line}: {p}"));
            }
        }
    }

    let tmp = tempfile::tempdir().expect("a temporary folder");
    let root = tmp.path();
    for d in ["examples", "pulses"] {
        std::os::unix::fs::symlink(repo().join(d), root.join(d)).expect("symlink the data");
    }
    std::fs::create_dir_all(root.join("target/release")).expect("target/release");
    std::os::unix::fs::symlink(BIN, root.join("target/release/b1sar")).expect("symlink b1sar");
    let examples_dir = Path::new(BIN)
        .parent()
        .expect("the binary lives in a folder")
        .join("examples");

    let mut ran = 0;
    let mut examples_named = 0;
    for b in fenced_blocks(&md).iter().filter(|b| is_shell(b)) {
        let b_is_binary = b.lines.iter().any(|l| {
            let l = l.trim();
            l.starts_with("b=") && l.ends_with("b1sar")
        });
        let heavy_all = heavy_block(b);
        let mut script = vec![
            "set -euo pipefail".to_string(),
            "trap 'echo \"README command failed (exit $?): $BASH_COMMAND\" >&2' ERR".into(),
            format!("b1sar() {{ '{BIN}' \"$@\"; }}"),
        ];
        let mut runnable = 0;
        // Continuation lines (indented, not a command of their own) belong to the command above.
        let mut joined: Vec<(usize, String)> = Vec::new();
        for (k, l) in b.lines.iter().enumerate() {
            let n = b.line + 1 + k;
            let t = l.trim_start();
            let continues =
                heavy_all && l.starts_with(' ') && t.starts_with(['[', '-']) && !joined.is_empty();
            if continues {
                let last = joined.last_mut().expect("checked non-empty");
                last.1.push(' ');
                last.1.push_str(t);
            } else {
                joined.push((n, l.clone()));
            }
        }
        for (n, l) in &joined {
            let t = l.trim();
            let where_ = format!("README.md:{n}");
            if let Some((name, args, features)) = example_of(t) {
                examples_named += 1;
                let src = repo().join("examples").join(format!("{name}.rs"));
                if !src.is_file() {
                    problems.push(format!("{where_}: `{t}`: no {}", src.display()));
                    continue;
                }
                let exe = examples_dir.join(&name);
                let fresh = matches!((mtime(&exe), mtime(&src)), (Some(e), Some(s)) if e >= s);
                if fresh && !features {
                    let o = Command::new(&exe)
                        .args(&args)
                        .arg("--help")
                        .current_dir(repo())
                        .output()
                        .expect("the example runs");
                    if !o.status.success() {
                        problems.push(format!(
                            "{where_}: `{t}`: the example does not accept these arguments: {}",
                            String::from_utf8_lossy(&o.stderr)
                        ));
                    }
                }
                script.push(": example".into());
                continue;
            }
            let norm = normalise(t, b_is_binary);
            for inv in invocations(&norm) {
                for p in checker.check(&inv) {
                    problems.push(format!("{where_}: {p}"));
                }
            }
            if heavy_all || heavy_line(t) {
                script.push(": heavy".into());
            } else if t.starts_with("cargo ") && !t.starts_with("cargo run --release -- ") {
                script.push(": cargo".into()); // cargo test, cargo build: CI's business
            } else if t.starts_with("pip install ") {
                // Installing the Python package: `.ci/run` does it in a fresh virtual environment
                // and runs its tests.
                script.push(": pip".into());
            } else {
                if !t.is_empty() && !t.starts_with('#') {
                    runnable += 1;
                }
                let root_s = root.display().to_string();
                script.push(norm.replace("/tmp/", &format!("{root_s}/")).replace(
                    "./target/release/b1sar",
                    &format!("{root_s}/target/release/b1sar"),
                ));
            }
        }
        if runnable == 0 {
            continue;
        }
        // A bound on each block, so that a command that should have been marked heavy fails
        // instead of hanging the suite.
        let o = Command::new("timeout")
            .args(["300", "bash", "-c"])
            .arg(script.join("\n"))
            .current_dir(root)
            .output()
            .expect("bash runs");
        ran += runnable;
        if !o.status.success() {
            let err = String::from_utf8_lossy(&o.stderr);
            let tail: Vec<&str> = err.lines().rev().take(15).collect();
            problems.push(format!(
                "README.md:{}: the block failed (exit {:?}):\n{}",
                b.line,
                o.status.code(),
                tail.into_iter().rev().collect::<Vec<_>>().join("\n")
            ));
        }
    }
    eprintln!(
        "README: {ran} commands run, {} subcommands' flags checked, {examples_named} example commands",
        checker.help.len()
    );
    assert!(
        ran >= 5,
        "only {ran} README commands ran: is the README parsed?"
    );
    assert!(
        examples_named >= 4,
        "README names {examples_named} `cargo run --example` commands; expected the 4 examples"
    );
    assert!(
        problems.is_empty(),
        "README commands that do not work as written:\n{}",
        problems.join("\n")
    );
}

#[test]
fn the_parser_finds_invocations_and_flags() {
    let inv = invocations("sbatch --wrap 'b1sar simulate --phantom s/ --subject $K --out f.npz'");
    assert_eq!(inv.len(), 1);
    assert_eq!(inv[0].sub, "simulate");
    assert_eq!(inv[0].flags, ["--phantom", "--subject", "--out"]);
    let inv = invocations("b1sar bench sar [--size 100] (--fields F \\| --q Q) | tee x # heavy");
    assert_eq!(inv[0].word.as_deref(), Some("sar"));
    assert_eq!(inv[0].flags, ["--size", "--fields", "--q"]);
    assert!(invocations("b1sar::pulse::generate and b1sar-demo/").is_empty());
    assert_eq!(
        normalise("cargo run --release -- demo --out x", false),
        "b1sar demo --out x"
    );
    assert!(in_help("  --out <OUT>", "--out") && !in_help("  --out-dir <D>", "--out"));
    let (name, args, features) =
        example_of("cargo run --release --example check_pulse_sar -- p.json --tr-ms 5  # x")
            .unwrap();
    assert_eq!((name.as_str(), features), ("check_pulse_sar", false));
    assert_eq!(args, ["p.json", "--tr-ms", "5"]);
    // Unknown flags are caught by the checker.
    let mut c = FlagChecker::new();
    let bad = &invocations("b1sar sar --no-such-flag 1")[0];
    assert_eq!(c.check(bad).len(), 1);
    assert!(
        c.check(&invocations("b1sar sar --q q.npz --z0-ohm 50")[0])
            .is_empty()
    );
}
