//! The case catalogue, one module per group, in the order of `shared/CONFORMANCE.md`.

mod bulk;
mod close;
mod echo;
mod shutdown;
mod timeout;

use crate::case::Case;

/// Every case, in catalogue order (the order of human output).
pub static CATALOGUE: &[&Case] = &[
    &echo::SINGLE,
    &echo::CHAIN_2,
    &echo::CHAIN_20,
    &bulk::CHAIN_20,
    &bulk::BLOCKED_MIX,
    &shutdown::ONE_WAY,
    &close::EARLY,
    &timeout::ACTIVE,
    &timeout::LAZY_FORWARD,
    &timeout::LAZY_REVERSE,
];

/// Looks a case up by its exact id.
pub fn find(id: &str) -> Option<&'static Case> {
    CATALOGUE.iter().copied().find(|case| case.id == id)
}
