//! Python bindings of b1sar: thin wrappers over the library calls the command line makes, with
//! arrays in SI units, channels first and [z, y, x] grids. Errors map to Python exceptions by kind
//! (bad input: `ValueError`; files that cannot be opened: `OSError`; runtime failures:
//! `RuntimeError`); the library returns errors rather than panicking, and the inputs are checked
//! here before any call, so no Rust panic reaches Python. Long calls release the GIL.

use b1sar_core as core;
use core::bloch::Model as BlochModel;
use core::predict::{NetworkSar, SarModelKind, SarModelSpec, predict_drive};
use core::pulse::evaluate::{self, PulseSarOptions};
use core::pulse::report::Method;
use core::pulse::{HardwareLimits, Pulse};
use core::sar::vop::{Margins, VopMethod};
use core::sar::{Q10g, VopSet};
use core::{Drive, FieldSet, Grid};
use ndarray::{Array1, Array3, Array4, Array5};
use num_complex::{Complex32, Complex64};
use numpy::{
    IntoPyArray, PyArray1, PyArray3, PyArray4, PyArray5, PyReadonlyArray1, PyReadonlyArray2,
    PyReadonlyArray3, PyReadonlyArray4, PyReadonlyArray5,
};
use pyo3::exceptions::{PyOSError, PyRuntimeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::PyDict;
use std::path::PathBuf;
use std::sync::Arc;

/// A library error as the Python exception of its kind, with the library's (the CLI's) message.
fn py_err(e: core::Error) -> PyErr {
    let msg = e.to_string();
    match e {
        core::Error::Io { .. } => PyOSError::new_err(msg),
        core::Error::Computation(_) => PyRuntimeError::new_err(msg),
        _ => PyValueError::new_err(msg),
    }
}

fn value_err(input: &str, expected: &str, found: impl std::fmt::Display) -> PyErr {
    py_err(core::Error::invalid(input, expected, found.to_string()))
}

/// A drive from a complex [channel] array (sqrt(W)), checked against `n_ch`.
fn drive(s: &PyReadonlyArray1<'_, Complex64>, n_ch: usize, what: &str) -> PyResult<Drive> {
    let v: Vec<Complex64> = s.as_array().to_vec();
    if v.len() != n_ch {
        return Err(value_err(
            "s",
            &format!("{n_ch} complex amplitudes in sqrt(W), one per channel of {what}"),
            format!("{} values", v.len()),
        ));
    }
    Drive::new(v).map_err(py_err)
}

/// Drives from a complex [n, channel] array.
fn drives(s: &PyReadonlyArray2<'_, Complex64>, n_ch: usize, what: &str) -> PyResult<Vec<Drive>> {
    let a = s.as_array();
    if a.shape()[1] != n_ch {
        return Err(value_err(
            "S",
            &format!("[n, {n_ch}] complex amplitudes in sqrt(W), one column per channel of {what}"),
            format!("shape {:?}", a.shape()),
        ));
    }
    a.rows()
        .into_iter()
        .map(|r| Drive::new(r.to_vec()).map_err(py_err))
        .collect()
}

/// Per-channel B1+ and E fields with tissue properties on one grid (one subject).
#[pyclass(name = "FieldSet", module = "b1sar", frozen)]
struct PyFieldSet {
    inner: Arc<FieldSet>,
}

#[pymethods]
impl PyFieldSet {
    /// FieldSet(b1, sigma, rho, spacing_m, e=None, labels=None, origin_m=(0, 0, 0),
    /// frequency_hz=297.2e6): b1 complex [ch, z, y, x] (T/sqrt(W)), sigma (S/m) and rho (kg/m^3)
    /// [z, y, x], spacing_m (dz, dy, dx) in m, e complex [ch, 3, z, y, x] (V/m per sqrt(W)),
    /// labels uint8 [z, y, x].
    #[new]
    #[pyo3(signature = (b1, sigma, rho, spacing_m, e=None, labels=None, origin_m=(0.0, 0.0, 0.0), frequency_hz=None))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        b1: PyReadonlyArray4<'_, Complex64>,
        sigma: PyReadonlyArray3<'_, f64>,
        rho: PyReadonlyArray3<'_, f64>,
        spacing_m: (f64, f64, f64),
        e: Option<PyReadonlyArray5<'_, Complex64>>,
        labels: Option<PyReadonlyArray3<'_, u8>>,
        origin_m: (f64, f64, f64),
        frequency_hz: Option<f64>,
    ) -> PyResult<Self> {
        let b1 = b1.as_array();
        let s = b1.shape();
        let grid = Grid::new(
            [s[1], s[2], s[3]],
            [spacing_m.0, spacing_m.1, spacing_m.2],
            [origin_m.0, origin_m.1, origin_m.2],
        )
        .map_err(py_err)?;
        let b1p: Array4<Complex32> = b1.mapv(|v| Complex32::new(v.re as f32, v.im as f32));
        let e: Option<Array5<Complex32>> = e.map(|e| {
            e.as_array()
                .mapv(|v| Complex32::new(v.re as f32, v.im as f32))
        });
        let mut meta = core::field::FieldMeta {
            source: "python".into(),
            ..Default::default()
        };
        if let Some(f) = frequency_hz {
            meta.frequency_hz = f;
        }
        let f = FieldSet::new(
            grid,
            b1p,
            e,
            sigma.as_array().to_owned(),
            rho.as_array().to_owned(),
            labels.map(|l| l.as_array().to_owned()),
            meta,
        )
        .map_err(py_err)?;
        Ok(PyFieldSet { inner: Arc::new(f) })
    }

    /// Load a field set (.npz, b1sar's format; see README "File formats").
    #[staticmethod]
    fn load(py: Python<'_>, path: PathBuf) -> PyResult<Self> {
        let f = py.detach(|| FieldSet::load(&path)).map_err(py_err)?;
        Ok(PyFieldSet { inner: Arc::new(f) })
    }

    /// Save as .npz (atomically).
    fn save(&self, py: Python<'_>, path: PathBuf) -> PyResult<()> {
        let f = self.inner.clone();
        py.detach(move || f.save(&path)).map_err(py_err)
    }

    /// B1+ per channel, complex128 [ch, z, y, x], T/sqrt(W).
    #[getter]
    fn b1<'py>(&self, py: Python<'py>) -> Bound<'py, PyArray4<Complex64>> {
        self.inner
            .b1p()
            .mapv(|v| Complex64::new(v.re as f64, v.im as f64))
            .into_pyarray(py)
    }

    /// E per channel, complex128 [ch, 3 (x, y, z), z, y, x], V/m per sqrt(W); None for B1+-only sets.
    #[getter]
    fn e<'py>(&self, py: Python<'py>) -> Option<Bound<'py, PyArray5<Complex64>>> {
        self.inner.e().map(|e| {
            e.mapv(|v| Complex64::new(v.re as f64, v.im as f64))
                .into_pyarray(py)
        })
    }

    /// Conductivity, float64 [z, y, x], S/m.
    #[getter]
    fn sigma<'py>(&self, py: Python<'py>) -> Bound<'py, PyArray3<f64>> {
        self.inner.sigma().clone().into_pyarray(py)
    }

    /// Mass density, float64 [z, y, x], kg/m^3.
    #[getter]
    fn rho<'py>(&self, py: Python<'py>) -> Bound<'py, PyArray3<f64>> {
        self.inner.rho().clone().into_pyarray(py)
    }

    /// Tissue labels, uint8 [z, y, x] (README "Tissue labels"), or None.
    #[getter]
    fn labels<'py>(&self, py: Python<'py>) -> Option<Bound<'py, PyArray3<u8>>> {
        self.inner.labels().map(|l| l.clone().into_pyarray(py))
    }

    /// Voxel size (dz, dy, dx) in m.
    #[getter]
    fn spacing_m(&self) -> (f64, f64, f64) {
        let s = self.inner.grid().spacing_m;
        (s[0], s[1], s[2])
    }

    /// Grid shape (nz, ny, nx).
    #[getter]
    fn shape(&self) -> (usize, usize, usize) {
        let s = self.inner.grid().shape;
        (s[0], s[1], s[2])
    }

    /// Number of transmit channels.
    #[getter]
    fn n_channels(&self) -> usize {
        self.inner.n_channels()
    }

    fn __repr__(&self) -> String {
        let g = self.inner.grid();
        format!(
            "FieldSet({} channels, grid {:?} at {:?} m, E: {})",
            self.inner.n_channels(),
            g.shape,
            g.spacing_m,
            if self.inner.e().is_some() {
                "yes"
            } else {
                "no"
            }
        )
    }
}

