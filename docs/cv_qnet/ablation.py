#!/usr/bin/env python3
"""Single-fold ablation tables of issue 29 from `b1sar qnet-cv --fold K` output folders (their cv.json).

usage: ablation.py NAME=QNET_CV_DIR ...  (prints markdown)
"""
import json
import sys

KINDS = ["random-phase", "random-magnitude", "optimised", "pulse", "all"]


def main():
    print("| variant | recipe | epochs | rank | depth | drive term | peak penalty | rel. Q10g error | "
          + " | ".join(f"SF {k}" for k in KINDS)
          + " | after SF (all) | SF_UOF (all) | VOPs x SF cover |")
    print("|" + "---|" * (12 + len(KINDS) - 1))
    for name, path in (a.split("=", 1) for a in sys.argv[1:]):
        with open(f"{path}/cv.json") as f:
            r = json.load(f)
        spec = r["spec"]
        rows = {x["kind"]: x for x in r["rows"]}
        sf = [f"{rows[k]['qnet']['safety_factor']:.2f}" if k in rows else "-" for k in KINDS]
        a = rows["all"]["qnet"]
        vb = r.get("vop_bound")
        cover = f"{vb['covered']}/{vb['n']}" if vb else "-"
        kind = "structured" if spec.get("recipe", 1) >= 3 else "random-phase"
        drive = f"K = {spec['drives']} {kind}" if spec["drives"] and spec["lambda_drive"] else "off"
        print(f"| {name} | {spec.get('recipe', 1)} | {spec['epochs']} | {spec['rank'] or 8} | "
              f"{spec['depth']} | {drive} | "
              f"{spec['lambda_peak'] if spec['drives'] else '-'} | {r['mean_q10g_rel_error']:.3f} | "
              + " | ".join(sf)
              + f" | {100 * a['mean_overestimation_after_sf']:+.0f} % | {a['safety_factor_uof']:.2f} | {cover} |")


if __name__ == "__main__":
    main()
