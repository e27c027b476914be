"""The Python bindings against the command line's --json on the shipped subject, and the error
classes of bad input. The CLI binary is target/release/b1sar (built by `cargo test --release`), or
$B1SAR_BIN."""

import json
import os
import subprocess
from pathlib import Path

import numpy as np
import pytest

import b1sar

ROOT = Path(__file__).resolve().parents[2]
SUBJECT = ROOT / "examples" / "data" / "subject_small.npz"
BIN = Path(os.environ.get("B1SAR_BIN", ROOT / "target" / "release" / "b1sar"))


def cli(*args):
    """Run the CLI with --json and return its object (it must succeed)."""
    out = subprocess.run([str(BIN), *map(str, args), "--json"], capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr
    return json.loads(out.stdout)


def rel(a, b):
    return abs(a - b) / max(abs(b), 1e-300)


@pytest.fixture(scope="module")
def f():
    return b1sar.FieldSet.load(SUBJECT)


@pytest.fixture(scope="module")
def drive(f):
    rng = np.random.default_rng(3)
    return rng.normal(size=f.n_channels) + 1j * rng.normal(size=f.n_channels)


def drive_json(s):
    return json.dumps({"re": [float(v) for v in s.real], "im": [float(v) for v in s.imag]})


@pytest.fixture(scope="module")
def q_file(f, tmp_path_factory):
    p = tmp_path_factory.mktemp("q") / "q.npz"
    cli("qmatrix", "--fields", SUBJECT, "--out", p)
    return p


def test_fieldset_arrays_and_units(f):
    nz, ny, nx = f.shape
    assert f.b1.shape == (f.n_channels, nz, ny, nx) and f.b1.dtype == np.complex128
    assert f.e.shape == (f.n_channels, 3, nz, ny, nx)
    assert f.sigma.shape == (nz, ny, nx) and f.rho.dtype == np.float64
    assert f.labels.dtype == np.uint8
    assert all(0.0 < d < 0.05 for d in f.spacing_m)
    # B1+ per sqrt(W) at 7 T is of order 0.1-1 uT: T/sqrt(W), not uT.
    assert 1e-8 < np.abs(f.b1).max() < 1e-4


def test_fieldset_from_arrays_round_trip(f, drive):
    g = b1sar.FieldSet(f.b1, f.sigma, f.rho, f.spacing_m, e=f.e, labels=f.labels)
    assert g.n_channels == f.n_channels and g.shape == f.shape
    assert b1sar.sar10g(g, drive)["psar10g_w_per_kg"] == b1sar.sar10g(f, drive)["psar10g_w_per_kg"]


def test_combine_is_eq1(f, drive):
    b = b1sar.combine(f, drive)
    ref = np.einsum("c,czyx->zyx", drive, f.b1)
    assert b.shape == f.shape
    assert np.max(np.abs(b - ref)) <= 1e-12 * np.max(np.abs(ref))


def test_sar10g_matches_cli(f, drive, tmp_path):
    r = b1sar.sar10g(f, drive)
    out = tmp_path / "map.npy"
    c = cli("sar", "--fields", SUBJECT, "--drive", drive_json(drive), "--out", out)
    assert set(r) - {"map"} == set(c)
    assert rel(r["psar10g_w_per_kg"], c["psar10g_w_per_kg"]) <= 1e-12
    assert rel(r["whole_body_sar_w_per_kg"], c["whole_body_sar_w_per_kg"]) <= 1e-12
    assert list(r["psar10g_index_zyx"]) == c["psar10g_index_zyx"]
    assert r["voxel_counts"] == c["voxel_counts"]
    # The CLI writes the map as float32: element for element after the same rounding.
    assert np.array_equal(r["map"].astype(np.float32), np.load(out))


def test_q10g_and_vops_match_cli(f, drive, q_file, tmp_path):
    q = b1sar.Q10g.from_fields(f)
    qc = b1sar.Q10g.load(q_file)
    assert len(q) == len(qc) and q.n_channels == 8
    S = np.stack([drive, 2.0 * drive[::-1], np.ones(8) + 0j])
    p = q.psar(S)
    assert p.shape == (3,)
    assert np.max(np.abs(p - qc.psar(S)) / p) <= 1e-12
    c = cli("sar", "--q", q_file, "--drive", drive_json(drive))
    assert rel(p[0], c["psar10g_w_per_kg"]) <= 1e-12
    assert rel(p[0], b1sar.sar10g(f, drive)["psar10g_w_per_kg"]) <= 1e-9
    # Quadratic in the drive.
    assert rel(q.psar(2.0 * S[:1])[0], 4.0 * p[0]) <= 1e-12
    v = b1sar.VopSet.compress(q, epsilon=0.05)
    vfile = tmp_path / "v.npz"
    vc = cli("vop", "--q", q_file, "--epsilon", "0.05", "--out", vfile)
    assert len(v) == vc["n_vops"] and v.method == vc["method"]
    bound = v.psar(S)
    assert np.all(bound >= p * (1 - 1e-12))
    cv = cli("sar", "--vop", vfile, "--drive", drive_json(drive))
    assert rel(bound[0], cv["psar10g_w_per_kg"]) <= 1e-12
    assert np.max(np.abs(b1sar.VopSet.load(vfile).psar(S) - bound) / bound) <= 1e-12
    saved = tmp_path / "q2.npz"
    q.save(saved)
    assert np.array_equal(b1sar.Q10g.load(saved).psar(S), p)


def test_bad_input_raises_documented_classes(f, drive, tmp_path):
    with pytest.raises(OSError):
        b1sar.FieldSet.load(tmp_path / "missing.npz")
    corrupt = tmp_path / "corrupt.npz"
    corrupt.write_bytes(b"PK\x03\x04 not a zip archive at all")
    with pytest.raises(ValueError):
        b1sar.FieldSet.load(corrupt)
    with pytest.raises(ValueError, match="s"):
        b1sar.sar10g(f, drive[:7])
    nan = drive.copy()
    nan[2] = np.nan
    with pytest.raises(ValueError):
        b1sar.sar10g(f, nan)
    q = b1sar.Q10g.from_fields(f)
    with pytest.raises(ValueError):
        q.psar(np.ones((2, 7), dtype=complex))
    with pytest.raises(ValueError, match="epsilon"):
        b1sar.VopSet.compress(q, epsilon=2.0)
    with pytest.raises(ValueError, match="method"):
        b1sar.VopSet.compress(q, method="fast")
    sigma = f.sigma.copy()
    sigma[0, 0, 0] = -1.0
    with pytest.raises(ValueError, match="sigma"):
        b1sar.FieldSet(f.b1, sigma, f.rho, f.spacing_m)
    with pytest.raises(ValueError):
        b1sar.FieldSet(f.b1, f.sigma, f.rho, (0.0, 0.005, 0.005))
    with pytest.raises(ValueError):
        b1sar.sar10g(b1sar.FieldSet(f.b1, f.sigma, f.rho, f.spacing_m), drive)


PULSES = sorted((ROOT / "pulses").glob("*.json"))
TIMINGS = {"elapsed_s", "integration_s", "output_paths"}


def same_report(py, c):
    """The same keys, and every value equal (floats to 1e-12 relative), timings aside."""
    assert set(py) == set(c)
    for k in set(c) - TIMINGS:
        a, b = py[k], c[k]
        if isinstance(b, float):
            assert rel(a, b) <= 1e-12, (k, a, b)
        elif isinstance(b, list) and b and isinstance(b[0], dict):
            assert len(a) == len(b)
            for x, y in zip(a, b):
                same_report(x, y)
        elif isinstance(b, dict):
            same_report(a, b)
        elif isinstance(b, list):
            assert list(a) == b, k
        else:
            assert a == b, (k, a, b)


def cli_any(*args):
    """The CLI's --json object; exit 3 (over a limit) still prints the full result."""
    out = subprocess.run([str(BIN), *map(str, args), "--json"], capture_output=True, text=True)
    assert out.returncode in (0, 3), out.stdout + out.stderr
    return json.loads(out.stdout)


@pytest.mark.parametrize("pulse", PULSES, ids=lambda p: p.stem)
@pytest.mark.parametrize("predictor", ["exact", "net"])
def test_pulse_sar_matches_cli(f, pulse, predictor):
    p = b1sar.Pulse.load(pulse)
    extra = ["--model", ROOT / "examples" / "data" / "model"] if predictor == "net" else []
    c = cli_any("pulse-sar", "--pulse", pulse, "--tr-ms", 10, "--fields", SUBJECT,
                "--predictor", predictor, *extra)
    kw = {"model": ROOT / "examples" / "data" / "model"} if predictor == "net" else {}
    r = b1sar.pulse_sar(p, tr_ms=10, fields=f, predictor=predictor, **kw)
    same_report(r, c)
    assert r["psar10g_w_per_kg"] > 0 and r["model"] == c["model"]


def test_pulse_arrays_and_refusals(f):
    p = b1sar.Pulse.load(ROOT / "pulses" / "kt5_cp.json")
    assert p.rf.shape == (len(p), p.n_channels) and p.rf.dtype == np.complex128
    assert abs(p.duration_s - len(p) * p.dt_s) <= 1e-12 * p.duration_s
    with pytest.raises(ValueError, match="tr_ms"):
        b1sar.pulse_sar(p, tr_ms=-1.0, fields=f)
    with pytest.raises(ValueError, match="tr_ms"):
        b1sar.pulse_sar(p, tr_ms=p.duration_s * 1e3 / 2, fields=f)
    with pytest.raises(ValueError, match="predictor"):
        b1sar.pulse_sar(p, tr_ms=10, fields=f, predictor="fast")
    with pytest.raises(ValueError):
        b1sar.pulse_sar(p, tr_ms=10, fields=f, predictor="net")
    with pytest.raises(ValueError):
        b1sar.Pulse.load(ROOT / "pulses" / "kt5_cp.json", max_amplitude_sqrt_w=1e-3)
    with pytest.raises(OSError):
        b1sar.Pulse.load(ROOT / "pulses" / "missing.json")


MODEL = ROOT / "examples" / "data" / "model"


@pytest.mark.parametrize("all_slices", [False, True])
def test_model_predict_matches_cli(f, drive, all_slices, tmp_path):
    m = b1sar.Model.load(MODEL)
    r = m.predict(f, drive, all_slices=all_slices)
    out = tmp_path / "pred.npy"
    c = cli("predict", "--model", MODEL, "--fields", SUBJECT, "--drive", drive_json(drive),
            "--out", out, *(["--all-slices"] if all_slices else []))
    assert set(r) - {"maps"} == set(c)
    for k in set(c) - {"elapsed_s", "inference_s", "output_paths"}:
        a, b = r[k], c[k]
        if isinstance(b, float):
            assert rel(a, b) <= 1e-12, (k, a, b)
        elif isinstance(b, list):
            assert list(a) == b, k
        else:
            assert a == b, (k, a, b)
    assert r["maps"].shape[0] == len(r["slices"])
    assert np.array_equal(r["maps"].astype(np.float32), np.load(out))
    # The bound is the prediction times the model's recorded factor.
    assert rel(r["psar10g_bound_w_per_kg"], r["psar10g_w_per_kg"] * r["safety_factor"]) <= 1e-12


def test_model_refusals(f, drive):
    with pytest.raises(OSError):
        b1sar.Model.load(ROOT / "no-such-model")
    m = b1sar.Model.load(MODEL)
    with pytest.raises(ValueError, match="slice"):
        m.predict(f, drive, slice=10_000)
    with pytest.raises(ValueError):
        m.predict(f, drive[:3])


def test_vops_from_arrays_and_drive_check_match_cli(f, q_file, tmp_path):
    q = b1sar.Q10g.load(q_file)
    v = b1sar.VopSet.compress(q, epsilon=0.05)
    mats = v.matrices
    assert mats.shape == (len(v), 8, 8) and mats.dtype == np.complex128
    assert np.allclose(mats, np.conj(np.transpose(mats, (0, 2, 1))), rtol=0, atol=1e-15 * np.abs(mats).max())
    w = b1sar.VopSet(mats)
    S = np.random.default_rng(5).normal(size=(16, 8)) * (1 + 1j)
    assert np.max(np.abs(w.psar(S) - v.psar(S)) / v.psar(S)) <= 1e-12
    c = cli("vop", "--q", q_file, "--epsilon", "0.05", "--out", tmp_path / "v.npz",
            "--check-drives", 256)["check"]
    r = v.check_drives(q, n=256, seed=1)
    assert set(r) == set(c)
    for k in c:
        assert rel(r[k], c[k]) <= 1e-12, (k, r[k], c[k])
    assert r["min_ratio"] >= 1.0
    bad = mats.copy()
    bad[0, 0, 1] += 1.0
    with pytest.raises(ValueError, match="Hermitian"):
        b1sar.VopSet(bad)
    neg = mats.copy()
    neg[0] = -neg[0]
    with pytest.raises(ValueError):
        b1sar.VopSet(neg)
    with pytest.raises(ValueError):
        b1sar.VopSet(mats, unit="volt").check_drives(q)


def drive_from_json(path):
    d = json.loads(Path(path).read_text())
    return np.array(d["re"]) + 1j * np.array(d["im"])


OPT_TIMINGS = {"seconds", "outputs"}


def same_optimize(py, c):
    """optimize's dict equals the CLI's --json, timings and output paths aside."""
    assert set(py) - {"drive", "drives", "optimized_pulse", "outputs"} == set(c) - {"outputs"}
    same_report({k: v for k, v in py.items() if k in c and k not in OPT_TIMINGS},
                {k: v for k, v in c.items() if k not in OPT_TIMINGS})


def test_optimize_static_shim_matches_cli(f, q_file, tmp_path):
    c = cli_any("optimize", "--fields", SUBJECT, "--roi", "prostate", "--sar-limit", 10,
                "--out", tmp_path / "cli")
    r = b1sar.optimize(f, roi="prostate", predictor="exact", sar_limit=10,
                       out=tmp_path / "py")
    same_optimize(r, c)
    # The drive array is the CLI's drive.json, and its exact pSAR10g is the reported one.
    assert np.max(np.abs(r["drive"] - drive_from_json(tmp_path / "cli" / "drive.json"))) <= 1e-12
    q = b1sar.Q10g.load(q_file)
    assert rel(q.psar(r["drive"][None, :])[0], r["psar10g_exact_w_per_kg"]) <= 1e-12
    assert r["psar10g_exact_w_per_kg"] <= 10.0 * (1 + 1e-9) and r["exact_within_limit"]
    assert [Path(p).name for p in r["outputs"]] == [Path(p).name for p in c["outputs"]]


def test_optimize_pulse_matches_cli(f, tmp_path):
    pulse = ROOT / "pulses" / "kt5_cp.json"
    c = cli_any("optimize", "--fields", SUBJECT, "--roi", "prostate", "--pulse", pulse,
                "--tr-ms", 10, "--out", tmp_path / "cli")
    r = b1sar.optimize(f, roi="prostate", pulse=b1sar.Pulse.load(pulse), tr_ms=10)
    same_optimize(r, c)
    p = r["optimized_pulse"]
    assert p.n_channels == f.n_channels and len(p) == len(b1sar.Pulse.load(pulse))
    assert r["drives"].shape == (r["pulse"]["sub_pulses"], f.n_channels)
    # The optimised pulse, judged again by pulse_sar, has the reported time-averaged pSAR10g.
    again = b1sar.pulse_sar(p, tr_ms=10, fields=f, predictor="exact")
    assert rel(again["psar10g_w_per_kg"], r["psar10g_exact_w_per_kg"]) <= 1e-9


def test_optimize_refusals(f):
    pulse = b1sar.Pulse.load(ROOT / "pulses" / "kt5_cp.json")
    with pytest.raises(ValueError, match="tissue|prostrate"):
        b1sar.optimize(f, roi="prostrate")
    with pytest.raises(ValueError, match="region of interest"):
        b1sar.optimize(f)
    with pytest.raises(ValueError, match="objective"):
        b1sar.optimize(f, roi="prostate", objective="flat")
    with pytest.raises(ValueError, match="tr_ms"):
        b1sar.optimize(f, roi="prostate", pulse=pulse)
    with pytest.raises(ValueError, match="--pulse"):
        b1sar.optimize(f, roi="prostate", pulse=pulse, tr_ms=10, pareto=3)
    with pytest.raises(ValueError, match="--tr-ms"):
        b1sar.optimize(f, roi="prostate", pulse=pulse, tr_ms=pulse.duration_s * 1e3 / 2)
    with pytest.raises(ValueError, match="--net-slices"):
        b1sar.optimize(f, roi="prostate", net_slices=3)
    with pytest.raises(ValueError, match="sar_limit"):
        b1sar.optimize(f, roi="prostate", sar_limit=-1)
    with pytest.raises(ValueError):
        b1sar.optimize(f, roi="prostate", predictor="net")
    with pytest.raises(ValueError, match="roi_mask"):
        b1sar.optimize(f, roi_mask=np.zeros((2, 2), dtype=bool))
    with pytest.raises(ValueError):
        b1sar.optimize(f, roi_mask=np.zeros((1, 2, 3), dtype=bool))
