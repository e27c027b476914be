"""examples/python/shim_and_pulse.py gives the CLI's numbers: the same shim, kT-points pulse and
time-averaged pSAR10g under the exact, VOP and network models."""

import importlib.util
import json
import subprocess

import pytest

from test_bindings import BIN, ROOT, SUBJECT, rel

EXAMPLE = ROOT / "examples" / "python" / "shim_and_pulse.py"


def cli(*args):
    out = subprocess.run([str(BIN), *map(str, args), "--json"], capture_output=True, text=True)
    assert out.returncode in (0, 3), out.stdout + out.stderr
    return json.loads(out.stdout)


def test_example_matches_cli(tmp_path):
    spec = importlib.util.spec_from_file_location("shim_and_pulse", EXAMPLE)
    ex = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(ex)
    f, shim, py = ex.run(tmp_path)
    ex.plot(f, shim, tmp_path / "b1.png")

    opt = cli("optimize", "--fields", SUBJECT, "--roi", "prostate", "--sar-limit", 10,
              "--out", tmp_path / "opt")
    assert rel(py["shim_psar10g_exact"], opt["psar10g_exact_w_per_kg"]) <= 1e-12
    cli("pulse-gen", "kt", "--shim", tmp_path / "opt" / "drive.json", "--out", tmp_path / "kt.json")
    cli("qmatrix", "--fields", SUBJECT, "--out", tmp_path / "q.npz")
    cli("vop", "--q", tmp_path / "q.npz", "--epsilon", 0.05, "--out", tmp_path / "vop_cli.npz")
    for label, extra in [
        ("exact", []),
        ("vop", ["--vop", tmp_path / "vop_cli.npz"]),
        ("net", ["--model", ROOT / "examples" / "data" / "model"]),
    ]:
        c = cli("pulse-sar", "--pulse", tmp_path / "kt.json", "--tr-ms", 10, "--fields", SUBJECT,
                "--predictor", label, *extra)
        # The pulse JSON keeps 6 significant digits in both paths, so the numbers agree exactly
        # up to summation order.
        assert rel(py[label], c["psar10g_bound_w_per_kg"]) <= 1e-9, (label, py[label], c)
    # The VOP bound is not below the exact value, and the shim respects the limit.
    assert py["vop"] >= py["exact"] * (1 - 1e-12)
    assert py["shim_psar10g_exact"] <= 10.0 * (1 + 1e-9)
