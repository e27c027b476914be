//! Integration tests of the SAR cGAN (`b1sar::net`): shapes, input errors, seeding, save/load,
//! resumable training and a small learning problem. Sizes are tiny (base 8, depth 3, 16-32 px) so
//! the file runs in well under a minute in release mode on two cores.
//!
//! burn's CPU backend has one random generator per process and tests run in parallel threads:
//! every network here is built through `init_seeded` (which draws all weights under a lock), so
//! no test's draws land inside another test's seeded initialisation.

use std::f32::consts::TAU;

use b1sar::Error;
use b1sar::net::{
    Device, DiscriminatorConfig, Generator, GeneratorConfig, LossConfig, StepLosses, Trainer,
    TrainerConfig, cpu_device, init_seeded, input_tensor, load_generator, loss, predict,
    save_generator,
};
use burn::module::Module;
use burn::tensor::{Tensor, TensorData};

/// Deterministic uniform numbers in [0, 1) (SplitMix64), independent of burn's global generator.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> f32 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        (z >> 40) as f32 / (1u64 << 24) as f32
    }

    fn vec(&mut self, n: usize) -> Vec<f32> {
        (0..n).map(|_| self.next()).collect()
    }
}

/// The tiny generator of these tests: base 8, depth 3, no dropout (so training is repeatable).
fn tiny_generator() -> GeneratorConfig {
    GeneratorConfig::new()
        .with_base(8)
        .with_depth(3)
        .with_dropout(0.0)
}

fn tiny_trainer(seed: u64) -> TrainerConfig {
    TrainerConfig::new()
        .with_generator(tiny_generator())
        .with_discriminator(DiscriminatorConfig::new().with_base(8).with_layers(2))
        .with_seed(seed)
}

fn to_vec(t: Tensor<4>) -> Vec<f32> {
    t.into_data().try_into_vec::<f32>().unwrap()
}

fn tensor(data: &[f32], dims: [usize; 4], device: &Device) -> Tensor<4> {
    Tensor::from_data(TensorData::new(data.to_vec(), dims), device)
}

fn scalar(t: Tensor<1>) -> f64 {
    f64::from(t.into_scalar::<f32>())
}

fn assert_invalid(result: Result<impl std::fmt::Debug, Error>, needle: &str) {
    match result {
        Err(e @ Error::Invalid { .. }) => {
            let msg = e.to_string();
            assert!(msg.contains(needle), "message `{msg}` lacks `{needle}`");
        }
        other => panic!("expected an Invalid error mentioning `{needle}`, got {other:?}"),
    }
}

#[test]
fn output_shapes_for_several_configs() {
    let device = cpu_device();
    let mut rng = Rng(1);
    let cases = [
        (tiny_generator(), [2, 15, 32, 32]),
        (
            GeneratorConfig::new().with_base(4).with_depth(4),
            [1, 15, 32, 48],
        ),
        (
            GeneratorConfig::new().with_base(8).with_depth(1),
            [3, 15, 8, 8],
        ),
        (
            GeneratorConfig::new()
                .with_base(4)
                .with_depth(2)
                .with_in_channels(6)
                .with_out_channels(2),
            [1, 6, 12, 4],
        ),
    ];
    for (cfg, [n, c, h, w]) in cases {
        let g = init_seeded(&device, 1, |d| cfg.init(d));
        let x = tensor(&rng.vec(n * c * h * w), [n, c, h, w], &device);
        let y = g.try_forward(x).unwrap();
        assert_eq!(y.dims(), [n, cfg.out_channels, h, w], "{cfg:?}");
        let v = to_vec(y);
        assert!(v.iter().all(|&s| s.is_finite() && s >= 0.0), "{cfg:?}");
    }

    let cases = [
        (
            DiscriminatorConfig::new().with_base(8),
            [2, 15, 32, 32],
            [2, 2],
        ),
        (
            DiscriminatorConfig::new().with_base(8).with_layers(2),
            [1, 15, 32, 48],
            [6, 10],
        ),
    ];
    for (cfg, [n, c, h, w], [ph, pw]) in cases {
        let d = init_seeded(&device, 2, |dev| cfg.init(dev));
        let x = tensor(&rng.vec(n * c * h * w), [n, c, h, w], &device);
        let y = tensor(&rng.vec(n * h * w), [n, 1, h, w], &device);
        let logits = d.try_forward(x, y).unwrap();
        assert_eq!(logits.dims(), [n, 1, ph, pw], "{cfg:?}");
    }
}

