//! Subjects: parametric pelvis phantoms (being written).