/// combine(f, s): the combined B1+ of drive s (complex [ch], sqrt(W)), complex128 [z, y, x] in T
/// (Eq. 1 of Meliadò 2020: sum_n s_n B1+_n).
#[pyfunction]
fn combine<'py>(
    py: Python<'py>,
    f: &PyFieldSet,
    s: PyReadonlyArray1<'py, Complex64>,
) -> PyResult<Bound<'py, PyArray3<Complex64>>> {
    let d = drive(&s, f.inner.n_channels(), "the field set")?;
    let fs = f.inner.clone();
    let b = py.detach(move || fs.combine(&d)).map_err(py_err)?;
    Ok(b.into_pyarray(py))
}

/// Serialise a library report into a Python dict (the object `--json` prints).
fn to_dict<'py, T: serde::Serialize>(py: Python<'py>, r: &T) -> PyResult<Bound<'py, PyDict>> {
    let v = serde_json::to_value(r).map_err(|e| PyRuntimeError::new_err(e.to_string()))?;
    let o = pythonize::pythonize(py, &v).map_err(|e| PyRuntimeError::new_err(e.to_string()))?;
    o.cast_into::<PyDict>()
        .map_err(|e| PyRuntimeError::new_err(e.to_string()))
}

/// sar10g(f, s): SAR10g of drive s (complex [ch], sqrt(W)) from a field set with E, as
/// `b1sar sar --fields --json` reports it: a dict with "map" (float64 [z, y, x], W/kg),
/// "psar10g_w_per_kg", "psar10g_index_zyx", "whole_body_sar_w_per_kg", "voxel_counts" and
/// "output_paths" (empty: nothing written) and "elapsed_s".
#[pyfunction]
fn sar10g<'py>(
    py: Python<'py>,
    f: &PyFieldSet,
    s: PyReadonlyArray1<'py, Complex64>,
) -> PyResult<Bound<'py, PyDict>> {
    let t = std::time::Instant::now();
    let d = drive(&s, f.inner.n_channels(), "the field set")?;
    let fs = f.inner.clone();
    let (map, r) = py
        .detach(move || core::sar::sar10g(&fs, &d))
        .map_err(py_err)?;
    let out = to_dict(py, &r)?;
    out.set_item("output_paths", Vec::<String>::new())?;
    out.set_item("elapsed_s", t.elapsed().as_secs_f64())?;
    out.set_item("map", map.into_pyarray(py))?;
    Ok(out)
}