#[test]
fn paper_sizes_come_from_the_same_code() {
    // Counting does not draw the weights (burn initialises lazily).
    let small = GeneratorConfig::small().init(&cpu_device()).num_params();
    let notes = GeneratorConfig::new().init(&cpu_device()).num_params();
    let paper = GeneratorConfig::paper().init(&cpu_device()).num_params();
    assert!(small < notes && notes < paper, "{small} {notes} {paper}");
    // pix2pix unet_256 with 15 inputs and 1 output has about 54 M parameters.
    assert!((50_000_000..58_000_000).contains(&paper), "{paper}");
}

#[test]
fn bad_inputs_are_errors_not_panics() {
    let device = cpu_device();
    let g = init_seeded(&device, 1, |d| tiny_generator().init(d));
    // 36 is not a multiple of 2^3.
    let x = Tensor::<4>::zeros([1, 15, 36, 32], &device);
    assert_invalid(g.try_forward(x), "2^depth = 8");
    let x = Tensor::<4>::zeros([1, 14, 32, 32], &device);
    assert_invalid(g.try_forward(x), "generator input");

    let x = vec![0.5f32; 15 * 32 * 32];
    assert_invalid(predict(&g, &x, 1, 32, 20, &device), "2^depth");
    assert_invalid(predict(&g, &x[1..], 1, 32, 32, &device), "values");
    let mut bad = x.clone();
    bad[100] = f32::NAN;
    assert_invalid(predict(&g, &bad, 1, 32, 32, &device), "flat index 100");
    assert_invalid(
        input_tensor("target", &bad, [1, 15, 32, 32], &device),
        "target",
    );

    let d = init_seeded(&device, 2, |dev| {
        DiscriminatorConfig::new().with_base(8).init(dev)
    });
    let x = Tensor::<4>::zeros([1, 15, 16, 16], &device);
    let y = Tensor::<4>::zeros([1, 1, 16, 16], &device);
    assert_invalid(d.try_forward(x.clone(), y), "3 * 2^layers");
    let y = Tensor::<4>::zeros([1, 1, 16, 8], &device);
    assert_invalid(d.try_forward(x, y), "discriminator target");

    let bad = tiny_trainer(1).with_discriminator(DiscriminatorConfig::new().with_in_channels(15));
    assert_invalid(Trainer::new(bad, &device).map(|_| ()), "in + out channels");
}

#[test]
fn same_seed_gives_identical_outputs() {
    let device = cpu_device();
    let x = Rng(2).vec(2 * 15 * 16 * 16);
    let run = |seed| {
        let g = init_seeded(&device, seed, |d| tiny_generator().init(d));
        predict(&g, &x, 2, 16, 16, &device).unwrap()
    };
    let a = run(7);
    let b = run(7);
    let c = run(8);
    assert!(a.iter().zip(&b).all(|(p, q)| p.to_bits() == q.to_bits()));
    assert!(a.iter().zip(&c).any(|(p, q)| p != q));
}

#[test]
fn save_load_round_trip_is_bit_identical() {
    let device = cpu_device();
    let dir = tempfile::tempdir().unwrap();
    let model = dir.path().join("model");
    let g = init_seeded(&device, 3, |d| tiny_generator().with_dropout(0.5).init(d));
    save_generator(&g, &model).unwrap();
    let loaded = load_generator(&model, &device).unwrap();
    assert_eq!(loaded.config().dropout, 0.5);

    let x = Rng(3).vec(2 * 15 * 32 * 32);
    let a = predict(&g, &x, 2, 32, 32, &device).unwrap();
    let b = predict(&loaded, &x, 2, 32, 32, &device).unwrap();
    assert!(a.iter().zip(&b).all(|(p, q)| p.to_bits() == q.to_bits()));
    // Plain burnpack: burn's own reader takes the file too.
    let via_burn = tiny_generator()
        .init(&device)
        .load_file(model.join("generator.bpk"));
    let c = predict(&via_burn, &x, 2, 32, 32, &device).unwrap();
    assert!(a.iter().zip(&c).all(|(p, q)| p.to_bits() == q.to_bits()));

    // Only the two final files: the temporary ones were renamed.
    let mut names: Vec<String> = std::fs::read_dir(&model)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    assert_eq!(names, ["generator.bpk", "generator.json"]);
}

