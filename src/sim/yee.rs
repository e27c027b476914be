//! The FDTD engine: a Yee grid with lossy dielectric media, a convolutional PML (CPML, Roden & Gedney
//! 2000, kappa = 1 with a CFS alpha) backed by PEC walls, lumped resistive ports and current sheets.
//!
//! Layout: every field component is an f32 array over the same [z, y, x] index space (x fastest, the
//! project-wide order). Component positions in a cell (i = x, j = y, k = z): Ex (i+1/2, j, k),
//! Ey (i, j+1/2, k), Ez (i, j, k+1/2), Hx (i, j+1/2, k+1/2), Hy (i+1/2, j, k+1/2), Hz (i+1/2, j+1/2, k).
//! E lives at integer time steps n dt, H at (n + 1/2) dt. E on the outermost cell layer is held at zero
//! (PEC walls behind the PML). Units: SI (V/m, A/m, s, m, S/m).
//! The updates run over contiguous x-rows, in parallel over z-planes (rayon).

use rayon::prelude::*;

/// Vacuum permittivity (F/m).
pub const EPS0: f64 = 8.854_187_812_8e-12;
/// Vacuum permeability (H/m).
pub const MU0: f64 = 1.256_637_062_12e-6;
/// Speed of light (m/s).
pub const C0: f64 = 299_792_458.0;

/// The largest stable time step times `courant` (< 1), shortened so that one period of `freq_hz`
/// is a whole number of steps (exact single-frequency DFTs); returns (dt, steps per period).
pub fn time_step(d: [f64; 3], courant: f64, freq_hz: f64) -> (f64, usize) {
    let dt_max = courant / (C0 * (d.iter().map(|v| 1.0 / (v * v)).sum::<f64>()).sqrt());
    let period = 1.0 / freq_hz;
    let steps = (period / dt_max).ceil() as usize;
    (period / steps as f64, steps)
}

/// A thin-wire correction: (H component, H cell, E component, E cell, coefficient).
type ThinEntry = (usize, usize, usize, usize, f32);

/// A lumped port on one E edge: a resistor in series with a voltage source (zero for a matched
/// termination). The port voltage is V = -E_axis d_axis, so a positive source drives current in the
/// +axis direction through the edge.
#[derive(Clone, Debug)]
pub struct Port {
    /// E component (0 x, 1 y, 2 z) of the edge.
    pub axis: usize,
    /// Flat index of the edge's cell.
    pub cell: usize,
    /// Series resistance (ohm).
    pub resistance_ohm: f64,
    /// Whether this port carries the source.
    pub driven: bool,
}

/// A lumped inductor on one E edge (the "fractionated" loading of a dipole arm): a current
/// I (A, +axis) through the edge with dI/dt = E d_axis / L, entering Ampère's law as the current
/// density I / (cell face area). Explicit leapfrog (I at half steps, like H); stable while the
/// edge's own LC frequency resolves the time step, which [`Yee::add_inductor`] checks.
#[derive(Clone, Debug)]
pub struct Inductor {
    /// E component (0 x, 1 y, 2 z) of the edge.
    pub axis: usize,
    /// Flat index of the edge's cell.
    pub cell: usize,
    /// Inductance (H).
    pub inductance_h: f64,
    /// Current (A, +axis) at the half step after the current E.
    current_a: f64,
}

/// CPML state of one slab (one face): coefficients along its axis and psi over the slab box,
/// stored in memory order ([z][y][x] of the box) so the correction streams through memory.
struct Cpml {
    axis: usize,
    inv_d: f32,
    /// Box [lo, hi) (x, y, z) of the slab.
    lo: [usize; 3],
    hi: [usize; 3],
    be: Vec<f32>,
    ae: Vec<f32>,
    bh: Vec<f32>,
    ah: Vec<f32>,
    /// psi for the two transverse components (b = axis+1, c = axis+2); accessed through the
    /// pointers below, these fields own the buffers.
    #[allow(dead_code)]
    psi_e: [Vec<f32>; 2],
    #[allow(dead_code)]
    psi_h: [Vec<f32>; 2],
    /// Raw pointers into the psi buffers (stable: the vectors never grow), so per-plane corrections
    /// can run concurrently on distinct planes through a shared reference.
    psi_e_ptr: [Shared; 2],
    psi_h_ptr: [Shared; 2],
}

/// A raw pointer shared across rayon tasks that write disjoint elements.
#[derive(Clone, Copy)]
struct Shared(*mut f32);
// SAFETY: used only where each task writes a disjoint set of indices (one plane per task).
unsafe impl Send for Shared {}
unsafe impl Sync for Shared {}

