//! Choosing a SAR model: a [`SarModelSpec`] (which model, from which files, with which safety factor)
//! is loaded once into a [`SarModel`], which then gives the [`SarPredictor`] of a subject. Every
//! command that judges drives or pulses (pulse SAR, the optimiser, the demo) goes through it, so the
//! same flags mean the same model everywhere.
//!
//! Safety factors: the network's comes from its model description unless the user gives one (a
//! model without one is refused); the generic subject's must be given; exact and VOP models are 1
//! unless the user asks for more. A user factor must be finite and >= 1: below 1 would lower a
//! bound, which a safety tool never does on request.

use super::{NetworkPredictor, NetworkSar, NoiseDraw};
use crate::error::{Error, Result};
use crate::field::FieldSet;
use crate::net::{DriveUse, SafetyFactor, SafetyFactorSource};
use crate::sar::{Q10g, QuadraticMaps, SarPredictor, VopSet};
use serde::Serialize;
use std::path::PathBuf;

/// Which SAR model judges drives.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SarModelKind {
    /// Exact Q10g of the subject (from a Q10g file, or computed from a field set with E).
    Exact,
    /// VOPs of the subject (a bound).
    Vop,
    /// A generic subject's VOPs with a population safety factor (the conventional approach).
    Generic,
    /// The trained network on the subject's B1+ maps.
    Net,
    /// The quadratic-form network: the subject's Q10g predicted from its B1+ maps.
    Qnet,
    /// No local-SAR model (power limits only; the optimiser).
    None,
}

/// Where a SAR model comes from.
#[derive(Clone, Debug)]
pub struct SarModelSpec {
    /// The model; `None`: the network with `model`, else exact with `q`, VOPs with `vop`, else exact.
    pub kind: Option<SarModelKind>,
    /// Q10g file (exact model; otherwise computed from the field set's E).
    pub q: Option<PathBuf>,
    /// VOP file (.npz, drives in sqrt(W)): the subject's, or the generic subject's.
    pub vop: Option<PathBuf>,
    /// Trained network folder.
    pub model: Option<PathBuf>,
    /// Safety factor given by the user.
    pub safety_factor: Option<f64>,
    /// Device of the network: cpu, wgpu[:i], cuda[:i].
    pub device: String,
    /// Which drives the network's safety factor must cover (`optimize`: optimised shims).
    pub drives: DriveUse,
    /// The field set's file, to name it when a model file does not belong to it.
    pub fields_path: Option<PathBuf>,
}

impl Default for SarModelSpec {
    fn default() -> Self {
        SarModelSpec {
            kind: None,
            q: None,
            vop: None,
            model: None,
            safety_factor: None,
            device: "cpu".into(),
            drives: DriveUse::Any,
            fields_path: None,
        }
    }
}

/// A safety factor as applied: its value and where it came from (`None`: the default 1).
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct AppliedFactor {
    /// The factor.
    pub value: f64,
    /// Its origin; `None` for the default 1 of exact and bounding models.
    pub source: Option<SafetyFactorSource>,
}

impl SarModelKind {
    /// Name of this model's local-SAR limit in an optimisation report.
    pub fn limit_name(self) -> &'static str {
        match self {
            SarModelKind::Exact => "local SAR10g (exact Q10g)",
            SarModelKind::Vop => "local SAR10g (VOPs)",
            SarModelKind::Generic => "local SAR10g (generic-subject VOPs)",
            SarModelKind::Net => "local SAR10g (network)",
            SarModelKind::Qnet => "local SAR10g (quadratic-form network)",
            SarModelKind::None => "none",
        }
    }
}

impl SarModelSpec {
    /// The model this spec names (explicit, or inferred from the files given).
    pub fn kind(&self) -> SarModelKind {
        self.kind.unwrap_or(if self.model.is_some() {
            SarModelKind::Net
        } else if self.q.is_some() {
            SarModelKind::Exact
        } else if self.vop.is_some() {
            SarModelKind::Vop
        } else {
            SarModelKind::Exact
        })
    }

