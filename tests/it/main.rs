#![allow(dead_code)]
//! The integration tests, in one binary (one link instead of one per file: the suite builds in
//! minutes on two cores). Each module is one concern; `common` holds the shared helpers.

mod chromium;
mod common;

mod browser_kernel;
mod browser_workers;
mod check;
mod cli;
mod crowd;
mod docs_paths;
mod durability;
mod fuzz_properties;
mod hostile;
mod legacy;
mod maths_oracle;
mod mutants;
mod netns;
mod ops;
mod regressions;
mod security;
mod simulation;
mod system;
mod timeouts;
mod web_api;
mod web_browser;
mod web_shutdown;