/// Q10g matrices of a subject: one 10 g-averaged quadratic form per voxel (W/kg per W).
#[pyclass(name = "Q10g", module = "b1sar", frozen)]
struct PyQ10g {
    inner: Arc<Q10g>,
}

#[pymethods]
impl PyQ10g {
    /// The Q10g of a field set with E (IEC/IEEE 62704-1 cubes; releases the GIL).
    #[staticmethod]
    fn from_fields(py: Python<'_>, f: &PyFieldSet) -> PyResult<Self> {
        let fs = f.inner.clone();
        let q = py.detach(move || Q10g::from_fields(&fs)).map_err(py_err)?;
        Ok(PyQ10g { inner: Arc::new(q) })
    }

    /// Load a Q10g file (.npz from `b1sar qmatrix` or `save`).
    #[staticmethod]
    fn load(py: Python<'_>, path: PathBuf) -> PyResult<Self> {
        let q = py.detach(|| Q10g::load(&path)).map_err(py_err)?;
        Ok(PyQ10g { inner: Arc::new(q) })
    }

    /// Save as .npz (atomically).
    fn save(&self, py: Python<'_>, path: PathBuf) -> PyResult<()> {
        let q = self.inner.clone();
        py.detach(move || q.save(&path)).map_err(py_err)
    }

    /// psar(S): exact pSAR10g (W/kg) of each drive, S complex [n, ch] in sqrt(W) -> float64 [n].
    fn psar<'py>(
        &self,
        py: Python<'py>,
        s: PyReadonlyArray2<'py, Complex64>,
    ) -> PyResult<Bound<'py, PyArray1<f64>>> {
        let ds = drives(&s, self.inner.n_channels(), "the Q10g")?;
        let q = self.inner.clone();
        let peaks = py.detach(move || q.psar_batch(&ds)).map_err(py_err)?;
        Ok(Array1::from_iter(peaks.iter().map(|p| p.value_w_per_kg)).into_pyarray(py))
    }

    /// sar_map(s): the SAR10g map of drive s (complex [ch], sqrt(W)), float64 [z, y, x] W/kg.
    fn sar_map<'py>(
        &self,
        py: Python<'py>,
        s: PyReadonlyArray1<'py, Complex64>,
    ) -> PyResult<Bound<'py, PyArray3<f64>>> {
        let d = drive(&s, self.inner.n_channels(), "the Q10g")?;
        let q = self.inner.clone();
        let m: Array3<f64> = py.detach(move || q.sar_map(&d)).map_err(py_err)?;
        Ok(m.into_pyarray(py))
    }

    /// Number of channels.
    #[getter]
    fn n_channels(&self) -> usize {
        self.inner.n_channels()
    }

    /// Largest eigenvalue over all matrices (W/kg per W): the worst-case pSAR10g per watt.
    #[getter]
    fn worst_case_w_per_kg_per_w(&self) -> f64 {
        self.inner.worst_case_w_per_kg_per_w()
    }

    fn __len__(&self) -> usize {
        self.inner.len()
    }

    fn __repr__(&self) -> String {
        format!(
            "Q10g({} matrices, {} channels)",
            self.inner.len(),
            self.inner.n_channels()
        )
    }
}

/// Virtual observation points: an upper bound of pSAR10g from a few matrices.
#[pyclass(name = "VopSet", module = "b1sar", frozen)]
struct PyVopSet {
    inner: Arc<VopSet>,
}

#[pymethods]
impl PyVopSet {
    /// VopSet(matrices, unit="sqrt_w"): a VOP set from complex Hermitian PSD matrices [k, ch, ch]
    /// (W/kg per W for unit "sqrt_w", W/kg per V^2 for "volt"), e.g. another tool's VOPs;
    /// checked as a loaded file is (finite, Hermitian PSD).
    #[new]
    #[pyo3(signature = (matrices, unit="sqrt_w"))]
    fn new(matrices: numpy::PyReadonlyArray3<'_, Complex64>, unit: &str) -> PyResult<Self> {
        let unit = match unit {
            "sqrt_w" => core::units::AmplitudeUnit::SqrtW,
            "volt" => core::units::AmplitudeUnit::Volt,
            u => {
                return Err(value_err(
                    "unit",
                    "\"sqrt_w\" or \"volt\"",
                    format!("{u:?}"),
                ));
            }
        };
        let v = VopSet::from_matrices(matrices.as_array(), unit, 1e-9).map_err(py_err)?;
        Ok(PyVopSet { inner: Arc::new(v) })
    }

