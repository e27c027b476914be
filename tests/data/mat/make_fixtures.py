#!/usr/bin/env python3
"""Make the MAT v5 fixtures read by the unit tests in src/io/mat.rs.

The fixtures come from scipy's MATLAB-compatible writer, independent of b1sar's own writer, so the
reader is tested against bytes it did not produce. scipy is not available in CI: the produced .mat
files are committed, and this script documents how they were made. Re-run from the repository root:

    python3 tests/data/mat/make_fixtures.py

It prints the expected values that the Rust test hard-codes; the random generator is seeded, so the
output is reproducible for a given numpy version.
"""

from pathlib import Path

import numpy as np
import scipy.io

HERE = Path(__file__).resolve().parent
N_CH, N_VOP = 8, 6


def main() -> None:
    rng = np.random.default_rng(20240607)
    zz = np.empty((N_CH, N_CH, N_VOP), dtype=np.complex128)
    for k in range(N_VOP):
        a = rng.standard_normal((N_CH, N_CH)) + 1j * rng.standard_normal((N_CH, N_CH))
        h = a @ a.conj().T
        # Averaging with the conjugate transpose makes the matrix exactly Hermitian in floating
        # point (the test checks symmetry bit for bit) and leaves it positive semi-definite.
        zz[:, :, k] = (h + h.conj().T) / 2

    mdict = {
        "ZZ": zz,
        "ZZtype": np.array([6, 6, 6, 6, 8, 8], dtype=np.uint8),  # 1-D: stored as 1x6
        "VOPTypeLimit": np.array([[10.0, 20.0]]),
        "VOPTypeLimitID": np.array([[6, 8]], dtype=np.int32),
        "Comment": "SarDataUser-like fixture",
        "Mask": np.array([[True, False, True]]),
        "Small16": np.array([[1, 2, 3], [4, 5, 6]], dtype=np.int16),  # column-major: 1 4 2 5 3 6
        "Single": np.array([[1.5, -2.25]], dtype=np.float32),
        "Info": {"a": 1.0, "b": "x"},  # struct
        "Parts": np.array([1.0, "x"], dtype=object),  # cell
    }
    out = HERE / "sardatauser_like.mat"
    scipy.io.savemat(out, mdict, format="5", do_compression=True, oned_as="row")

    back = scipy.io.loadmat(out)
    assert np.array_equal(back["ZZ"], zz)
    print(f"wrote {out} ({out.stat().st_size} bytes)")
    print("expected ZZ entries (i, j, k) = re, im:")
    for i, j, k in [(0, 0, 0), (1, 0, 0), (0, 1, 0), (3, 5, 2), (7, 6, 5), (2, 2, 4)]:
        v = zz[i, j, k]
        print(f"    (({i}, {j}, {k}), {float(v.real)!r}, {float(v.imag)!r}),")


if __name__ == "__main__":
    main()
