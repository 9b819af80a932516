//! Base image resolution: local store → pull → local recipe → skipped.

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Policy {
    Auto,
    Registry,
    Local,
}