    /// The VOP matrices, complex128 [k, ch, ch] (margins included).
    #[getter]
    fn matrices<'py>(&self, py: Python<'py>) -> Bound<'py, numpy::PyArray3<Complex64>> {
        self.inner.matrices().into_pyarray(py)
    }

    /// check_drives(q, n=10000, seed=1): the bound against the exact Q10g on n complex-Gaussian
    /// drives, as `vop --check-drives` reports it: mean and max of bound / exact - 1 and the
    /// smallest bound / exact (>= 1: never under).
    #[pyo3(signature = (q, n=10000, seed=1))]
    fn check_drives<'py>(
        &self,
        py: Python<'py>,
        q: &PyQ10g,
        n: usize,
        seed: u64,
    ) -> PyResult<Bound<'py, PyDict>> {
        let (v, qq) = (self.inner.clone(), q.inner.clone());
        let c = py
            .detach(move || v.check_drives(&qq, n, seed))
            .map_err(py_err)?;
        to_dict(py, &c)
    }

    /// compress(q, epsilon=0.05, method="cc", margins="uniform"): VOPs of a Q10g with
    /// over-estimation at most epsilon x the worst case (as `b1sar vop`).
    #[staticmethod]
    #[pyo3(signature = (q, epsilon=0.05, method="cc", margins="uniform"))]
    fn compress(
        py: Python<'_>,
        q: &PyQ10g,
        epsilon: f64,
        method: &str,
        margins: &str,
    ) -> PyResult<Self> {
        let method = VopMethod::from_name(method).map_err(py_err)?;
        let margins = Margins::from_name(margins).map_err(py_err)?;
        let qq = q.inner.clone();
        let v = py
            .detach(move || VopSet::compress_with(&qq, epsilon, method, margins, &|_, _| {}))
            .map_err(py_err)?;
        Ok(PyVopSet { inner: Arc::new(v) })
    }

    /// Load a VOP set: b1sar's .npz or a scanner SarDataUser.mat.
    #[staticmethod]
    fn load(py: Python<'_>, path: PathBuf) -> PyResult<Self> {
        let v = py.detach(|| VopSet::load(&path)).map_err(py_err)?;
        Ok(PyVopSet { inner: Arc::new(v) })
    }

    /// Save as .npz (atomically).
    fn save(&self, py: Python<'_>, path: PathBuf) -> PyResult<()> {
        let v = self.inner.clone();
        py.detach(move || v.save(&path)).map_err(py_err)
    }

    /// psar(S): the VOP bound of pSAR10g (W/kg) of each drive, S complex [n, ch] in the set's
    /// amplitude unit (sqrt(W) for b1sar's sets, peak volts for scanner files) -> float64 [n].
    fn psar<'py>(
        &self,
        py: Python<'py>,
        s: PyReadonlyArray2<'py, Complex64>,
    ) -> PyResult<Bound<'py, PyArray1<f64>>> {
        let ds = drives(&s, self.inner.n_channels(), "the VOP set")?;
        let v = self.inner.clone();
        let out: Vec<f64> = py
            .detach(move || {
                ds.iter()
                    .map(|d| v.psar(d).map(|p| p.0))
                    .collect::<core::Result<_>>()
            })
            .map_err(py_err)?;
        Ok(Array1::from(out).into_pyarray(py))
    }

    /// Over-estimation margin as a fraction of the worst case (NaN when unknown).
    #[getter]
    fn epsilon(&self) -> f64 {
        self.inner.epsilon
    }

    /// How the set was compressed (e.g. "cc", "greedy per-vop"), None for scanner files.
    #[getter]
    fn method(&self) -> Option<String> {
        self.inner.method.clone()
    }

    /// Number of channels.
    #[getter]
    fn n_channels(&self) -> usize {
        self.inner.n_channels()
    }

    fn __len__(&self) -> usize {
        self.inner.len()
    }

    fn __repr__(&self) -> String {
        format!(
            "VopSet({} VOPs, {} channels, method {:?})",
            self.inner.len(),
            self.inner.n_channels(),
            self.inner.method
        )
    }
}

/// An RF pulse: steps of dt_s with per-channel complex amplitudes (sqrt(W)) and gradients.
#[pyclass(name = "Pulse", module = "b1sar", frozen)]
struct PyPulse {
    inner: Arc<Pulse>,
}

#[pymethods]
impl PyPulse {
    /// load(path, max_amplitude_sqrt_w=40, max_grad_mt_per_m=40, max_slew_t_per_m_per_s=200):
    /// a pulse JSON (see pulses/), checked against the hardware limits as `pulse-sar` does.
    #[staticmethod]
    #[pyo3(signature = (path, max_amplitude_sqrt_w=40.0, max_grad_mt_per_m=40.0, max_slew_t_per_m_per_s=200.0))]
    fn load(
        py: Python<'_>,
        path: PathBuf,
        max_amplitude_sqrt_w: f64,
        max_grad_mt_per_m: f64,
        max_slew_t_per_m_per_s: f64,
    ) -> PyResult<Self> {
        let limits = HardwareLimits {
            max_amplitude_sqrt_w,
            max_grad_t_per_m: max_grad_mt_per_m * 1e-3,
            max_slew_t_per_m_per_s,
        };
        let p = py
            .detach(|| Pulse::load_with(&path, &limits))
            .map_err(py_err)?;
        Ok(PyPulse { inner: Arc::new(p) })
    }

