"""The phase-only CV shim of `b1sar bench optimize` in Python/scipy, for a timing comparison.

    b1sar bench optimize --dump /tmp/shim_problem.npz
    python3 benches/scipy_shim.py /tmp/shim_problem.npz

Same problem: minimise the coefficient of variation of |A s| over the channel phases (unit
magnitudes, start: all phases zero), the shim normalised to the target mean |B1+| before the VOP
limit max_m s^H Q_m s <= L is evaluated. SLSQP with analytic gradients of the objective and of every
VOP constraint: what a careful scipy user would write. Not part of the test suite.
"""
import sys
import time

import numpy as np
from scipy.optimize import minimize

z = np.load(sys.argv[1])
A = z["a_re"] + 1j * z["a_im"]
P = z["vop_packed"]
target = float(z["target_t"][0])
limit = float(z["limit"][0])
nv, n = A.shape
pairs = [(i, j) for i in range(n) for j in range(i + 1, n)]
Q = np.zeros((P.shape[0], n, n), dtype=complex)
for i in range(n):
    Q[:, i, i] = P[:, i]
for k, (i, j) in enumerate(pairs):
    v = P[:, n + 2 * k] + 1j * P[:, n + 2 * k + 1]
    Q[:, i, j] = v
    Q[:, j, i] = np.conj(v)


def pattern(phi):
    s = np.exp(1j * phi)
    return s, A @ s


def cv(phi):
    s, b = pattern(phi)
    m = np.abs(b)
    mu, sd = m.mean(), m.std()
    g = b / m
    alpha = (m - mu) / (nv * sd * mu) - sd / (mu * mu * nv)
    G = (alpha * g) @ np.conj(A)  # complex gradient d/dRe + i d/dIm
    return sd / mu, -np.imag(np.conj(G) * s)


def constraints(phi):
    s, b = pattern(phi)
    m = np.abs(b)
    mu = m.mean()
    k = target**2 / mu**2
    qs = Q @ s  # (M, n)
    v = np.real(np.einsum("i,mi->m", np.conj(s), qs))
    dmu = ((b / m) @ np.conj(A)) / nv
    gv = 2 * qs * k - (2 * v * k / mu)[:, None] * dmu[None, :]
    dphi = -np.imag(np.conj(gv) * s[None, :])
    return limit - v * k, -dphi


t0 = time.perf_counter()
res = minimize(
    lambda p: cv(p),
    np.zeros(n),
    jac=True,
    method="SLSQP",
    constraints=[{"type": "ineq", "fun": lambda p: constraints(p)[0], "jac": lambda p: constraints(p)[1]}],
    options={"maxiter": 500, "ftol": 1e-12},
)
dt = time.perf_counter() - t0
c = constraints(res.x)[0]
print(
    f"scipy SLSQP phase-only, 1 start: {dt:.3f} s, {res.nfev} evaluations, CV {res.fun:.4f}, "
    f"VOP SAR / limit {1 - c.min() / limit:.4f}, success {res.success} ({res.message})"
)
