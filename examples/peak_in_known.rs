//! Where is the SAR peak, and does the network see B1+ there? For every sample of a dataset's
//! shards: the pixel of the exact SAR10g peak on the centre slice, and whether the input's Re/Im of
//! that pixel are known (non-zero: inside the DREAM range of the drive itself, or of a calibration
//! drive for inputs synthesised from one acquisition). Reported per kind of drive (issue 27: the
//! per-drive DREAM measurement hides the peak of optimised shims).
//!
//! ```sh
//! cargo run --release --example peak_in_known -- DATASET_DIR
//! ```

use b1sar::dataset::{DriveKind, load_shard};
use std::collections::BTreeMap;
use std::path::PathBuf;

fn main() -> anyhow::Result<()> {
    let dir: PathBuf = std::env::args()
        .nth(1)
        .ok_or_else(|| anyhow::anyhow!("usage: peak_in_known DATASET_DIR"))?
        .into();
    let mut subjects: Vec<PathBuf> = std::fs::read_dir(&dir)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.join("manifest.json").is_file())
        .collect();
    subjects.sort();
    if subjects.is_empty() {
        anyhow::bail!("{}: no subject_KKK/ shards", dir.display());
    }
    // kind -> (peaks seen, peaks known)
    let mut count: BTreeMap<DriveKind, (usize, usize)> = BTreeMap::new();
    for s in &subjects {
        let shard = load_shard(s)?;
        let cfg = &shard.manifest.config;
        let per = cfg.input.channels_per_slice();
        let centre = cfg.n_stack / 2;
        for (x, y, info) in [
            (&shard.x_train, &shard.y_train, &shard.train),
            (&shard.x_val, &shard.y_val, &shard.val),
        ] {
            for (i, inf) in info.iter().enumerate() {
                let t = y.index_axis(ndarray::Axis(0), i);
                let (mut best, mut at) = (f32::NEG_INFINITY, (0, 0));
                for ((_, r, c), v) in t.indexed_iter() {
                    if *v > best {
                        best = *v;
                        at = (r, c);
                    }
                }
                let re = x[[i, per * centre, at.0, at.1]];
                let im = x[[i, per * centre + 1, at.0, at.1]];
                let e = count.entry(inf.kind).or_insert((0, 0));
                e.0 += 1;
                e.1 += usize::from(re != 0.0 || im != 0.0);
            }
        }
    }
    println!(
        "{}: {} subjects, input model {:?}",
        dir.display(),
        subjects.len(),
        load_shard(&subjects[0])?.manifest.config.input_model
    );
    for (k, (n, known)) in &count {
        println!(
            "{:17} {:5} samples: peak pixel known in {:5.1} %",
            k.name(),
            n,
            100.0 * *known as f64 / (*n).max(1) as f64
        );
    }
    Ok(())
}
