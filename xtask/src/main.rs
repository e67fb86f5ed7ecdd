//! `cargo xtask`: project automation for accel.
//!
//! `cargo xtask uapi` regenerates everything derived from the canonical
//! header `accel-uapi/include/accel.h`; `cargo xtask uapi --check` fails on
//! any rule violation or any difference; `cargo xtask uapi --selftest` shows
//! that each check fails on a violating fixture. Only this crate needs
//! libclang: normal builds of the workspace do not.

mod bindings;
mod generate;
mod layout;
mod lint;
mod model;
mod selftest;
mod snapshot;
mod uapi;

use clap::{Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Parser)]
#[command(name = "cargo xtask", about = "accel project automation")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Regenerate (or with --check, verify) the bindings, ABI snapshot and ABI checks.
    Uapi {
        /// Verify instead of writing: fail on any rule violation or stale generated file.
        #[arg(long)]
        check: bool,
        /// Run every check against violating fixtures and require each to fail.
        #[arg(long, conflicts_with = "check")]
        selftest: bool,
        /// Accept breaking changes to the snapshot (only before a release!).
        #[arg(long, conflicts_with_all = ["check", "selftest"])]
        bless: bool,
    },
}

fn workspace_root() -> PathBuf {
    let manifest = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    manifest.parent().map(PathBuf::from).unwrap_or(manifest)
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let root = workspace_root();
    match cli.cmd {
        Cmd::Uapi { check, selftest, bless } => {
            let clang = match clang::Clang::new() {
                Ok(c) => c,
                Err(e) => {
                    eprintln!("error: cannot load libclang ({e}); install it: apt-get install -y libclang-dev");
                    return ExitCode::FAILURE;
                }
            };
            let result = if selftest {
                selftest::run(&clang, &root)
            } else {
                let paths = uapi::Paths::in_repo(&root);
                let mode = if check {
                    uapi::Mode::Check
                } else if bless {
                    uapi::Mode::Bless
                } else {
                    uapi::Mode::Write
                };
                uapi::run(&clang, &paths, mode).map(|report| {
                    for line in report {
                        println!("{line}");
                    }
                })
            };
            match result {
                Ok(()) => ExitCode::SUCCESS,
                Err(errors) => {
                    for e in errors {
                        eprintln!("error: {e}");
                    }
                    ExitCode::FAILURE
                }
            }
        }
    }
}