    /// The pulse's name.
    #[getter]
    fn name(&self) -> String {
        self.inner.name.clone()
    }

    /// Step length (s).
    #[getter]
    fn dt_s(&self) -> f64 {
        self.inner.dt_s
    }

    /// Duration (s).
    #[getter]
    fn duration_s(&self) -> f64 {
        self.inner.duration_s()
    }

    /// Number of channels.
    #[getter]
    fn n_channels(&self) -> usize {
        self.inner.n_channels()
    }

    /// RF amplitudes, complex128 [step, channel], sqrt(W).
    #[getter]
    fn rf<'py>(&self, py: Python<'py>) -> Bound<'py, numpy::PyArray2<Complex64>> {
        let p = &self.inner;
        let n = p.len();
        let c = p.n_channels();
        ndarray::Array2::from_shape_fn((n, c), |(k, j)| {
            Complex64::new(p.rf_re[k][j], p.rf_im[k][j])
        })
        .into_pyarray(py)
    }

    fn __len__(&self) -> usize {
        self.inner.len()
    }

    fn __repr__(&self) -> String {
        format!(
            "Pulse({:?}, {} steps x {} us, {} channels)",
            self.inner.name,
            self.inner.len(),
            self.inner.dt_s * 1e6,
            self.inner.n_channels()
        )
    }
}

/// pulse_gen(kind, shims, name=None, duration_ms=2.0, steps=200, tbw=None, sigmas=3.0, dt_us=10.0,
/// spokes=2, k_xy=None, k_points=None, k_radius=3.0, sub_ms=None, slice_mm=5.0, kmax=8.0,
/// alpha=10.0, beta=0.5, u=25.0, v=5.0, max_amplitude_sqrt_w=40.0, max_grad_mt_per_m=40.0,
/// max_slew_t_per_m_per_s=200.0, digits=6): the pulse `b1sar pulse-gen` writes. kind: "spokes",
/// "kt", "spins", "sinc", "gauss" or "hard"; shims: complex [ch] (one shim for every sub-pulse) or
/// [sub-pulse, ch] (spokes, kT-points), peak amplitudes in sqrt(W); k_xy: [[kx, ky], ...] and
/// k_points: [[kx, ky, kz], ...] in cycles/m.
#[pyfunction]
#[pyo3(signature = (kind, shims, name=None, duration_ms=2.0, steps=200, tbw=None, sigmas=3.0, dt_us=10.0, spokes=2, k_xy=None, k_points=None, k_radius=3.0, sub_ms=None, slice_mm=5.0, kmax=8.0, alpha=10.0, beta=0.5, u=25.0, v=5.0, max_amplitude_sqrt_w=40.0, max_grad_mt_per_m=40.0, max_slew_t_per_m_per_s=200.0, digits=6))]
#[allow(clippy::too_many_arguments)]
fn pulse_gen(
    py: Python<'_>,
    kind: &str,
    shims: Bound<'_, PyAny>,
    name: Option<String>,
    duration_ms: f64,
    steps: usize,
    tbw: Option<f64>,
    sigmas: f64,
    dt_us: f64,
    spokes: usize,
    k_xy: Option<Vec<[f64; 2]>>,
    k_points: Option<Vec<[f64; 3]>>,
    k_radius: f64,
    sub_ms: Option<f64>,
    slice_mm: f64,
    kmax: f64,
    alpha: f64,
    beta: f64,
    u: f64,
    v: f64,
    max_amplitude_sqrt_w: f64,
    max_grad_mt_per_m: f64,
    max_slew_t_per_m_per_s: f64,
    digits: i32,
) -> PyResult<PyPulse> {
    use core::pulse::generate::{GenKind, PulseGen};
    let shims: Vec<Drive> = if let Ok(a) = shims.extract::<PyReadonlyArray2<'_, Complex64>>() {
        let n = a.as_array().shape()[1];
        drives(&a, n, "the shims")?
    } else if let Ok(a) = shims.extract::<PyReadonlyArray1<'_, Complex64>>() {
        let n = a.as_array().len();
        vec![drive(&a, n, "the shim")?]
    } else {
        return Err(value_err(
            "shims",
            "a complex128 array [ch] or [sub-pulse, ch] (sqrt(W))",
            "another type or shape",
        ));
    };
    let spec = PulseGen {
        kind: GenKind::from_name(kind).map_err(py_err)?,
        name,
        duration_s: duration_ms * 1e-3,
        steps,
        tbw,
        sigmas,
        dt_s: dt_us * 1e-6,
        spokes,
        k_xy,
        k_points,
        k_radius,
        sub_s: sub_ms.map(|ms| ms * 1e-3),
        slice_m: slice_mm * 1e-3,
        kmax,
        alpha,
        beta,
        u,
        v,
        limits: HardwareLimits {
            max_amplitude_sqrt_w,
            max_grad_t_per_m: max_grad_mt_per_m * 1e-3,
            max_slew_t_per_m_per_s,
        },
        digits,
    };
    let p = py.detach(move || spec.generate(&shims)).map_err(py_err)?;
    Ok(PyPulse { inner: Arc::new(p) })
}