/// The simulation state.
pub struct Yee {
    /// Cells along x, y, z.
    pub n: [usize; 3],
    /// Cell sizes along x, y, z (m).
    pub d: [f64; 3],
    /// Time step (s).
    pub dt: f64,
    /// E components (V/m).
    pub e: [Vec<f32>; 3],
    /// H components (A/m).
    pub h: [Vec<f32>; 3],
    ca: [Vec<f32>; 3],
    cb: [Vec<f32>; 3],
    cpml: Vec<Cpml>,
    ports: Vec<Port>,
    inductors: Vec<Inductor>,
    /// Thin-wire corrections per z-plane: (H component, H cell, E component, E cell, coefficient).
    thin: Vec<Vec<ThinEntry>>,
    /// Steps taken.
    pub step: u64,
}

impl Yee {
    /// A grid of `n` = [nx, ny, nz] cells of size `d` (m), vacuum, with a CPML of `npml[a]` cells on
    /// both faces of axis a (0: PEC wall only) and time step `dt` (s; see [`time_step`]).
    pub fn new(n: [usize; 3], d: [f64; 3], npml: [usize; 3], dt: f64) -> Self {
        let len = n[0] * n[1] * n[2];
        let cb0 = (dt / EPS0) as f32;
        let mut s = Yee {
            n,
            d,
            dt,
            e: std::array::from_fn(|_| vec![0.0; len]),
            h: std::array::from_fn(|_| vec![0.0; len]),
            ca: std::array::from_fn(|_| vec![1.0; len]),
            cb: std::array::from_fn(|_| vec![cb0; len]),
            cpml: Vec::new(),
            ports: Vec::new(),
            inductors: Vec::new(),
            thin: Vec::new(),
            step: 0,
        };
        for axis in 0..3 {
            if npml[axis] > 0 {
                for high in [false, true] {
                    s.cpml
                        .push(Cpml::new(axis, high, n, d[axis], dt, npml[axis]));
                }
            }
        }
        s
    }

    /// Periodic boundary along y or z for H (call after [`Yee::step_h`]): layer 0 is a ghost copy of
    /// layer n - 2, so the period is the n - 2 interior layers 1..=n-2.
    pub fn wrap_h(&mut self, axis: usize) {
        let (s, n) = (self.strides()[axis], self.n[axis]);
        for comp in &mut self.h {
            copy_layer(comp, self.n, axis, s, n - 2, 0);
        }
    }

    /// Periodic boundary along y or z for E (call after [`Yee::step_e`]): layer n - 1 is a ghost copy
    /// of layer 1.
    pub fn wrap_e(&mut self, axis: usize) {
        let (s, n) = (self.strides()[axis], self.n[axis]);
        for comp in &mut self.e {
            copy_layer(comp, self.n, axis, s, 1, n - 1);
        }
    }

    /// Strides of the x, y, z axes in the flat index.
    #[inline]
    pub fn strides(&self) -> [usize; 3] {
        [1, self.n[0], self.n[0] * self.n[1]]
    }

    /// Flat index of cell (x, y, z).
    #[inline]
    pub fn idx(&self, x: usize, y: usize, z: usize) -> usize {
        (z * self.n[1] + y) * self.n[0] + x
    }

    /// Number of cells.
    pub fn len(&self) -> usize {
        self.n.iter().product()
    }

    /// Always false.
    pub fn is_empty(&self) -> bool {
        false
    }

    /// Set the medium of E component `comp` at cell `i`: relative permittivity and conductivity (S/m)
    /// (semi-implicit conductivity update).
    pub fn set_medium(&mut self, comp: usize, i: usize, eps_r: f64, sigma: f64) {
        let eps = eps_r * EPS0;
        let loss = sigma * self.dt / (2.0 * eps);
        self.ca[comp][i] = ((1.0 - loss) / (1.0 + loss)) as f32;
        self.cb[comp][i] = ((self.dt / eps) / (1.0 + loss)) as f32;
    }

    /// Make E component `comp` at cell `i` a perfect conductor (always zero).
    pub fn set_pec(&mut self, comp: usize, i: usize) {
        self.ca[comp][i] = 0.0;
        self.cb[comp][i] = 0.0;
        self.e[comp][i] = 0.0;
    }

    /// Make the E edges `cells` along `axis` a thin PEC wire of radius `radius_m` (Umashankar &
    /// Taflove's thin-wire model, Taflove & Hagness 2005, §10.3): the H components circling the
    /// wire see the logarithmic near field of a wire of that radius, 2 / (d ln(d / r0)) in place of
    /// 1 / d in the difference across the wire. Without it a line of PEC edges behaves as a wire of
    /// radius about 0.135 d, which is thick for coarse cells. The radius must be below d / 2.
    pub fn add_thin_wire(&mut self, axis: usize, cells: &[usize], radius_m: f64) {
        let (a, b, c, s, fb, fc) = self.thin_weights(axis, radius_m);
        for &cell in cells {
            self.set_pec(a, cell);
            // (curl E)_c contains +d_b E_a and (curl E)_b contains -d_c E_a; E_a on the wire is zero,
            // so the plain update used +-E_a(neighbour) / d; correct it to the thin-wire weight.
            self.push_thin(
                a,
                [
                    (c, cell, cell + s[b], fb),
                    (c, cell - s[b], cell - s[b], -fb),
                    (b, cell, cell + s[c], -fc),
                    (b, cell - s[c], cell - s[c], fc),
                ],
            );
        }
    }

