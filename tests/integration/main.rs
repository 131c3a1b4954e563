//! All integration tests, as one test binary.
//!
//! Each module was once its own `tests/*.rs` binary. Every such binary links
//! the whole library and its dependencies (about 80 MB each in a debug
//! build), and twenty of them filled the disk of a CI machine; one binary
//! links once. Select a module with a filter, e.g.
//! `cargo test --test integration crash::`.

#[macro_use]
mod common;

mod aws_profiles;
mod cli;
mod cli_daily;
mod commit_protocol;
mod compat_buf;
mod concurrency;
mod confluent;
mod conformance;
mod contention;
mod crash;
mod deletes;
mod diff;
mod fs_core;
mod fs_model;
mod fuzz_regressions;
mod gc_packs;
mod hierarchy;
mod imports;
mod inputs;
mod integrity;
mod kill;
mod memory_cap;
mod model;
mod mount;
mod nsset;
mod packed;
mod pipeline_s3;
mod protocol;
mod reader;
mod registry;
mod registry_model;
mod registry_scale;
mod scope;
mod serve;
mod serve_grpc;
mod storage_edges;
mod upgrade;
