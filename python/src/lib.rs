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

/// The SAR model of a call, chosen as on the CLI: `predictor` ("exact", "vop", "generic", "net";
/// None: inferred from the files given) with `q`, `vop`, `model` (paths) and `safety_factor`.
fn model_spec(
    predictor: Option<&str>,
    q: Option<PathBuf>,
    vop: Option<PathBuf>,
    model: Option<PathBuf>,
    safety_factor: Option<f64>,
    device: &str,
) -> PyResult<SarModelSpec> {
    let kind = match predictor {
        None => None,
        Some("exact") => Some(SarModelKind::Exact),
        Some("vop") => Some(SarModelKind::Vop),
        Some("generic") => Some(SarModelKind::Generic),
        Some("net") => Some(SarModelKind::Net),
        Some(p) => {
            return Err(value_err(
                "predictor",
                "\"exact\", \"vop\", \"generic\" or \"net\"",
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
    let spec = model_spec(predictor, q, vop, model, safety_factor, device)?;
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
    m.add_class::<PyQ10g>()?;
    m.add_class::<PyVopSet>()?;
    m.add_function(wrap_pyfunction!(combine, m)?)?;
    m.add_function(wrap_pyfunction!(sar10g, m)?)?;
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    Ok(())
}