    /// Axes (a, b, c), strides and the thin-wire corrections (dt / mu0) (2 / ln(d / r0) - 1) / d
    /// across axes b and c of a wire along `axis`; allocates the per-plane correction lists.
    fn thin_weights(
        &mut self,
        axis: usize,
        radius_m: f64,
    ) -> (usize, usize, usize, [usize; 3], f32, f32) {
        let (b, c) = ((axis + 1) % 3, (axis + 2) % 3);
        if self.thin.is_empty() {
            self.thin = vec![Vec::new(); self.n[2]];
        }
        let ch = self.dt / MU0;
        let factor = |d: f64| (ch * (2.0 / (d / radius_m).ln() - 1.0) / d) as f32;
        (
            axis,
            b,
            c,
            self.strides(),
            factor(self.d[b]),
            factor(self.d[c]),
        )
    }

    /// Add corrections (H component, H cell, E cell, coefficient) for E component `a`.
    fn push_thin<const N: usize>(&mut self, a: usize, entries: [(usize, usize, usize, f32); N]) {
        let sz = self.strides()[2];
        for (hc, hcell, ecell, coef) in entries {
            self.thin[hcell / sz].push((hc, hcell, a, ecell, coef));
        }
    }

    /// Give a non-PEC edge on a thin wire (its feed gap or a lumped element) the thin wire's H
    /// weighting: the circling H sees the logarithmic near field of the filament current through the
    /// edge, so the correction of [`Yee::add_thin_wire`] applies to the difference of E along the
    /// axis between the neighbour and this edge (both non-zero here).
    pub fn add_thin_gap(&mut self, axis: usize, cell: usize, radius_m: f64) {
        let (a, b, c, s, fb, fc) = self.thin_weights(axis, radius_m);
        self.push_thin(
            a,
            [
                (c, cell, cell + s[b], fb),
                (c, cell, cell, -fb),
                (c, cell - s[b], cell, fb),
                (c, cell - s[b], cell - s[b], -fb),
                (b, cell, cell + s[c], -fc),
                (b, cell, cell, fc),
                (b, cell - s[c], cell, -fc),
                (b, cell - s[c], cell - s[c], fc),
            ],
        );
    }

    /// Add a lumped resistive port (Taflove & Hagness 2005, §15.9). Set the edge's medium first.
    pub fn add_port(&mut self, p: Port) {
        let (i, c) = (p.cell, p.axis);
        // From ca = (1 - l)/(1 + l), cb = (dt/eps)/(1 + l) with l = sigma dt / (2 eps):
        let (ca, cb) = (self.ca[c][i] as f64, self.cb[c][i] as f64);
        let l = (1.0 - ca) / (1.0 + ca);
        let dt_eps = cb * (1.0 + l);
        let area = self.d[(c + 1) % 3] * self.d[(c + 2) % 3];
        let beta = dt_eps * self.d[c] / (2.0 * p.resistance_ohm * area);
        self.ca[c][i] = ((1.0 - l - beta) / (1.0 + l + beta)) as f32;
        self.cb[c][i] = (dt_eps / (1.0 + l + beta)) as f32;
        self.ports.push(p);
    }

    /// The smallest inductance (H) an edge along `axis` of this grid can carry stably: the edge's
    /// own resonance omega_0 = 1 / sqrt(L C_edge), C_edge = eps0 A / d, must satisfy omega_0 dt <= 1
    /// (half the leapfrog limit of 2, leaving room for the coupling to the grid).
    pub fn min_inductance_h(&self, axis: usize) -> f64 {
        let area = self.d[(axis + 1) % 3] * self.d[(axis + 2) % 3];
        self.dt * self.dt * self.d[axis] / (EPS0 * area)
    }

    /// Put a lumped inductor of `inductance_h` (H) on the E edge `cell` along `axis` (in air or on
    /// a wire edge, which it replaces). Errors below [`Yee::min_inductance_h`].
    pub fn add_inductor(
        &mut self,
        axis: usize,
        cell: usize,
        inductance_h: f64,
    ) -> crate::error::Result<()> {
        let min = self.min_inductance_h(axis);
        if !(inductance_h.is_finite() && inductance_h >= min) {
            return Err(crate::error::Error::invalid(
                "lumped inductor",
                format!(
                    "an inductance >= {:.2} nH (stability at this cell size and time step)",
                    min * 1e9
                ),
                format!("{:.3} nH", inductance_h * 1e9),
            ));
        }
        // Vacuum edge coefficients: the wire's PEC (if any) is lifted.
        self.ca[axis][cell] = 1.0;
        self.cb[axis][cell] = (self.dt / EPS0) as f32;
        self.inductors.push(Inductor {
            axis,
            cell,
            inductance_h,
            current_a: 0.0,
        });
        Ok(())
    }

