//! `isola bench`: boot-time benchmarks that say which backend and guest every figure
//! comes from, and compare like with like in the same run.

pub mod ab;
pub mod boot;
pub mod compare;
pub mod concurrency;
pub mod container;
pub mod cpu;
pub mod ctr;
pub mod error;
pub mod exec;
pub mod fs;
pub mod history;
pub mod memory;
pub mod overhead;
pub mod peer;
pub mod plot;
pub mod provenance;
pub mod reclaim;
pub mod report;
pub mod significance;
pub mod soak;
pub mod start;
mod start_run;
mod start_sandbox;
pub mod stats;

pub use boot::{run_boot_bench, BootBench, BootBenchConfig, Series, SeriesKey};
pub use error::BenchError;
pub use stats::Summary;
