import json, sys, math
def q(v, p):
    v = sorted(v); h = (len(v)-1)*p; lo = math.floor(h); hi = math.ceil(h)
    return v[lo] + (h-lo)*(v[hi]-v[lo])
def stats(samples, key):
    r = [s['true_psar_w_per_kg']/s[key] for s in samples]
    sf = max(r); q1, q3 = q(r, .25), q(r, .75); uof = q3 + 3*(q3-q1)
    after = sum(sf/x - 1 for x in r)/len(r)
    after_uof = sum(uof/x - 1 for x in r)/len(r)
    under_uof = sum(1 for x in r if x > uof)
    return sf, uof, after, after_uof, under_uof
for name in sys.argv[1:]:
    j = json.load(open(f'docs/acquisition_short_budget/samples_{name}.json'))
    ss = j['samples']
    print(f'== {name}: {len(ss)} samples, training {j["train_elapsed_s"]:.0f} s')
    for kind in ['all', 'random-phase', 'random-magnitude', 'optimised']:
        sub = [s for s in ss if kind == 'all' or s['kind'] == kind]
        if not sub: continue
        d = stats(sub, 'dl_psar_w_per_kg'); c = stats(sub, 'conventional_psar_w_per_kg')
        nr = sum(s['nrmse'] for s in sub)/len(sub)
        print(f'{kind:17} n={len(sub):3}  cGAN SF {d[0]:.2f} UOF {d[1]:.2f} after SF {100*d[2]:+.0f}% after UOF {100*d[3]:+.0f}% under@UOF {d[4]}  | conv SF {c[0]:.2f} UOF {c[1]:.2f} after SF {100*c[2]:+.0f}% under@UOF {c[4]} | NRMSE {nr:.3f}')
