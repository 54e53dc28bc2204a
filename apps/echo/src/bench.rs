//! `echo bench`.
use crate::opts::BenchArgs;
use crate::Fail;

/// Runs the benchmark.
pub fn run(_a: BenchArgs) -> Result<(), Fail> {
    Err(Fail::other("not yet"))
}
