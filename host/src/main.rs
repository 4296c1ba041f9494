//! The `portcullis` command: serve, check a configuration, or serve stdio.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use portcullis::Portcullis;
use portcullis::config::Config;

#[derive(Parser)]
#[command(
    name = "portcullis",
    version,
    about = "A WebAssembly-extensible MCP gateway"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve MCP over Streamable HTTP.
    Serve {
        /// The configuration file.
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Serve one tenant over stdin/stdout to a local client.
    Stdio {
        /// The configuration file.
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Validate the configuration and load every plugin, without serving.
    Check {
        /// The configuration file.
        #[arg(long, short)]
        config: PathBuf,
    },
}

fn init_logging() {
    // Logs go to stderr: on stdio, stdout carries the protocol.
    let filter = tracing_subscriber::EnvFilter::try_from_env("PORTCULLIS_LOG")
        .or_else(|_| tracing_subscriber::EnvFilter::try_from_default_env())
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
}

#[tokio::main]
async fn main() -> ExitCode {
    init_logging();
    match run(Cli::parse()).await {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Serve { config } => {
            let config = Config::load(&config)?;
            let listen = config.server.listen;
            let gateway = Portcullis::start(config).await?;
            let listener = tokio::net::TcpListener::bind(listen).await?;
            let shutdown = gateway.shutdown_token();
            tokio::spawn(async move {
                let _ = tokio::signal::ctrl_c().await;
                tracing::info!("shutting down");
                shutdown.cancel();
            });
            for t in &gateway.config().tenants {
                tracing::info!(tenant = %t.id, "MCP endpoint: {}{}", gateway.config().public_url(), t.path.as_deref().unwrap_or("/mcp"));
            }
            gateway.serve(listener).await?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Stdio { config } => {
            let config = Config::load(&config)?;
            let gateway = Portcullis::start(config).await?;
            portcullis::transport::stdio::run(gateway.config(), gateway.stdio_tenant()).await?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Check { config } => {
            let config = Config::load(&config)?;
            let gateway = Portcullis::start(config).await?;
            let mut failed = 0;
            for t in &gateway.config().tenants {
                let catalog = gateway
                    .tenant(&t.id)
                    .expect("every configured tenant is loaded")
                    .plugins
                    .catalog();
                for p in &catalog.plugins {
                    println!(
                        "ok      {}/{} ({} tools, sha256 {})",
                        t.id,
                        p.name,
                        p.tools.len(),
                        &p.sha256[..12]
                    );
                }
                for f in &catalog.failures {
                    failed += 1;
                    println!("FAILED  {}: {}", t.id, f.error);
                }
            }
            Ok(if failed == 0 {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            })
        }
    }
}