    /// Read the model's files. `fields` is the subject (B1+ for the network, E for the exact Q10g);
    /// its exact Q10g is computed whenever it has E and no Q10g file is given, as the reference
    /// of every model.
    pub fn load(&self, fields: Option<&FieldSet>) -> Result<SarModel> {
        let kind = self.kind();
        if let Some(sf) = self.safety_factor {
            crate::limits::check_safety_factor("--safety-factor", sf)?;
        }
        let fields_name = self
            .fields_path
            .as_ref()
            .map_or("--fields (the field set)".to_string(), |p| {
                format!("--fields {}", p.display())
            });
        let exact = match (&self.q, fields) {
            (Some(p), f) => {
                let q = Q10g::load(p)?;
                // Exact SAR from another subject's or another grid's Q10g is silently wrong.
                if let Some(f) = f {
                    q.check_belongs_to(f, &format!("--q {}", p.display()), &fields_name)?;
                }
                Some(q)
            }
            (None, Some(f)) if f.e().is_some() => Some(Q10g::from_fields(f)?),
            _ => None,
        };
        if kind == SarModelKind::Exact && exact.is_none() {
            return Err(Error::invalid(
                "--q/--fields",
                "for --predictor exact a Q10g file (--q) or a field set with E (or use --predictor vop|generic|net)",
                "neither",
            ));
        }
        let vops = match (&self.vop, kind) {
            (Some(p), SarModelKind::Vop | SarModelKind::Generic) => Some(VopSet::load(p)?),
            (None, SarModelKind::Vop | SarModelKind::Generic) => {
                return Err(Error::usage(
                    "--vop",
                    "--predictor vop|generic needs --vop FILE (a VOP file)",
                ));
            }
            _ => None,
        };
        if let (Some(v), Some(f)) = (&vops, fields)
            && v.n_channels() != f.n_channels()
        {
            return Err(Error::invalid(
                format!(
                    "{}",
                    self.vop.as_ref().expect("VOPs come from --vop").display()
                ),
                format!("VOPs for {} channels (the field set's)", f.n_channels()),
                format!("{}", v.n_channels()),
            ));
        }
        let generic_factor = match (kind, self.safety_factor, &vops) {
            // A VOP file that records a factor (a generic subject's, or a network's predicted
            // VOPs) has it applied as the subject's VOPs too: its bound alone may under-report.
            (SarModelKind::Vop, None, Some(v)) => v.population_factor.as_ref().map(|p| p.value),
            (SarModelKind::Generic, None, Some(v)) => match &v.population_factor {
                Some(p) => Some(p.value),
                None => {
                    return Err(Error::invalid(
                        "--safety-factor",
                        "the generic subject's population safety factor: given with \
                         --safety-factor, or recorded in the VOP file (`b1sar vop \
                         --safety-factor SF --safety-factor-source TEXT`)",
                        "none (the VOP file records none)",
                    ));
                }
            },
            _ => None,
        };
        // VOPs made by b1sar record the fields they came from: say when they are not this
        // subject's (the conventional approach without its population factor).
        let vops_own_subject = match (&vops, fields) {
            (Some(v), Some(f)) if f.e().is_some() => v.fields_hash.map(|h| h == f.sar_hash()),
            _ => None,
        };
        let network = match (&self.model, kind) {
            (Some(dir), SarModelKind::Net) => {
                let device = crate::net::device_by_name(&self.device)?;
                let net = NetworkSar::load(dir, &device)?;
                // A network without a measured safety factor is refused unless the user gives one.
                let sf = net
                    .info
                    .resolve_safety_factor_for(self.safety_factor, self.drives)?;
                Some((net, sf))
            }
            (None, SarModelKind::Net) => {
                return Err(Error::usage(
                    "--model",
                    "--predictor net needs --model DIR (a trained network)",
                ));
            }
            _ => None,
        };
        if matches!(kind, SarModelKind::Net | SarModelKind::Qnet) && fields.is_none() {
            return Err(Error::invalid(
                "--fields",
                "the subject's field set (B1+ maps) for the network",
                "none",
            ));
        }
        let qnet = match (&self.model, kind, fields) {
            (Some(dir), SarModelKind::Qnet, Some(f)) => {
                let device = crate::net::device_by_name(&self.device)?;
                Some(crate::net::qnet::QuadraticNetwork::from_model(
                    dir,
                    f,
                    self.safety_factor,
                    &device,
                )?)
            }
            (None, SarModelKind::Qnet, _) => {
                return Err(Error::usage(
                    "--model",
                    "--predictor qnet needs --model DIR (a trained quadratic-form network)",
                ));
            }
            _ => None,
        };
        Ok(SarModel {
            kind,
            exact,
            vops,
            network,
            qnet,
            user_factor: self.safety_factor,
            generic_factor,
            vops_own_subject,
        })
    }
}

