//! `cargo xtask smoke-test`: the quick gate.

use std::process::ExitCode;

use clap::Args;

#[derive(Args, Debug)]
pub struct SmokeTest {
    #[arg(long, value_enum, default_value_t = crate::base::Policy::Auto)]
    pub base_source: crate::base::Policy,
}

impl SmokeTest {
    pub fn run(self, _sh: &xshell::Shell) -> anyhow::Result<ExitCode> {
        anyhow::bail!("not yet implemented")
    }
}
