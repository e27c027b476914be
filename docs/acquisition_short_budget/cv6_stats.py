import json, sys
for v in sys.argv[1:]:
    j = json.load(open(f'docs/acquisition_short_budget/cv6_summary_{v}.json'))
    s = j['summary']
    rows = [('all', s['dl']['stats'], s['conventional']['stats'], s['n_samples'])] + [(b['kind'], b['dl'], b['conventional'], b['n']) for b in s['by_drive']]
    print(f'== {v} (6 folds, 23 held-out subjects)')
    for kind, d, c, n in rows:
        print(f"{kind:17} n={n:4} cGAN SF {d['safety_factor']:.2f} UOF {d['safety_factor_uof']:.2f} after SF {100*d['mean_overestimation_after_sf']:+.0f}% under@UOF {100*d['p_underestimation_after_sf_uof']:.1f}% | conv SF {c['safety_factor']:.2f} UOF {c['safety_factor_uof']:.2f} after SF {100*c['mean_overestimation_after_sf']:+.0f}% under@UOF {100*c['p_underestimation_after_sf_uof']:.1f}%")
