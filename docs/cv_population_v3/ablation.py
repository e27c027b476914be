#!/usr/bin/env python3
"""Fold-0 ablation table of issue 27 from `b1sar cv --fold 0` results.json files.

usage: ablation.py NAME=FOLD_RESULTS_JSON ...  (prints markdown)
"""
import json
import statistics
import sys
from collections import defaultdict

KINDS = ["random-phase", "random-magnitude", "optimised", "pulse"]


def quartiles(v):
    v = sorted(v)
    def q(p):
        h = (len(v) - 1) * p
        lo = int(h)
        return v[lo] + (h - lo) * (v[min(lo + 1, len(v) - 1)] - v[lo])
    return q(0.25), q(0.75)


def stats(samples, key):
    r = [s["true_psar_w_per_kg"] / s[key] for s in samples]
    sf = max(r)
    q1, q3 = quartiles(r)
    uof = q3 + 3 * (q3 - q1)
    after = statistics.mean(sf / x - 1 for x in r)
    under = sum(x > uof for x in r) / len(r)
    return sf, uof, after, under


def main():
    runs = [a.split("=", 1) for a in sys.argv[1:]]
    print("| variant | drives | n | cGAN SF | SF_UOF | after SF | under after SF_UOF | NRMSE | conventional SF | after SF |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for name, path in runs:
        with open(path) as f:
            r = json.load(f)
        by = defaultdict(list)
        for s in r["samples"]:
            by[s.get("kind", "random-phase")].append(s)
            by["all drives"].append(s)
        for kind in ["all drives"] + KINDS:
            v = by.get(kind)
            if not v:
                continue
            sf, uof, after, under = stats(v, "dl_psar_w_per_kg")
            csf, _, cafter, _ = stats(v, "conventional_psar_w_per_kg")
            nr = statistics.mean(s["nrmse"] for s in v)
            print(f"| {name} | {kind} | {len(v)} | {sf:.2f} | {uof:.2f} | {after:+.0%} | {under:.1%} | {nr:.3f} | {csf:.2f} | {cafter:+.0%} |")


if __name__ == "__main__":
    main()