    /// The lumped inductors.
    pub fn inductors(&self) -> &[Inductor] {
        &self.inductors
    }

    /// The ports.
    pub fn ports(&self) -> &[Port] {
        &self.ports
    }

    fn ptrs(v: &mut [Vec<f32>; 3]) -> [Shared; 3] {
        [
            Shared(v[0].as_mut_ptr()),
            Shared(v[1].as_mut_ptr()),
            Shared(v[2].as_mut_ptr()),
        ]
    }

    /// H update of z-plane `k` (main scheme, no PML terms).
    /// SAFETY: `h` points at this grid's H buffers; no other task may touch plane `k` of H meanwhile.
    unsafe fn h_plane(&self, k: usize, h: [Shared; 3]) {
        let [nx, ny, nz] = self.n;
        if k + 1 >= nz {
            return;
        }
        let [_, sy, sz] = self.strides();
        let ch = (self.dt / MU0) as f32;
        let [idx, idy, idz] = self.d.map(|v| (1.0 / v) as f32);
        let (ex, ey, ez) = (&self.e[0], &self.e[1], &self.e[2]);
        for j in 0..ny - 1 {
            let g = k * sz + j * nx;
            // Row slices let the compiler drop bounds checks and vectorise along x.
            let (ex0, ex_y, ex_z) = (
                &ex[g..g + nx],
                &ex[g + sy..g + sy + nx],
                &ex[g + sz..g + sz + nx],
            );
            let (ey0, ey_z) = (&ey[g..g + nx], &ey[g + sz..g + sz + nx]);
            let (ez0, ez_y) = (&ez[g..g + nx], &ez[g + sy..g + sy + nx]);
            // SAFETY: row g..g+nx of plane k, owned by this task (caller's contract).
            let (hxr, hyr, hzr) = unsafe {
                (
                    std::slice::from_raw_parts_mut(h[0].0.add(g), nx),
                    std::slice::from_raw_parts_mut(h[1].0.add(g), nx),
                    std::slice::from_raw_parts_mut(h[2].0.add(g), nx),
                )
            };
            for i in 0..nx - 1 {
                hxr[i] -= ch * ((ez_y[i] - ez0[i]) * idy - (ey_z[i] - ey0[i]) * idz);
                hyr[i] -= ch * ((ex_z[i] - ex0[i]) * idz - (ez0[i + 1] - ez0[i]) * idx);
                hzr[i] -= ch * ((ey0[i + 1] - ey0[i]) * idx - (ex_y[i] - ex0[i]) * idy);
            }
        }
    }

    /// E update of z-plane `k` (main scheme, no PML terms).
    /// SAFETY: `e` points at this grid's E buffers; no other task may touch plane `k` of E meanwhile.
    unsafe fn e_plane(&self, k: usize, e: [Shared; 3]) {
        let [nx, ny, nz] = self.n;
        if k == 0 || k + 1 >= nz {
            return;
        }
        let [_, sy, sz] = self.strides();
        let [idx, idy, idz] = self.d.map(|v| (1.0 / v) as f32);
        let (hx, hy, hz) = (&self.h[0], &self.h[1], &self.h[2]);
        let [cax, cay, caz] = &self.ca;
        let [cbx, cby, cbz] = &self.cb;
        for j in 1..ny - 1 {
            let g = k * sz + j * nx;
            let (hx0, hx_y, hx_z) = (
                &hx[g..g + nx],
                &hx[g - sy..g - sy + nx],
                &hx[g - sz..g - sz + nx],
            );
            let (hy0, hy_z) = (&hy[g..g + nx], &hy[g - sz..g - sz + nx]);
            let (hz0, hz_y) = (&hz[g..g + nx], &hz[g - sy..g - sy + nx]);
            let (ca_x, ca_y, ca_z) = (&cax[g..g + nx], &cay[g..g + nx], &caz[g..g + nx]);
            let (cb_x, cb_y, cb_z) = (&cbx[g..g + nx], &cby[g..g + nx], &cbz[g..g + nx]);
            // SAFETY: row g..g+nx of plane k, owned by this task (caller's contract).
            let (exr, eyr, ezr) = unsafe {
                (
                    std::slice::from_raw_parts_mut(e[0].0.add(g), nx),
                    std::slice::from_raw_parts_mut(e[1].0.add(g), nx),
                    std::slice::from_raw_parts_mut(e[2].0.add(g), nx),
                )
            };
            for i in 1..nx - 1 {
                exr[i] = ca_x[i] * exr[i]
                    + cb_x[i] * ((hz0[i] - hz_y[i]) * idy - (hy0[i] - hy_z[i]) * idz);
                eyr[i] = ca_y[i] * eyr[i]
                    + cb_y[i] * ((hx0[i] - hx_z[i]) * idz - (hz0[i] - hz0[i - 1]) * idx);
                ezr[i] = ca_z[i] * ezr[i]
                    + cb_z[i] * ((hy0[i] - hy0[i - 1]) * idx - (hx0[i] - hx_y[i]) * idy);
            }
        }
    }

