//! `tprox matrix`: the whole catalogue against each known proxy (see [`crate::profiles`]),
//! written as a proxies × cases matrix in JSON, Markdown and HTML; and the check of a new
//! measurement against a committed one, so that a change that flips a real proxy's verdict is
//! seen.
//!
//! Data flows one way: [`measure`] runs the cases and builds a [`Matrix`]; [`render`] turns a
//! matrix into pages; [`Matrix::differences`] compares two.

mod measure;
mod model;
pub mod render;

use std::path::{Path, PathBuf};

pub use crate::verdict::Verdict;
pub use measure::{disagreements, measure, MatrixOptions, Progress};
pub use model::{Cell, Difference, Matrix, ProxyColumn, Shown};

/// Writes `matrix.json`, `matrix.md` and `matrix.html` into `out`; returns their paths.
pub fn write(matrix: &Matrix, out: &Path) -> Result<Vec<PathBuf>, String> {
    std::fs::create_dir_all(out).map_err(|e| format!("cannot create {}: {e}", out.display()))?;
    let files = [
        ("matrix.json", matrix.to_json()),
        ("matrix.md", render::markdown(matrix)),
        ("matrix.html", render::html(matrix)),
    ];
    let mut paths = Vec::new();
    for (name, text) in files {
        let path = out.join(name);
        std::fs::write(&path, text).map_err(|e| format!("cannot write {}: {e}", path.display()))?;
        paths.push(path);
    }
    Ok(paths)
}
