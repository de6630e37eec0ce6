//! The load generator behind `tidings bench` (placeholder until filled in).

/// Arguments of `tidings bench`.
#[derive(Debug, clap::Args)]
pub struct BenchArgs {
    /// Base URL of a running server.
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    pub url: String,
}

pub async fn run(_args: BenchArgs) -> anyhow::Result<()> {
    anyhow::bail!("not built yet")
}