    /// H of plane k: main update plus every CPML slab's correction.
    /// SAFETY: as [`Yee::h_plane`].
    unsafe fn h_plane_full(&self, k: usize, h: [Shared; 3]) {
        let ch = (self.dt / MU0) as f32;
        unsafe {
            self.h_plane(k, h);
            if let Some(list) = self.thin.get(k) {
                for &(hc, hcell, ec, ecell, coef) in list {
                    // SAFETY: hcell lies on plane k (grouped by plane at construction).
                    *h[hc].0.add(hcell) += coef * self.e[ec][ecell];
                }
            }
            for p in &self.cpml {
                p.h_plane(k, h, &self.e, self.n, ch);
            }
        }
    }

    /// E of plane k: main update plus every CPML slab's correction.
    /// SAFETY: as [`Yee::e_plane`].
    unsafe fn e_plane_full(&self, k: usize, e: [Shared; 3]) {
        unsafe {
            self.e_plane(k, e);
            for p in &self.cpml {
                p.e_plane(k, e, &self.h, &self.cb, self.n);
            }
        }
    }

    /// Advance H from (n - 1/2) dt to (n + 1/2) dt.
    pub fn step_h(&mut self) {
        let h = Self::ptrs(&mut self.h);
        let this = &*self;
        // SAFETY: each task updates one distinct z-plane of H.
        (0..this.n[2])
            .into_par_iter()
            .for_each(|k| unsafe { this.h_plane_full(k, h) });
    }

    /// Advance E from n dt to (n + 1) dt. `source_v` is the source voltage of driven ports at
    /// (n + 1/2) dt; `sheet` an optional current sheet (component, x index of the plane, current
    /// density in A/m^2 at (n + 1/2) dt) spanning the whole y-z plane.
    pub fn step_e(&mut self, source_v: f64, sheet: Option<(usize, usize, f64)>) {
        let e = Self::ptrs(&mut self.e);
        let this = &*self;
        // SAFETY: each task updates one distinct z-plane of E.
        (0..this.n[2])
            .into_par_iter()
            .for_each(|k| unsafe { this.e_plane_full(k, e) });
        self.sources(source_v, sheet);
    }

    /// Both half steps in one sweep over z-planes (H of plane k, then E of plane k, which needs H of
    /// planes k and k - 1), so each plane's fields are reused from cache instead of read twice.
    /// Identical to [`Yee::step_h`] followed by [`Yee::step_e`]. The z range is split into one chunk
    /// per thread; the first E plane of each chunk needs the previous chunk's last H plane, so those
    /// planes are updated after all chunks finish.
    pub fn step(&mut self, source_v: f64, sheet: Option<(usize, usize, f64)>) {
        let nz = self.n[2];
        let threads = rayon::current_num_threads().max(1);
        let per = nz.div_ceil(threads).max(2);
        let chunks: Vec<(usize, usize)> = (0..nz)
            .step_by(per)
            .map(|z0| (z0, (z0 + per).min(nz)))
            .collect();
        let (h, e) = (Self::ptrs(&mut self.h), Self::ptrs(&mut self.e));
        let this = &*self;
        // SAFETY: chunks are disjoint ranges of planes, each run in order by one task. H of plane k
        // reads E of planes k and k + 1, not yet updated (E of k + 1 is later in this chunk or the
        // deferred first plane of the next chunk); E of plane k > z0 reads H of k and k - 1, both
        // already updated in this chunk.
        chunks.par_iter().for_each(|&(z0, z1)| unsafe {
            for k in z0..z1 {
                this.h_plane_full(k, h);
                if k > z0 {
                    this.e_plane_full(k, e);
                }
            }
        });
        // SAFETY: distinct planes; every H plane is final now.
        chunks
            .par_iter()
            .for_each(|&(z0, _)| unsafe { this.e_plane_full(z0, e) });
        self.sources(source_v, sheet);
    }