/// tissue_label(name): the label id of a tissue name in a field set's labels (e.g. "prostate").
#[pyfunction]
fn tissue_label(name: &str) -> PyResult<u8> {
    Ok(core::tissue::by_name(name).map_err(py_err)?.label)
}

/// The SAR model of a call, chosen as on the CLI: `predictor` ("exact", "vop", "generic", "net";
/// None: inferred from the files given) with `q`, `vop`, `model` (paths) and `safety_factor`.
fn model_spec(
    predictor: Option<&str>,
    q: Option<PathBuf>,
    vop: Option<PathBuf>,
    model: Option<PathBuf>,
    safety_factor: Option<f64>,
    device: &str,
    drives: core::net::DriveUse,
) -> PyResult<SarModelSpec> {
    let kind = match predictor {
        None => None,
        Some("exact") => Some(SarModelKind::Exact),
        Some("vop") => Some(SarModelKind::Vop),
        Some("generic") => Some(SarModelKind::Generic),
        Some("net") => Some(SarModelKind::Net),
        Some("qnet") => Some(SarModelKind::Qnet),
        Some("none") => Some(SarModelKind::None),
        Some(p) => {
            return Err(value_err(
                "predictor",
                "\"exact\", \"vop\", \"generic\", \"net\", \"qnet\" or \"none\"",
                format!("{p:?}"),
            ));
        }
    };
    Ok(SarModelSpec {
        kind,
        q,
        vop,
        model,
        safety_factor,
        device: device.to_string(),
        drives,
        ..Default::default()
    })
}

/// pulse_sar(p, tr_ms, fields=None, predictor=None, q=None, vop=None, model=None,
/// safety_factor=None, pulses_per_tr=1, scan_duration_s=None, method="covariance", batch=64,
/// slices=None, roi_label=None, bloch="full", device="cpu"): the time-averaged SAR of pulse p
/// repeated every tr_ms, as `b1sar pulse-sar --json` reports it (the same dict: pSAR10g in W/kg,
/// its voxel, the safety factor, the IEC 10 s and 6 min windows and verdicts, the exact
/// reference, whole-body SAR, flip angle in the region). The same defaults and refusals as the CLI
/// (a network model without a safety factor, for example). Releases the GIL.
#[pyfunction]
#[pyo3(signature = (p, tr_ms, fields=None, predictor=None, q=None, vop=None, model=None, safety_factor=None, pulses_per_tr=1, scan_duration_s=None, method="covariance", batch=64, slices=None, roi_label=None, bloch="full", device="cpu"))]
#[allow(clippy::too_many_arguments)]
fn pulse_sar<'py>(
    py: Python<'py>,
    p: &PyPulse,
    tr_ms: f64,
    fields: Option<&PyFieldSet>,
    predictor: Option<&str>,
    q: Option<PathBuf>,
    vop: Option<PathBuf>,
    model: Option<PathBuf>,
    safety_factor: Option<f64>,
    pulses_per_tr: usize,
    scan_duration_s: Option<f64>,
    method: &str,
    batch: usize,
    slices: Option<Vec<usize>>,
    roi_label: Option<String>,
    bloch: &str,
    device: &str,
) -> PyResult<Bound<'py, PyDict>> {
    let t = std::time::Instant::now();
    let method = match method {
        "covariance" => Method::Covariance,
        "per-step" | "per_step" => Method::PerStep,
        m => {
            return Err(value_err(
                "method",
                "\"covariance\" or \"per-step\"",
                format!("{m:?}"),
            ));
        }
    };
    let bloch = match bloch {
        "full" => BlochModel::FullRotation,
        "small-tip" | "small_tip" => BlochModel::SmallTip,
        b => {
            return Err(value_err(
                "bloch",
                "\"full\" or \"small-tip\"",
                format!("{b:?}"),
            ));
        }
    };
    let spec = model_spec(
        predictor,
        q,
        vop,
        model,
        safety_factor,
        device,
        core::net::DriveUse::Any,
    )?;
    let o = PulseSarOptions {
        tr_ms,
        pulses_per_tr,
        scan_duration_s,
        method,
        batch,
        keep_steps: false,
        slices: slices.unwrap_or_default(),
        roi_label,
        bloch,
        off_resonance: None,
    };
    let pulse = p.inner.clone();
    let f = fields.map(|f| f.inner.clone());
    let mut report = py
        .detach(move || -> core::Result<_> {
            evaluate::check(&pulse, &o)?;
            let m = spec.load(f.as_deref())?;
            Ok(evaluate::pulse_sar(&pulse, &m, f.as_deref(), &o)?.report)
        })
        .map_err(py_err)?;
    report.elapsed_s = t.elapsed().as_secs_f64();
    to_dict(py, &report)
}