#[test]
fn loading_errors_name_the_file() {
    let device = cpu_device();
    let dir = tempfile::tempdir().unwrap();
    let missing = load_generator(&dir.path().join("nowhere"), &device).unwrap_err();
    assert!(matches!(missing, Error::Io { .. }), "{missing:?}");

    // Weights of a base-8 network under a base-4 configuration.
    let g = init_seeded(&device, 1, |d| tiny_generator().init(d));
    save_generator(&g, dir.path()).unwrap();
    let config = dir.path().join("generator.json");
    let text = std::fs::read_to_string(&config).unwrap();
    std::fs::write(&config, text.replace("\"base\": 8", "\"base\": 4")).unwrap();
    let err = load_generator(dir.path(), &device).unwrap_err();
    assert!(
        matches!(&err, Error::Format { path, .. } if path.ends_with("generator.bpk")),
        "{err:?}"
    );

    std::fs::write(dir.path().join("generator.bpk"), b"not burnpack").unwrap();
    std::fs::write(&config, text).unwrap();
    let err = load_generator(dir.path(), &device).unwrap_err();
    assert!(matches!(err, Error::Format { .. }), "{err:?}");
}

/// A fixed batch: B1+-like smooth fields on 5 slices and a SAR-like target |B1+|^2 on the centre.
fn synthetic_batch(rng: &mut Rng, n: usize, h: usize, w: usize) -> (Vec<f32>, Vec<f32>) {
    let mut x = vec![0.0f32; n * 15 * h * w];
    let mut y = vec![0.0f32; n * h * w];
    for s in 0..n {
        // A few low spatial frequencies per component, drifting slowly from slice to slice.
        let modes: Vec<[f32; 5]> = (0..6)
            .map(|_| {
                let r = rng.vec(5);
                [
                    (r[0] - 0.5) * 0.5,
                    r[1] * 2.0,
                    r[2] * 2.0,
                    r[3] * TAU,
                    (r[4] - 0.5) * 0.1,
                ]
            })
            .collect();
        for slice in 0..5 {
            let dz = slice as f32 - 2.0;
            for i in 0..h {
                for j in 0..w {
                    let (u, v) = (i as f32 / h as f32, j as f32 / w as f32);
                    let field = |part: usize| {
                        modes[3 * part..3 * part + 3]
                            .iter()
                            .map(|m| {
                                (m[0] + m[4] * dz) * (TAU * (m[1] * u + m[2] * v) + m[3]).cos()
                            })
                            .sum::<f32>()
                            + if part == 0 { 0.8 } else { 0.0 }
                    };
                    let (re, im) = (field(0), field(1));
                    let magnitude = (re * re + im * im).sqrt();
                    let mask = if (0.25..=1.75).contains(&magnitude) {
                        1.0
                    } else {
                        0.0
                    };
                    let base = ((s * 15 + slice * 3) * h + i) * w + j;
                    x[base] = re * mask;
                    x[base + h * w] = im * mask;
                    x[base + 2 * h * w] = mask;
                    if slice == 2 {
                        y[(s * h + i) * w + j] = magnitude * magnitude;
                    }
                }
            }
        }
    }
    (x, y)
}

fn nrmse(pred: &[f32], target: &[f32]) -> f64 {
    let err: f64 = pred
        .iter()
        .zip(target)
        .map(|(p, t)| f64::from(p - t).powi(2))
        .sum();
    let norm: f64 = target.iter().map(|t| f64::from(*t).powi(2)).sum();
    (err / norm).sqrt()
}

fn wl1(g: &Generator, x: &[f32], y: &[f32], dims: [usize; 4]) -> f64 {
    let device = cpu_device();
    let [n, _, h, w] = dims;
    let pred = predict(g, x, n, h, w, &device).unwrap();
    scalar(loss::weighted_l1(
        tensor(&pred, [n, 1, h, w], &device),
        tensor(y, [n, 1, h, w], &device),
    ))
}