    fn sources(&mut self, source_v: f64, sheet: Option<(usize, usize, f64)>) {
        for p in &self.ports {
            if p.driven {
                let area = self.d[(p.axis + 1) % 3] * self.d[(p.axis + 2) % 3];
                let cb = self.cb[p.axis][p.cell] as f64;
                self.e[p.axis][p.cell] -= (cb * source_v / (p.resistance_ohm * area)) as f32;
            }
        }
        // E^{n+1} gets -cb J^{n+1/2}; then I^{n+3/2} = I^{n+1/2} + dt d E^{n+1} / L.
        for l in &mut self.inductors {
            let (c, i) = (l.axis, l.cell);
            let area = self.d[(c + 1) % 3] * self.d[(c + 2) % 3];
            let cb = self.cb[c][i] as f64;
            self.e[c][i] -= (cb * l.current_a / area) as f32;
            l.current_a += self.dt * self.d[c] * self.e[c][i] as f64 / l.inductance_h;
        }
        if let Some((comp, xp, j)) = sheet {
            let [nx, ny, nz] = self.n;
            for k in 1..nz - 1 {
                for y in 1..ny - 1 {
                    let i = (k * ny + y) * nx + xp;
                    self.e[comp][i] -= (self.cb[comp][i] as f64 * j) as f32;
                }
            }
        }
        self.step += 1;
    }
    /// Voltage across a port's edge, V = -E d (V), at the time of the current E.
    pub fn port_voltage(&self, p: &Port) -> f64 {
        -(self.e[p.axis][p.cell] as f64) * self.d[p.axis]
    }

    /// Current through a port's edge in the +axis direction (A): the loop integral of H around the
    /// edge (Ampère), at the time of the current H.
    pub fn port_current(&self, p: &Port) -> f64 {
        let s = self.strides();
        let i = p.cell;
        let (b, c) = ((p.axis + 1) % 3, (p.axis + 2) % 3);
        // (curl H)_a = d_b H_c - d_c H_b, integrated over the edge's dual face.
        let hc = (self.h[c][i] - self.h[c][i - s[b]]) as f64 * self.d[c];
        let hb = (self.h[b][i] - self.h[b][i - s[c]]) as f64 * self.d[b];
        hc - hb
    }
}

/// Copy layer `from` to layer `to` along `axis` (stride `s`).
fn copy_layer(v: &mut [f32], n: [usize; 3], axis: usize, s: usize, from: usize, to: usize) {
    let st = [1, n[0], n[0] * n[1]];
    let (b, c) = ((axis + 1) % 3, (axis + 2) % 3);
    for w in 0..n[c] {
        for u in 0..n[b] {
            let base = u * st[b] + w * st[c];
            v[base + to * s] = v[base + from * s];
        }
    }
}

impl Cpml {
    fn new(axis: usize, high: bool, n: [usize; 3], d: f64, dt: f64, npml: usize) -> Self {
        let na = n[axis];
        let m = 3.0;
        let eta0 = (MU0 / EPS0).sqrt();
        // Optimal grading for polynomial order m (Taflove & Hagness 2005, §7.11).
        let sigma_max = 0.8 * (m + 1.0) / (eta0 * d);
        let alpha_max = 0.05;
        // Depth into the PML (0 at the interface, 1 at the wall) of a position p (in cells).
        let depth = |p: f64| -> f64 {
            let u = if high {
                (p - (na as f64 - 1.0 - npml as f64)) / npml as f64
            } else {
                (npml as f64 - p) / npml as f64
            };
            u.clamp(0.0, 1.0)
        };
        let coef = |p: f64| -> (f32, f32) {
            let u = depth(p);
            if u <= 0.0 {
                return (1.0, 0.0);
            }
            let sigma = sigma_max * u.powf(m);
            let alpha = alpha_max * (1.0 - u);
            let b = (-(sigma + alpha) * dt / EPS0).exp();
            let a = sigma / (sigma + alpha) * (b - 1.0);
            (b as f32, a as f32)
        };
        // Positions along the axis where E or H is stretched.
        let (p0, p1) = if high {
            (na - 1 - npml, na)
        } else {
            (0, npml + 1)
        };
        let mut lo = [0; 3];
        let mut hi = n;
        lo[axis] = p0;
        hi[axis] = p1;
        let len = p1 - p0;
        let (mut be, mut ae, mut bh, mut ah) = (
            vec![1.0; len],
            vec![0.0; len],
            vec![1.0; len],
            vec![0.0; len],
        );
        for q in 0..len {
            let p = (p0 + q) as f64;
            (be[q], ae[q]) = coef(p);
            (bh[q], ah[q]) = coef(p + 0.5);
        }
        let size = (0..3).map(|a| hi[a] - lo[a]).product();
        let mut psi_e = [vec![0.0f32; size], vec![0.0f32; size]];
        let mut psi_h = [vec![0.0f32; size], vec![0.0f32; size]];
        let psi_e_ptr = [Shared(psi_e[0].as_mut_ptr()), Shared(psi_e[1].as_mut_ptr())];
        let psi_h_ptr = [Shared(psi_h[0].as_mut_ptr()), Shared(psi_h[1].as_mut_ptr())];
        Cpml {
            axis,
            inv_d: (1.0 / d) as f32,
            lo,
            hi,
            be,
            ae,
            bh,
            ah,
            psi_e,
            psi_h,
            psi_e_ptr,
            psi_h_ptr,
        }
    }