/// optimize(f, roi=None, roi_mask=None, objective="cv", predictor=None, q=None, vop=None,
/// model=None, safety_factor=None, sar_limit=None, wb_limit=4.0, max_channel_power_w=None,
/// max_total_power_w=None, target_ut=None, starts=8, seed=1, pulse=None, tr_ms=None,
/// target_flip_deg=None, pareto=None, net_slices=None, net_gradient=None, device="cpu", out=None):
/// the RF shim of `b1sar optimize --fields` on field set f, returning the same dict as
/// `optimize --json` (objective, limits, exact pSAR10g and whole-body SAR in W/kg, verdicts, safety
/// factor, Pareto front) plus "drive" (complex128 [ch], sqrt(W)) for a static shim, or "drives"
/// (complex128 [sub-pulse, ch]) and "optimized_pulse" (a Pulse) for per-subpulse shims of `pulse`.
/// roi: a tissue name (e.g. "prostate"); roi_mask: bool or uint8 [z, y, x] on f's grid.
/// objective: "cv", "phase-only", "mls" or "efficiency". sar_limit: W/kg on the model's estimate
/// times its safety factor (default 10). target_ut: mean |B1+| in the ROI (µT). pulse + tr_ms:
/// the limits apply to the time average over the TR. out: a folder for drive.json, report.json and
/// the plots (then "outputs" lists them). An infeasible result is returned with "feasible": False.
/// Releases the GIL.
#[pyfunction]
#[pyo3(signature = (f, roi=None, roi_mask=None, objective="cv", predictor=None, q=None, vop=None, model=None, safety_factor=None, sar_limit=None, wb_limit=core::units::WHOLE_BODY_SAR_LIMIT_W_PER_KG, max_channel_power_w=None, max_total_power_w=None, target_ut=None, starts=8, seed=1, pulse=None, tr_ms=None, target_flip_deg=None, pareto=None, net_slices=None, net_gradient=None, device="cpu", out=None))]
#[allow(clippy::too_many_arguments)]
fn optimize<'py>(
    py: Python<'py>,
    f: &PyFieldSet,
    roi: Option<String>,
    roi_mask: Option<Bound<'py, PyAny>>,
    objective: &str,
    predictor: Option<&str>,
    q: Option<PathBuf>,
    vop: Option<PathBuf>,
    model: Option<PathBuf>,
    safety_factor: Option<f64>,
    sar_limit: Option<f64>,
    wb_limit: f64,
    max_channel_power_w: Option<f64>,
    max_total_power_w: Option<f64>,
    target_ut: Option<f64>,
    starts: usize,
    seed: u64,
    pulse: Option<&PyPulse>,
    tr_ms: Option<f64>,
    target_flip_deg: Option<f64>,
    pareto: Option<usize>,
    net_slices: Option<usize>,
    net_gradient: Option<&str>,
    device: &str,
    out: Option<PathBuf>,
) -> PyResult<Bound<'py, PyDict>> {
    use core::optim::{GradientMethod, RoiSpec, ShimObjective, ShimRequest};
    let roi = match (roi, roi_mask) {
        (Some(name), None) => Some(RoiSpec::Tissue(name)),
        (None, Some(m)) => Some(RoiSpec::Mask(roi_mask_array(&m)?, None)),
        (Some(_), Some(_)) => {
            return Err(value_err(
                "roi | roi_mask",
                "one region of interest",
                "both",
            ));
        }
        (None, None) => None,
    };
    let pulse = match (pulse, tr_ms) {
        (Some(p), Some(tr)) => Some(((*p.inner).clone(), tr * 1e-3)),
        (None, None) => None,
        (Some(_), None) => return Err(value_err("tr_ms", "the TR (ms) of pulse", "None")),
        (None, Some(_)) => return Err(value_err("tr_ms", "a pulse (pulse=)", "no pulse")),
    };
    let net_gradient = match net_gradient {
        None => None,
        Some("autodiff") => Some(GradientMethod::Autodiff),
        Some("central-difference" | "central_difference") => {
            Some(GradientMethod::CentralDifference)
        }
        Some(g) => {
            return Err(value_err(
                "net_gradient",
                "\"autodiff\" or \"central-difference\"",
                format!("{g:?}"),
            ));
        }
    };
    if let Some(l) = sar_limit
        && !(l.is_finite() && l > 0.0)
    {
        return Err(value_err("sar_limit", "a finite value > 0 (W/kg)", l));
    }
    let req = ShimRequest {
        roi,
        objective: ShimObjective::from_name(objective).map_err(py_err)?,
        sar_limit_w_per_kg: sar_limit,
        wb_limit_w_per_kg: wb_limit,
        max_channel_power_w,
        max_total_power_w,
        target_ut,
        starts,
        seed,
        pulse,
        pulse_source: None,
        target_flip_deg,
        pareto,
        net_slices,
        net_gradient,
    };
    let spec = model_spec(
        predictor,
        q,
        vop,
        model,
        safety_factor,
        device,
        core::net::DriveUse::Optimised,
    )?;
    let fs = f.inner.clone();
    let (o, outputs) = py
        .detach(move || -> core::Result<_> {
            core::optim::check_request(&req, spec.kind(), Some(&fs))?;
            let m = spec.load(Some(&fs))?;
            let o = core::optim::shim_fields(&fs, &m, &req, &|_| {})?;
            let outputs = match &out {
                Some(dir) => {
                    core::io::check_output_dir("out", dir, &[])?;
                    let mut paths = o.write_outputs(dir, &fs, m.exact.as_ref())?;
                    core::io::write_json(&dir.join("report.json"), &o.report)?;
                    paths.push(dir.join("report.json"));
                    Some(paths)
                }
                None => None,
            };
            Ok((o, outputs))
        })
        .map_err(py_err)?;
    let d = to_dict(py, &o.report)?;
    d.del_item("trace")?;
    if let Some(paths) = outputs {
        d.set_item("outputs", paths)?;
    }
    if let Some(drive) = &o.drive {
        d.set_item(
            "drive",
            Array1::from(drive.amplitudes().to_vec()).into_pyarray(py),
        )?;
    }
    if let Some((drives, p)) = o.pulse {
        let n_ch = f.inner.n_channels();
        let a = ndarray::Array2::from_shape_fn((drives.len(), n_ch), |(k, j)| {
            drives[k].amplitudes()[j]
        });
        d.set_item("drives", a.into_pyarray(py))?;
        d.set_item("optimized_pulse", PyPulse { inner: Arc::new(p) })?;
    }
    Ok(d)
}

