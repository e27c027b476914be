"""b1sar: subject-specific local SAR for parallel-transmit MRI at 7 T.

Arrays are in SI units, channels first, grids [z, y, x]. Drives are complex amplitudes in sqrt(W)
of accepted power per channel (peak volts for scanner VOP files). Bad input raises ValueError with
the command line's message; a file that cannot be opened raises OSError; a runtime failure raises
RuntimeError.
"""

from os import PathLike
from typing import Any, Optional, Tuple, Union

import numpy as np
import numpy.typing as npt

__version__: str

_Path = Union[str, PathLike]
_C = npt.NDArray[np.complex128]
_F = npt.NDArray[np.float64]

class FieldSet:
    """Per-channel B1+ and E fields with tissue properties on one grid (one subject)."""

    def __init__(
        self,
        b1: _C,
        sigma: _F,
        rho: _F,
        spacing_m: Tuple[float, float, float],
        e: Optional[_C] = None,
        labels: Optional[npt.NDArray[np.uint8]] = None,
        origin_m: Tuple[float, float, float] = (0.0, 0.0, 0.0),
        frequency_hz: Optional[float] = None,
    ) -> None:
        """b1 complex [ch, z, y, x] (T/sqrt(W)); sigma (S/m), rho (kg/m^3) [z, y, x];
        e complex [ch, 3, z, y, x] (V/m per sqrt(W)); labels uint8 [z, y, x]."""
    @staticmethod
    def load(path: _Path) -> "FieldSet":
        """Load b1sar's field-set .npz."""
    def save(self, path: _Path) -> None:
        """Save as .npz (atomically)."""
    @property
    def b1(self) -> _C:
        """complex128 [ch, z, y, x], T/sqrt(W)."""
    @property
    def e(self) -> Optional[_C]:
        """complex128 [ch, 3, z, y, x], V/m per sqrt(W); None for B1+-only sets."""
    @property
    def sigma(self) -> _F:
        """float64 [z, y, x], S/m."""
    @property
    def rho(self) -> _F:
        """float64 [z, y, x], kg/m^3."""
    @property
    def labels(self) -> Optional[npt.NDArray[np.uint8]]:
        """uint8 [z, y, x] tissue labels, or None."""
    @property
    def spacing_m(self) -> Tuple[float, float, float]:
        """Voxel size (dz, dy, dx), m."""
    @property
    def shape(self) -> Tuple[int, int, int]:
        """Grid shape (nz, ny, nx)."""
    @property
    def n_channels(self) -> int: ...

def combine(f: FieldSet, s: _C) -> _C:
    """Combined B1+ of drive s (complex [ch], sqrt(W)): complex128 [z, y, x] in T (Eq. 1)."""

def sar10g(f: FieldSet, s: _C) -> dict[str, Any]:
    """SAR10g of drive s (complex [ch], sqrt(W)) from a field set with E, as `b1sar sar --json`:
    "map" float64 [z, y, x] W/kg, "psar10g_w_per_kg", "psar10g_index_zyx",
    "whole_body_sar_w_per_kg", "voxel_counts", "output_paths", "elapsed_s"."""

class Q10g:
    """Q10g matrices: one 10 g-averaged quadratic form per voxel (W/kg per W)."""

    @staticmethod
    def from_fields(f: FieldSet) -> "Q10g":
        """Compute from a field set with E (releases the GIL)."""
    @staticmethod
    def load(path: _Path) -> "Q10g": ...
    def save(self, path: _Path) -> None: ...
    def psar(self, S: _C) -> _F:
        """Exact pSAR10g (W/kg) of each drive; S complex [n, ch] in sqrt(W) -> float64 [n]."""
    def sar_map(self, s: _C) -> _F:
        """SAR10g map of drive s (complex [ch]): float64 [z, y, x], W/kg."""
    @property
    def n_channels(self) -> int: ...
    @property
    def worst_case_w_per_kg_per_w(self) -> float: ...
    def __len__(self) -> int: ...

class VopSet:
    """Virtual observation points: an upper bound of pSAR10g from a few matrices."""

    def __init__(self, matrices: _C, unit: str = "sqrt_w") -> None:
        """From complex Hermitian PSD matrices [k, ch, ch] (W/kg per W for "sqrt_w", W/kg per
        V^2 for "volt"), checked as a loaded file is."""
    @property
    def matrices(self) -> _C:
        """complex128 [k, ch, ch], margins included."""
    def check_drives(self, q: "Q10g", n: int = 10000, seed: int = 1) -> dict[str, float]:
        """As `vop --check-drives`: mean and max over-estimation, smallest bound / exact (>= 1)."""

    @staticmethod
    def compress(q: Q10g, epsilon: float = 0.05, method: str = "cc", margins: str = "uniform") -> "VopSet":
        """VOPs with over-estimation at most epsilon x the worst case (as `b1sar vop`);
        method "cc" or "greedy", margins "uniform" or "per-vop"."""
    @staticmethod
    def load(path: _Path) -> "VopSet":
        """b1sar's .npz or a scanner SarDataUser.mat."""
    def save(self, path: _Path) -> None: ...
    def psar(self, S: _C) -> _F:
        """VOP bound of pSAR10g (W/kg) of each drive; S complex [n, ch] in the set's unit."""
    @property
    def epsilon(self) -> float: ...
    @property
    def method(self) -> Optional[str]: ...
    @property
    def n_channels(self) -> int: ...
    def __len__(self) -> int: ...