/// A loaded SAR model, with the subject's exact Q10g when it could be had.
pub struct SarModel {
    /// The model.
    pub kind: SarModelKind,
    /// The subject's exact Q10g (the exact model, or the reference of the others).
    pub exact: Option<Q10g>,
    /// The VOPs of `vop` and `generic`.
    pub vops: Option<VopSet>,
    /// The network with its resolved safety factor.
    pub network: Option<(NetworkSar, SafetyFactor)>,
    /// The quadratic-form network's matrices of the subject.
    pub qnet: Option<crate::net::qnet::QuadraticNetwork>,
    user_factor: Option<f64>,
    /// The population safety factor recorded in the generic VOP file, applied when no user factor
    /// is given.
    generic_factor: Option<f64>,
    /// Whether the VOPs were compressed from this subject's fields (`Some(false)`: another
    /// subject's; `None`: unknown, e.g. scanner files or no E to compare).
    pub vops_own_subject: Option<bool>,
}

impl SarModel {
    /// The safety factor the model's estimates are multiplied by, and its origin.
    pub fn factor(&self) -> AppliedFactor {
        if let Some(q) = &self.qnet {
            return AppliedFactor {
                value: q.safety_factor(),
                source: Some(if self.user_factor.is_some() {
                    SafetyFactorSource::User
                } else {
                    SafetyFactorSource::Model
                }),
            };
        }
        match &self.network {
            Some((_, sf)) => AppliedFactor {
                value: sf.value,
                source: Some(sf.source),
            },
            None => match (self.user_factor, self.generic_factor) {
                (Some(u), _) => AppliedFactor {
                    value: u,
                    source: Some(SafetyFactorSource::User),
                },
                (None, Some(g)) => AppliedFactor {
                    value: g,
                    source: Some(SafetyFactorSource::PopulationFile),
                },
                (None, None) => AppliedFactor {
                    value: 1.0,
                    source: None,
                },
            },
        }
    }

    /// A warning for the report when the model is not the subject's own (VOPs of another subject
    /// judged as `--predictor vop`), else `None`.
    pub fn own_subject_warning(&self) -> Option<String> {
        (self.kind == SarModelKind::Vop && self.vops_own_subject == Some(false)).then(|| {
            "the VOPs are not this subject's own (compressed from another field set): their \
             bound is the conventional approach's estimate, which needs a population safety \
             factor (--predictor generic)"
                .to_string()
        })
    }

    /// The model's quadratic form (exact Q10g or VOPs) under the model's name and safety factor;
    /// `None` for the network and `none`.
    pub fn quadratic(&self) -> Option<QuadraticMaps<'_>> {
        let sf = self.factor().value;
        match self.kind {
            SarModelKind::Exact => self
                .exact
                .as_ref()
                .and_then(|q| QuadraticMaps::of(q))
                .map(|m| m.named("exact Q10g", sf)),
            SarModelKind::Vop => self.vops.as_ref().and_then(|v| {
                QuadraticMaps::of(v).map(|m| m.named(format!("{} VOPs", v.len()), sf))
            }),
            SarModelKind::Generic => self.vops.as_ref().and_then(|v| {
                QuadraticMaps::of(v).map(|m| m.named("generic subject (conventional)", sf))
            }),
            SarModelKind::Qnet => self
                .qnet
                .as_ref()
                .and_then(|q| QuadraticMaps::of(q))
                .map(|m| m.named("quadratic-form network", sf)),
            SarModelKind::Net | SarModelKind::None => None,
        }
    }

    /// The model's predictor on subject `fields`: the network predicts on `slices` with `noise`;
    /// the quadratic models ignore both. `None` for `none`.
    pub fn predictor<'a>(
        &'a self,
        fields: Option<&'a FieldSet>,
        slices: &[usize],
        noise: NoiseDraw,
    ) -> Result<Option<Box<dyn SarPredictor + 'a>>> {
        if let Some(vops) = &self.vops
            && vops.unit != crate::units::AmplitudeUnit::SqrtW
        {
            return Err(Error::invalid(
                "--vop",
                "VOPs for drives in sqrt(W)",
                "a scanner file in volts",
            ));
        }
        if let Some(m) = self.quadratic() {
            return Ok(Some(Box::new(m)));
        }
        match (&self.network, fields) {
            (Some((net, sf)), Some(f)) => Ok(Some(Box::new(NetworkPredictor {
                net,
                fields: f,
                slices: slices.to_vec(),
                sf: sf.value,
                noise_seed: 0,
                noise,
            }))),
            (Some(_), None) => Err(Error::invalid(
                "--fields",
                "the subject's field set (B1+ maps) for the network",
                "none",
            )),
            _ => Ok(None),
        }
    }
}