/// A region-of-interest mask from a bool or uint8 numpy array [z, y, x].
fn roi_mask_array(m: &Bound<'_, PyAny>) -> PyResult<Array3<bool>> {
    if let Ok(a) = m.extract::<PyReadonlyArray3<'_, bool>>() {
        return Ok(a.as_array().to_owned());
    }
    if let Ok(a) = m.extract::<PyReadonlyArray3<'_, u8>>() {
        return Ok(a.as_array().mapv(|v| v != 0));
    }
    Err(value_err(
        "roi_mask",
        "a bool or uint8 numpy array [z, y, x] on the field set's grid",
        "another type or shape",
    ))
}

/// A trained network (the cGAN generator with its settings and safety factors).
#[pyclass(name = "Model", module = "b1sar", frozen)]
struct PyModel {
    inner: Arc<NetworkSar>,
}

#[pymethods]
impl PyModel {
    /// load(dir, device="cpu"): a model folder from `b1sar train` (e.g. examples/data/model).
    #[staticmethod]
    #[pyo3(signature = (dir, device="cpu"))]
    fn load(py: Python<'_>, dir: PathBuf, device: &str) -> PyResult<Self> {
        let device = device.to_string();
        let m = py
            .detach(move || -> core::Result<_> {
                let d = core::net::device_by_name(&device)?;
                NetworkSar::load(&dir, &d)
            })
            .map_err(py_err)?;
        Ok(PyModel { inner: Arc::new(m) })
    }

    /// predict(f, s, all_slices=False, slice=None, seed=0): the network's SAR10g of drive s
    /// (complex [ch], sqrt(W)) on subject f, as `b1sar predict --json` reports it, plus "maps"
    /// (float64 [slice, y, x], W/kg, the slices of "slices"). slice: z index (default the prostate
    /// slice); all_slices: every slice the network's input fits. The raw prediction is not a
    /// bound: "psar10g_bound_w_per_kg" applies the model's safety factor.
    #[pyo3(signature = (f, s, all_slices=false, slice=None, seed=0))]
    fn predict<'py>(
        &self,
        py: Python<'py>,
        f: &PyFieldSet,
        s: PyReadonlyArray1<'py, Complex64>,
        all_slices: bool,
        slice: Option<usize>,
        seed: u64,
    ) -> PyResult<Bound<'py, PyDict>> {
        let t = std::time::Instant::now();
        let d = drive(&s, f.inner.n_channels(), "the field set")?;
        let (m, fs) = (self.inner.clone(), f.inner.clone());
        let pr = py
            .detach(move || predict_drive(&m, &fs, &d, slice, all_slices, seed))
            .map_err(py_err)?;
        let out = to_dict(py, &pr.report)?;
        out.set_item("output_paths", Vec::<String>::new())?;
        out.set_item("elapsed_s", t.elapsed().as_secs_f64())?;
        out.set_item("maps", pr.maps.into_pyarray(py))?;
        Ok(out)
    }

    fn __repr__(&self) -> String {
        format!("Model({:?})", self.inner.info.variant)
    }
}

/// The b1sar module.
#[pymodule]
fn b1sar(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<PyFieldSet>()?;
    m.add_class::<PyPulse>()?;
    m.add_class::<PyModel>()?;
    m.add_function(wrap_pyfunction!(pulse_sar, m)?)?;
    m.add_function(wrap_pyfunction!(optimize, m)?)?;
    m.add_function(wrap_pyfunction!(pulse_gen, m)?)?;
    m.add_function(wrap_pyfunction!(tissue_label, m)?)?;
    m.add_class::<PyQ10g>()?;
    m.add_class::<PyVopSet>()?;
    m.add_function(wrap_pyfunction!(combine, m)?)?;
    m.add_function(wrap_pyfunction!(sar10g, m)?)?;
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    Ok(())
}
