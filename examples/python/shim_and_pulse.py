"""A pulse designer's loop from Python, over the same library calls as the command line:

1. load the shipped subject;
2. shim the prostate for |B1+| homogeneity under the exact local-SAR limit (10 W/kg);
3. build a kT-points pulse (5 points) that plays that shim in every sub-pulse;
4. print its time-averaged SAR at TR 10 ms under the exact model, the subject's VOPs and the
   network (with the network's recorded safety factor);
5. plot |B1+| of the shim with matplotlib, if it is installed.

Run from the repository root after `pip install ./python`:

    python examples/python/shim_and_pulse.py [--plot b1_shim.png]

The command line gives the same numbers (python/tests/test_example.py checks it):

    b1sar optimize --fields examples/data/subject_small.npz --roi prostate --sar-limit 10 --out opt
    b1sar pulse-gen kt --shim opt/drive.json --out kt.json
    b1sar qmatrix --fields examples/data/subject_small.npz --out q.npz
    b1sar vop --q q.npz --epsilon 0.05 --out vop.npz
    b1sar pulse-sar --pulse kt.json --tr-ms 10 --fields examples/data/subject_small.npz \\
        --predictor exact            # then: --predictor vop --vop vop.npz
                                     # and:  --predictor net --model examples/data/model
"""

import argparse
import tempfile
from pathlib import Path

import numpy as np

import b1sar

ROOT = Path(__file__).resolve().parents[2]
SUBJECT = ROOT / "examples" / "data" / "subject_small.npz"
MODEL = ROOT / "examples" / "data" / "model"
TR_MS = 10.0
SAR_LIMIT_W_PER_KG = 10.0


def run(workdir):
    """The loop; returns its numbers (W/kg) and the shim, for the test against the CLI."""
    f = b1sar.FieldSet.load(SUBJECT)
    shim = b1sar.optimize(f, roi="prostate", predictor="exact", sar_limit=SAR_LIMIT_W_PER_KG)
    print(f"shim: ROI CV {100 * shim['roi_cv']:.2f} % at mean |B1+| {shim['roi_mean_b1_ut']:.3f} uT, "
          f"exact pSAR10g {shim['psar10g_exact_w_per_kg']:.3f} W/kg "
          f"(limit {SAR_LIMIT_W_PER_KG}), feasible: {shim['feasible']}")

    pulse = b1sar.pulse_gen("kt", shim["drive"])
    print(f"kT-points pulse: {len(pulse)} steps of {pulse.dt_s * 1e6:.0f} us "
          f"({pulse.duration_s * 1e3:.2f} ms)")

    q = b1sar.Q10g.from_fields(f)
    vop_path = Path(workdir) / "vop.npz"
    b1sar.VopSet.compress(q, epsilon=0.05).save(vop_path)
    results = {"shim_psar10g_exact": shim["psar10g_exact_w_per_kg"]}
    for label, kw in [
        ("exact", dict(predictor="exact")),
        ("vop", dict(predictor="vop", vop=vop_path)),
        ("net", dict(predictor="net", model=MODEL)),
    ]:
        r = b1sar.pulse_sar(pulse, tr_ms=TR_MS, fields=f, **kw)
        results[label] = r["psar10g_bound_w_per_kg"]
        print(f"  {label:5}: time-averaged pSAR10g x SF {r['psar10g_bound_w_per_kg']:.4f} W/kg "
              f"(SF {r['safety_factor']:.3f}; exact {r['exact_psar10g_w_per_kg']:.4f})")
    return f, shim, results


def plot(f, shim, path):
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib is not installed: no plot")
        return
    b = np.abs(b1sar.combine(f, shim["drive"])) * 1e6
    zs = np.nonzero(f.labels == b1sar.tissue_label("prostate"))[0]
    z = int(zs[len(zs) // 2])
    fig, ax = plt.subplots()
    im = ax.imshow(b[z], origin="lower", cmap="viridis")
    fig.colorbar(im, ax=ax, label="|B1+| (uT)")
    ax.set_title(f"|B1+| of the prostate shim, slice z = {z}")
    fig.savefig(path, dpi=120)
    print(f"wrote {path}")


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--plot", default="b1_shim.png", help="PNG of |B1+| (needs matplotlib)")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as d:
        f, shim, _ = run(d)
    plot(f, shim, args.plot)


if __name__ == "__main__":
    main()
