"""pSAR10g of 256 random drives on the shipped subject: one call of the Python binding
(b1sar.Q10g.psar, Q10g loaded once) against one `b1sar sar --q` subprocess per drive, the way a
pulse-design loop reached b1sar before the package. Checks that both give the same numbers.

    python examples/python/psar_speed.py [path/to/b1sar]
"""

import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

import b1sar

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT / "target" / "release" / "b1sar"
N = 256

f = b1sar.FieldSet.load(ROOT / "examples" / "data" / "subject_small.npz")
rng = np.random.default_rng(1)
S = rng.normal(size=(N, f.n_channels)) + 1j * rng.normal(size=(N, f.n_channels))
with tempfile.TemporaryDirectory() as d:
    qfile = Path(d) / "q.npz"
    t = time.perf_counter()
    q = b1sar.Q10g.from_fields(f)
    q.save(qfile)
    t_q = time.perf_counter() - t
    t = time.perf_counter()
    p = q.psar(S)
    t_py = time.perf_counter() - t
    t = time.perf_counter()
    cli = []
    for s in S:
        drive = json.dumps({"re": list(map(float, s.real)), "im": list(map(float, s.imag))})
        out = subprocess.run([str(BIN), "sar", "--q", str(qfile), "--drive", drive, "--json"],
                             capture_output=True, text=True, check=True)
        cli.append(json.loads(out.stdout)["psar10g_w_per_kg"])
    t_cli = time.perf_counter() - t
worst = float(np.max(np.abs(p - np.array(cli)) / p))
print(f"{N} drives, {len(q)} Q10g matrices, 8 channels (Q10g computed once in {t_q:.2f} s)")
print(f"Python binding: {t_py * 1e3:.1f} ms ({t_py / N * 1e6:.0f} us per drive)")
print(f"CLI subprocesses: {t_cli:.2f} s ({t_cli / N * 1e3:.1f} ms per drive)")
print(f"speed-up {t_cli / t_py:.0f}x; largest relative difference {worst:.1e}")