    /// E correction of z-plane `z` if this slab covers it.
    /// SAFETY: `e` points at the grid's E buffers; plane `z` of E and of this slab's psi is touched
    /// by no other task meanwhile.
    unsafe fn e_plane(
        &self,
        z: usize,
        e: [Shared; 3],
        h: &[Vec<f32>; 3],
        cb: &[Vec<f32>; 3],
        n: [usize; 3],
    ) {
        if z < self.lo[2] || z >= self.hi[2] || z == 0 || z + 1 >= n[2] {
            return;
        }
        unsafe {
            match self.axis {
                0 => self.e_plane_axis::<0>(z, e, h, cb, n),
                1 => self.e_plane_axis::<1>(z, e, h, cb, n),
                _ => self.e_plane_axis::<2>(z, e, h, cb, n),
            }
        }
    }

    /// H correction of z-plane `z` if this slab covers it. SAFETY: as [`Cpml::e_plane`], for H.
    unsafe fn h_plane(&self, z: usize, h: [Shared; 3], e: &[Vec<f32>; 3], n: [usize; 3], ch: f32) {
        if z < self.lo[2] || z >= self.hi[2] || z + 1 >= n[2] {
            return;
        }
        unsafe {
            match self.axis {
                0 => self.h_plane_axis::<0>(z, h, e, n, ch),
                1 => self.h_plane_axis::<1>(z, h, e, n, ch),
                _ => self.h_plane_axis::<2>(z, h, e, n, ch),
            }
        }
    }

    /// E correction of one z-plane of a slab normal to axis `A` (a const so the position lookups
    /// fold away), over contiguous x-rows.
    unsafe fn e_plane_axis<const A: usize>(
        &self,
        z: usize,
        e: [Shared; 3],
        h: &[Vec<f32>; 3],
        cb: &[Vec<f32>; 3],
        n: [usize; 3],
    ) {
        let (b, c) = ((A + 1) % 3, (A + 2) % 3);
        let st = [1, n[0], n[0] * n[1]];
        let s = st[A];
        let (lo, hi) = (self.lo, self.hi);
        let bx = hi[0] - lo[0];
        let plane = bx * (hi[1] - lo[1]);
        let (x0, x1) = (lo[0].max(1), hi[0].min(n[0] - 1));
        let len = x1 - x0;
        let (be, ae, inv) = (&self.be, &self.ae, self.inv_d);
        let (hb, hc, cbb, cbc) = (&h[b], &h[c], &cb[b], &cb[c]);
        let pbase = (z - lo[2]) * plane;
        for y in lo[1].max(1)..hi[1].min(n[1] - 1) {
            let q0 = pbase + (y - lo[1]) * bx + (x0 - lo[0]);
            let i0 = x0 + y * st[1] + z * st[2];
            let (hc0, hc1) = (&hc[i0..i0 + len], &hc[i0 - s..i0 - s + len]);
            let (hb0, hb1) = (&hb[i0..i0 + len], &hb[i0 - s..i0 - s + len]);
            let (cb_b, cb_c) = (&cbb[i0..i0 + len], &cbc[i0..i0 + len]);
            // SAFETY: rows of plane z (caller's contract); b != c, and the two psi buffers differ.
            let (pbr, pcr, ebr, ecr) = unsafe {
                (
                    std::slice::from_raw_parts_mut(self.psi_e_ptr[0].0.add(q0), len),
                    std::slice::from_raw_parts_mut(self.psi_e_ptr[1].0.add(q0), len),
                    std::slice::from_raw_parts_mut(e[b].0.add(i0), len),
                    std::slice::from_raw_parts_mut(e[c].0.add(i0), len),
                )
            };
            let pos_row = match A {
                1 => y - lo[1],
                2 => z - lo[2],
                _ => 0,
            };
            for k in 0..len {
                let pos = if A == 0 { x0 - lo[0] + k } else { pos_row };
                let (bb, aa) = (be[pos], ae[pos]);
                // (curl H)_b contains -d_a H_c; (curl H)_c contains +d_a H_b.
                pbr[k] = bb * pbr[k] + aa * (hc0[k] - hc1[k]) * inv;
                pcr[k] = bb * pcr[k] + aa * (hb0[k] - hb1[k]) * inv;
                ebr[k] -= cb_b[k] * pbr[k];
                ecr[k] += cb_c[k] * pcr[k];
            }
        }
    }