#[test]
fn a_few_steps_reduce_the_generators_wl1() {
    const STEPS: usize = 10;
    let (n, h, w) = (4, 16, 16);
    let (x, y) = synthetic_batch(&mut Rng(4), n, h, w);
    let mut trainer = Trainer::new(tiny_trainer(4), &cpu_device()).unwrap();
    let before = wl1(trainer.generator(), &x, &y, [n, 15, h, w]);
    let dev = trainer.device().clone();
    for _ in 0..STEPS {
        let xs = tensor(&x, [n, 15, h, w], &dev);
        let ys = tensor(&y, [n, 1, h, w], &dev);
        let l = trainer.step(xs, ys).unwrap();
        assert!(l.d > 0.0 && l.g_gan > 0.0 && l.g_wl1 > 0.0, "{l:?}");
    }
    let after = wl1(trainer.generator(), &x, &y, [n, 15, h, w]);
    eprintln!("WL1 {before} -> {after} in {STEPS} steps");
    assert!(after < 0.97 * before, "WL1 {before} -> {after}");
    assert_eq!(trainer.steps(), STEPS as u64);
}

#[test]
fn a_step_updates_both_networks() {
    let (n, h, w) = (2, 16, 16);
    let (x, y) = synthetic_batch(&mut Rng(7), n, h, w);
    let mut trainer = Trainer::new(tiny_trainer(7), &cpu_device()).unwrap();
    let dev = trainer.device().clone();
    let xs = tensor(&x, [n, 15, h, w], &dev);
    let ys = tensor(&y, [n, 1, h, w], &dev);
    let d_out = |t: &Trainer| to_vec(t.discriminator().valid().forward(xs.clone(), ys.clone()));
    let g_out = |t: &Trainer| predict(t.generator(), &x, n, h, w, &cpu_device()).unwrap();
    let (mut d_before, mut g_before) = (d_out(&trainer), g_out(&trainer));
    // Twice: the first step must leave D trainable (G's pass uses a frozen copy of it).
    for step in 0..2 {
        trainer.step(xs.clone(), ys.clone()).unwrap();
        let (d_after, g_after) = (d_out(&trainer), g_out(&trainer));
        assert_ne!(d_before, d_after, "D unchanged by step {step}");
        assert_ne!(g_before, g_after, "G unchanged by step {step}");
        (d_before, g_before) = (d_after, g_after);
    }
}

#[test]
fn a_resumed_checkpoint_continues_the_run_exactly() {
    let (n, h, w) = (2, 16, 16);
    let (x, y) = synthetic_batch(&mut Rng(5), n, h, w);
    let mut trainer = Trainer::new(tiny_trainer(5), &cpu_device()).unwrap();
    let batch = |t: &Trainer| {
        (
            tensor(&x, [n, 15, h, w], t.device()),
            tensor(&y, [n, 1, h, w], t.device()),
        )
    };
    for _ in 0..2 {
        let (xs, ys) = batch(&trainer);
        trainer.step(xs, ys).unwrap();
    }
    trainer.set_learning_rate(1e-4).unwrap();
    let dir = tempfile::tempdir().unwrap();
    trainer.save_checkpoint(dir.path()).unwrap();
    let mut resumed = Trainer::load_checkpoint(dir.path(), &cpu_device()).unwrap();
    assert_eq!(resumed.steps(), 2);
    assert_eq!(resumed.learning_rate(), 1e-4);

    let next = |t: &mut Trainer| -> StepLosses {
        let (xs, ys) = batch(t);
        t.step(xs, ys).unwrap()
    };
    // Two more steps: the second one also depends on the optimiser moments restored.
    for _ in 0..2 {
        assert_eq!(next(&mut trainer), next(&mut resumed));
    }
    let a = predict(trainer.generator(), &x, n, h, w, &cpu_device()).unwrap();
    let b = predict(resumed.generator(), &x, n, h, w, &cpu_device()).unwrap();
    assert!(a.iter().zip(&b).all(|(p, q)| p.to_bits() == q.to_bits()));

    // The checkpoint directory is also a model directory.
    load_generator(dir.path(), &cpu_device()).unwrap();
}

