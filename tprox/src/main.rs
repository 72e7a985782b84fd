//! The `tprox` command; everything is in the library ([`tprox::main`]).

/// The reference proxy runs in this binary too (`tprox --reference`, `tprox bench`): it gets the
/// same allocator as `tprox-relay`, for the reason given there.
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn main() -> std::process::ExitCode {
    tprox::main()
}