    /// H correction of one z-plane of a slab normal to axis `A`.
    unsafe fn h_plane_axis<const A: usize>(
        &self,
        z: usize,
        h: [Shared; 3],
        e: &[Vec<f32>; 3],
        n: [usize; 3],
        ch: f32,
    ) {
        let (b, c) = ((A + 1) % 3, (A + 2) % 3);
        let st = [1, n[0], n[0] * n[1]];
        let s = st[A];
        let (lo, hi) = (self.lo, self.hi);
        let bx = hi[0] - lo[0];
        let plane = bx * (hi[1] - lo[1]);
        // The last H layer along each axis is never updated (it would need E beyond the wall).
        let (x0, x1) = (lo[0], hi[0].min(n[0] - 1));
        let len = x1 - x0;
        let (bh, ah, inv) = (&self.bh, &self.ah, self.inv_d);
        let (eb, ec) = (&e[b], &e[c]);
        let pbase = (z - lo[2]) * plane;
        for y in lo[1]..hi[1].min(n[1] - 1) {
            let q0 = pbase + (y - lo[1]) * bx + (x0 - lo[0]);
            let i0 = x0 + y * st[1] + z * st[2];
            let (ec0, ec1) = (&ec[i0..i0 + len], &ec[i0 + s..i0 + s + len]);
            let (eb0, eb1) = (&eb[i0..i0 + len], &eb[i0 + s..i0 + s + len]);
            // SAFETY: rows of plane z (caller's contract); b != c, and the two psi buffers differ.
            let (pbr, pcr, hbr, hcr) = unsafe {
                (
                    std::slice::from_raw_parts_mut(self.psi_h_ptr[0].0.add(q0), len),
                    std::slice::from_raw_parts_mut(self.psi_h_ptr[1].0.add(q0), len),
                    std::slice::from_raw_parts_mut(h[b].0.add(i0), len),
                    std::slice::from_raw_parts_mut(h[c].0.add(i0), len),
                )
            };
            let pos_row = match A {
                1 => y - lo[1],
                2 => z - lo[2],
                _ => 0,
            };
            for k in 0..len {
                let pos = if A == 0 { x0 - lo[0] + k } else { pos_row };
                let (bb, aa) = (bh[pos], ah[pos]);
                // (curl E)_b contains -d_a E_c; (curl E)_c contains +d_a E_b; H -= ch curl E.
                pbr[k] = bb * pbr[k] + aa * (ec1[k] - ec0[k]) * inv;
                pcr[k] = bb * pcr[k] + aa * (eb1[k] - eb0[k]) * inv;
                hbr[k] += ch * pbr[k];
                hcr[k] -= ch * pcr[k];
            }
        }
    }
}

/// A plain reference implementation of one leapfrog step (no PML, no ports, one thread, bounds-checked
/// indexing): the yardstick of `b1sar bench fdtd` and the oracle of the optimised loops' tests.
pub fn reference_step(g: &mut Yee) {
    let [nx, ny, nz] = g.n;
    let ch = (g.dt / MU0) as f32;
    let [dx, dy, dz] = g.d.map(|v| v as f32);
    let id = |x: usize, y: usize, z: usize| (z * ny + y) * nx + x;
    for z in 0..nz - 1 {
        for y in 0..ny - 1 {
            for x in 0..nx - 1 {
                let i = id(x, y, z);
                g.h[0][i] -= ch
                    * ((g.e[2][id(x, y + 1, z)] - g.e[2][i]) / dy
                        - (g.e[1][id(x, y, z + 1)] - g.e[1][i]) / dz);
                g.h[1][i] -= ch
                    * ((g.e[0][id(x, y, z + 1)] - g.e[0][i]) / dz
                        - (g.e[2][id(x + 1, y, z)] - g.e[2][i]) / dx);
                g.h[2][i] -= ch
                    * ((g.e[1][id(x + 1, y, z)] - g.e[1][i]) / dx
                        - (g.e[0][id(x, y + 1, z)] - g.e[0][i]) / dy);
            }
        }
    }
    for z in 1..nz - 1 {
        for y in 1..ny - 1 {
            for x in 1..nx - 1 {
                let i = id(x, y, z);
                g.e[0][i] = g.ca[0][i] * g.e[0][i]
                    + g.cb[0][i]
                        * ((g.h[2][i] - g.h[2][id(x, y - 1, z)]) / dy
                            - (g.h[1][i] - g.h[1][id(x, y, z - 1)]) / dz);
                g.e[1][i] = g.ca[1][i] * g.e[1][i]
                    + g.cb[1][i]
                        * ((g.h[0][i] - g.h[0][id(x, y, z - 1)]) / dz
                            - (g.h[2][i] - g.h[2][id(x - 1, y, z)]) / dx);
                g.e[2][i] = g.ca[2][i] * g.e[2][i]
                    + g.cb[2][i]
                        * ((g.h[1][i] - g.h[1][id(x - 1, y, z)]) / dx
                            - (g.h[0][i] - g.h[0][id(x, y - 1, z)]) / dy);
            }
        }
    }
    g.step += 1;
}
