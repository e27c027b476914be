#!/usr/bin/env python3
"""Issue 27's comparison: the v3 cross-validation (inputs synthesised from one acquisition per
subject, pulses evaluated) against v2 (per-drive DREAM) and the conventional generic-subject
approach, per kind of drive and over all drives, from the cv.json files `b1sar cv` writes.

usage: compare.py V3_CV_JSON V2_CV_JSON  (prints markdown)
"""
import json
import statistics
import sys

PAPER = {"safety_factor": 1.38, "safety_factor_uof": 1.36, "mean_overestimation_after_sf": 0.56}
KINDS = ["random-phase", "random-magnitude", "optimised", "pulse"]


def load(path):
    with open(path) as f:
        d = json.load(f)
    s = d["summary"]
    rows = {"all drives": {"n": s["n_samples"], "dl": s["dl"]["stats"], "conventional": s["conventional"]["stats"]}}
    for k in s["by_drive"]:
        rows[k["kind"]] = k
    return d, rows


def nrmse(samples, kind):
    v = [x["nrmse"] for x in samples if kind in ("all drives", x.get("kind", "random-phase"))]
    return statistics.mean(v) if v else float("nan")


def main():
    v3, r3 = load(sys.argv[1])
    v2, r2 = load(sys.argv[2])
    print("| drives | n (v3) | figure | cGAN v3 (acquisition) | cGAN v2 (per-drive DREAM) | conventional | paper (random phase) | v3 beats conventional |")
    print("|---|---|---|---|---|---|---|---|")
    verdicts = {}
    for kind in ["all drives"] + KINDS:
        if kind not in r3:
            continue
        a, b = r3[kind], r2.get(kind)
        dl, cv = a["dl"], a["conventional"]
        checks = []
        for key, label, fmt in [
            ("safety_factor", "SF", "{:.2f}"),
            ("safety_factor_uof", "SF_UOF", "{:.2f}"),
            ("mean_overestimation_after_sf", "over-estimation after SF", "{:+.0%}"),
            ("p_underestimation_after_sf_uof", "under after SF_UOF", "{:.1%}"),
        ]:
            v2v = fmt.format(b["dl"][key]) if b else "-"
            paper = fmt.format(PAPER[key]) if key in PAPER and kind in ("all drives", "random-phase") else ""
            if key == "p_underestimation_after_sf_uof":
                ok = dl[key] == 0.0
            else:
                ok = dl[key] < cv[key]
            checks.append(ok)
            print(f"| {kind} | {a['n']} | {label} | {fmt.format(dl[key])} | {v2v} | {fmt.format(cv[key])} | {paper} | {'yes' if ok else '**no**'} |")
        print(f"| {kind} | | NRMSE | {nrmse(v3['samples'], kind):.3f} | {nrmse(v2['samples'], kind) if b else float('nan'):.3f} | | 0.03-0.04 | |")
        verdicts[kind] = all(checks)
    pk = [x.get("peak_known") for x in v3["samples"] if x.get("kind") == "pulse" and x.get("peak_known") is not None]
    if pk:
        print(f"\npulse peaks in the known mask: {sum(pk)} of {len(pk)} ({100 * sum(pk) / len(pk):.1f} %)")
    print("\ncGAN beats conventional on every figure: " + ", ".join(f"{k} {'yes' if v else 'no'}" for k, v in verdicts.items()))
    folds = v3.get("folds", [])
    if folds:
        tr = [f.get("train_elapsed_s", 0) for f in folds]
        ev = [f.get("eval_elapsed_s", 0) for f in folds]
        print(f"\nwall time: training {min(tr):.0f}-{max(tr):.0f} s per fold, evaluation {min(ev):.0f}-{max(ev):.0f} s per fold")


if __name__ == "__main__":
    main()