#[test]
fn learns_a_synthetic_sar_like_map() {
    const STEPS: usize = 1000;
    let (h, w) = (16, 16);
    let (n_train, n_test, batch) = (64, 16, 8);
    let mut rng = Rng(6);
    let (x_train, y_train) = synthetic_batch(&mut rng, n_train, h, w);
    let (x_test, y_test) = synthetic_batch(&mut rng, n_test, h, w);

    let config = tiny_trainer(6).with_learning_rate(1e-3);
    let mut trainer = Trainer::new(config, &cpu_device()).unwrap();
    let dev = trainer.device().clone();
    let (xs, ys) = (h * w * 15, h * w);
    for step in 0..STEPS {
        let k = step % (n_train / batch);
        let xb = &x_train[k * batch * xs..(k + 1) * batch * xs];
        let yb = &y_train[k * batch * ys..(k + 1) * batch * ys];
        trainer
            .step(
                tensor(xb, [batch, 15, h, w], &dev),
                tensor(yb, [batch, 1, h, w], &dev),
            )
            .unwrap();
    }

    // Trivial predictor: the mean training target map.
    let mut mean_map = vec![0.0f32; ys];
    for sample in y_train.chunks(ys) {
        for (m, v) in mean_map.iter_mut().zip(sample) {
            *m += v / n_train as f32;
        }
    }
    let trivial: Vec<f32> = (0..n_test).flat_map(|_| mean_map.iter().copied()).collect();
    let pred = predict(trainer.generator(), &x_test, n_test, h, w, &cpu_device()).unwrap();
    let (e_net, e_trivial) = (nrmse(&pred, &y_test), nrmse(&trivial, &y_test));
    eprintln!("NRMSE network {e_net:.3}, mean map {e_trivial:.3}");
    // Measured here: 0.10 against 0.37; the network must cut the mean map's error by 60 % at least.
    assert!(
        e_net < 0.4 * e_trivial,
        "network {e_net}, mean map {e_trivial}"
    );
}

#[test]
fn loss_config_defaults_are_the_papers() {
    let cfg = LossConfig::new();
    assert_eq!((cfg.lambda_wl1, cfg.lambda_peak), (1000.0, 0.1));
    let cfg = TrainerConfig::new();
    assert_eq!(
        (cfg.learning_rate, cfg.beta_1, cfg.beta_2),
        (2e-4, 0.5, 0.999)
    );
}

/// Timings for the report (not a test of speed): `cargo test --release --test net -- --ignored
/// --nocapture timing`.
#[test]
#[ignore]
fn timing() {
    use std::time::Instant;
    let device = cpu_device();
    let g = init_seeded(&device, 1, |d| GeneratorConfig::new().init(d));
    println!("generator base 32 depth 4: {} parameters", g.num_params());
    let paper = GeneratorConfig::paper().init(&device).num_params();
    println!("generator base 64 depth 8 (paper): {paper} parameters");
    let g_valid = g.valid();
    for n in [1usize, 8, 32] {
        let x = Rng(9).vec(n * 15 * 128 * 128);
        predict(&g_valid, &x, n, 128, 128, &device).unwrap();
        let reps = (32 / n).max(2);
        let t = Instant::now();
        for _ in 0..reps {
            let input = tensor(&x, [n, 15, 128, 128], &device);
            let _ = to_vec(g_valid.forward(input));
        }
        let per = t.elapsed().as_secs_f64() * 1e3 / (reps * n) as f64;
        println!("forward 128x128 batch {n}: {per:.2} ms/sample");
    }

    let config = TrainerConfig::new();
    let mut trainer = Trainer::new(config, &device).unwrap();
    println!(
        "discriminator: {} parameters",
        trainer.discriminator().num_params()
    );
    for n in [1usize, 8] {
        let (x, y) = synthetic_batch(&mut Rng(10), n, 128, 128);
        let dev = trainer.device().clone();
        let run = |t: &mut Trainer| {
            t.step(
                tensor(&x, [n, 15, 128, 128], &dev),
                tensor(&y, [n, 1, 128, 128], &dev),
            )
            .unwrap()
        };
        run(&mut trainer);
        let reps = 5;
        let t = Instant::now();
        for _ in 0..reps {
            run(&mut trainer);
        }
        let per = t.elapsed().as_secs_f64() * 1e3 / reps as f64;
        println!("G + D training step 128x128 batch {n}: {per:.0} ms");
    }
}
