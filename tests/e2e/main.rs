//! End-to-end tests of the `routelmt` binary: they run the real binary in a temp dir and check
//! its files and exit code. `docs` checks that every repository path the docs name exists.

mod common;
mod docs;
mod families_cli;
mod http;
mod model_cli;
mod route_cli;
mod serve_cli;
mod train_cli;
