//! Figures a case measured on its way to a verdict (a round trip, memory grown, CPU used,
//! descriptors held), kept in its report so that two runs can be compared (`tprox diff`): a
//! verdict says whether a bound was kept, a figure says how far from it the proxy is, and
//! whether a change moved it.

use serde::Serialize;

/// One measured quantity, with the spread of its own measurement.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Figure {
    /// What was measured, in words that stay the same from run to run: a diff pairs the
    /// figures of two reports by case and name.
    pub name: &'static str,
    /// The unit `value` and `spread` are in (`ms`, `MiB`, `%`, `sockets`).
    pub unit: &'static str,
    /// What this run measured. Lower is better for every figure the catalogue records.
    pub value: f64,
    /// How far the figure moves between runs of the same proxy for reasons of the measurement
    /// itself (the spread of its samples, a clock's tick, a case's allowed slack): a move
    /// smaller than the two runs' spreads together means nothing.
    pub spread: f64,
}

impl Figure {
    /// A figure of `value` and `spread` in `unit`.
    pub fn new(name: &'static str, unit: &'static str, value: f64, spread: f64) -> Self {
        Figure {
            name,
            unit,
            value,
            spread: spread.abs(),
        }
    }
}