class Pulse:
    """An RF pulse: steps of dt_s with per-channel complex amplitudes (sqrt(W)) and gradients."""

    @staticmethod
    def load(
        path: _Path,
        max_amplitude_sqrt_w: float = 40.0,
        max_grad_mt_per_m: float = 40.0,
        max_slew_t_per_m_per_s: float = 200.0,
    ) -> "Pulse":
        """A pulse JSON (pulses/), checked against the hardware limits as `pulse-sar` does."""
    @property
    def name(self) -> str: ...
    @property
    def dt_s(self) -> float: ...
    @property
    def duration_s(self) -> float: ...
    @property
    def n_channels(self) -> int: ...
    @property
    def rf(self) -> _C:
        """complex128 [step, channel], sqrt(W)."""
    def __len__(self) -> int: ...

def pulse_sar(
    p: Pulse,
    tr_ms: float,
    fields: Optional[FieldSet] = None,
    predictor: Optional[str] = None,
    q: Optional[_Path] = None,
    vop: Optional[_Path] = None,
    model: Optional[_Path] = None,
    safety_factor: Optional[float] = None,
    pulses_per_tr: int = 1,
    scan_duration_s: Optional[float] = None,
    method: str = "covariance",
    batch: int = 64,
    slices: Optional[list[int]] = None,
    roi_label: Optional[str] = None,
    bloch: str = "full",
    device: str = "cpu",
) -> dict[str, Any]:
    """Time-averaged SAR of p repeated every tr_ms: the dict of `b1sar pulse-sar --json`
    (psar10g_w_per_kg, safety_factor, psar10g_bound_w_per_kg, the IEC 10 s / 6 min windows and
    verdicts, exact_psar10g_w_per_kg, whole_body_sar_w_per_kg, flip_angle, ...). predictor:
    "exact", "vop", "generic", "net", "qnet" or "none" (None: inferred from q / vop / model), as on the CLI."""

def tissue_label(name: str) -> int:
    """The label id of a tissue name in FieldSet.labels (e.g. "prostate"); ValueError if unknown."""

def pulse_gen(
    kind: str,
    shims: _C,
    name: Optional[str] = None,
    duration_ms: float = 2.0,
    steps: int = 200,
    tbw: Optional[float] = None,
    sigmas: float = 3.0,
    dt_us: float = 10.0,
    spokes: int = 2,
    k_xy: Optional[list[Tuple[float, float]]] = None,
    k_points: Optional[list[Tuple[float, float, float]]] = None,
    k_radius: float = 3.0,
    sub_ms: Optional[float] = None,
    slice_mm: float = 5.0,
    kmax: float = 8.0,
    alpha: float = 10.0,
    beta: float = 0.5,
    u: float = 25.0,
    v: float = 5.0,
    max_amplitude_sqrt_w: float = 40.0,
    max_grad_mt_per_m: float = 40.0,
    max_slew_t_per_m_per_s: float = 200.0,
    digits: int = 6,
) -> Pulse:
    """The pulse `b1sar pulse-gen KIND` writes. kind: "spokes", "kt", "spins", "sinc", "gauss" or
    "hard"; shims: complex [ch] (every sub-pulse) or [sub-pulse, ch], peak amplitudes in sqrt(W);
    k positions in cycles/m. Bad parameters raise ValueError naming them."""

def optimize(
    f: FieldSet,
    roi: Optional[str] = None,
    roi_mask: Optional[np.ndarray] = None,
    objective: str = "cv",
    predictor: Optional[str] = None,
    q: Optional[_Path] = None,
    vop: Optional[_Path] = None,
    model: Optional[_Path] = None,
    safety_factor: Optional[float] = None,
    sar_limit: Optional[float] = None,
    wb_limit: float = 4.0,
    max_channel_power_w: Optional[float] = None,
    max_total_power_w: Optional[float] = None,
    target_ut: Optional[float] = None,
    starts: int = 8,
    seed: int = 1,
    pulse: Optional[Pulse] = None,
    tr_ms: Optional[float] = None,
    target_flip_deg: Optional[float] = None,
    pareto: Optional[int] = None,
    net_slices: Optional[int] = None,
    net_gradient: Optional[str] = None,
    device: str = "cpu",
    out: Optional[_Path] = None,
) -> dict[str, Any]:
    """RF shim of `b1sar optimize --fields` on f: the dict of `optimize --json` (objective, limits,
    psar10g_exact_w_per_kg, whole_body_sar_w_per_kg, exact_within_limit, safety_factor, pareto, ...)
    plus "drive" (complex128 [ch], sqrt(W)) for a static shim, or "drives" (complex128
    [sub-pulse, ch]) and "optimized_pulse" (Pulse) for per-subpulse shims of `pulse` (with tr_ms).
    roi: tissue name; roi_mask: bool/uint8 [z, y, x]. sar_limit in W/kg (default 10) on the
    predictor's estimate x its safety factor; target_ut: mean |B1+| (µT) in the ROI. With out, the
    CLI's files are written there and listed in "outputs". An infeasible result is returned with
    "feasible": False; bad input raises ValueError."""

class Model:
    """A trained network (the cGAN generator with its settings and safety factors)."""

    @staticmethod
    def load(dir: _Path, device: str = "cpu") -> "Model":
        """A model folder from `b1sar train` (e.g. examples/data/model)."""
    def predict(
        self, f: FieldSet, s: _C, all_slices: bool = False, slice: Optional[int] = None, seed: int = 0
    ) -> dict[str, Any]:
        """The network's SAR10g of drive s (complex [ch], sqrt(W)): the dict of
        `b1sar predict --json` plus "maps" (float64 [slice, y, x], W/kg). The raw prediction is
        not a bound; "psar10g_bound_w_per_kg" applies the model's safety factor."""
