//! `cargo xtask bench`.

use std::process::ExitCode;

use clap::Args;

#[derive(Args, Debug)]
pub struct Bench {}

impl Bench {
    pub fn run(self, _sh: &xshell::Shell) -> anyhow::Result<ExitCode> {
        anyhow::bail!("not yet implemented")
    }
}
