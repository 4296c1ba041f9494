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
    /// Serve with the development authorization server on and OAuth required (trusting it
    /// unless the file names issuers). For local development only.
    Dev {
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
    /// Print the plugin inventory (JSON): each tenant's plugins with version hash, tools,
    /// load time, cache use and last error, and the files that failed to load.
    Plugins {
        /// The configuration file.
        #[arg(long)]
        config: PathBuf,
    },
    /// Validate the configuration and load every plugin, without serving.
    Check {
        /// The configuration file.
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Print an access token from the development authorization server (for curl users). The
    /// configuration must enable `[dev_as]` with a `key_file`, so the server accepts it.
    Token {
        /// The configuration file.
        #[arg(long, short)]
        config: PathBuf,
        /// The subject.
        #[arg(long, default_value = "alice")]
        sub: String,
        /// Space-separated scopes.
        #[arg(long, default_value = "")]
        scope: String,
        /// The tenant whose resource the token is for (default: the first).
        #[arg(long)]
        tenant: Option<String>,
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
        Command::Serve { config } => serve(Config::load(&config)?).await,
        Command::Dev { config } => {
            let mut config = Config::load(&config)?;
            config.dev_as.enabled = true;
            config.auth.mode = portcullis::config::AuthMode::Oauth;
            serve(config).await
        }
        Command::Stdio { config } => {
            let config = Config::load(&config)?;
            let gateway = Portcullis::start(config).await?;
            portcullis::transport::stdio::run(gateway.config(), gateway.stdio_tenant()).await?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Token {
            config,
            sub,
            scope,
            tenant,
        } => {
            let config = Config::load(&config)?;
            anyhow::ensure!(
                config.dev_as.enabled && config.dev_as.key_file.is_some(),
                "{}: `portcullis token` needs [dev_as] enabled = true with a key_file, so the running gateway \
                 and this command sign with the same key",
                config.source.display()
            );
            let t = match &tenant {
                Some(id) => config
                    .tenants
                    .iter()
                    .find(|t| &t.id == id)
                    .ok_or_else(|| anyhow::anyhow!("no tenant `{id}`"))?,
                None => &config.tenants[0],
            };
            let resource = format!(
                "{}{}",
                config.public_url(),
                t.path.as_deref().unwrap_or("/mcp")
            );
            let dev = portcullis::dev_as::DevAs::minter(&config)?;
            println!("{}", dev.mint(&sub, "portcullis-cli", &resource, &scope)?);
            Ok(ExitCode::SUCCESS)
        }
        Command::Plugins { config } => {
            let gateway = load_once(&config).await?;
            let out: serde_json::Map<String, serde_json::Value> = gateway
                .catalogs()
                .into_iter()
                .map(|(id, catalog)| (id, catalog.inventory()))
                .collect();
            println!("{}", serde_json::to_string_pretty(&out)?);
            Ok(ExitCode::SUCCESS)
        }
        Command::Check { config } => {
            let gateway = load_once(&config).await?;
            let mut failed = 0;
            for (id, catalog) in gateway.catalogs() {
                for p in &catalog.plugins {
                    println!(
                        "ok      {}/{} ({} tools, sha256 {})",
                        id,
                        p.name,
                        p.tools.len(),
                        &p.sha256[..12]
                    );
                }
                for f in &catalog.failures {
                    failed += 1;
                    println!("FAILED  {}: {}", id, f.error);
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

/// Load a configuration and its plugins for a one-shot command: no file watcher.
async fn load_once(path: &std::path::Path) -> anyhow::Result<Portcullis> {
    let mut config = Config::load(path)?;
    config.sandbox.watch = false;
    Portcullis::start(config).await
}

/// Serve HTTP until Ctrl-C.
async fn serve(config: Config) -> anyhow::Result<ExitCode> {
    // Bind first: a busy port fails before plugins load, and issuers served by this
    // process (the dev AS) are reachable as soon as key fetching starts.
    let listen = config.server.listen;
    let listener = tokio::net::TcpListener::bind(listen).await.map_err(|e| {
        anyhow::anyhow!(
            "{}: server.listen: cannot listen on {listen}: {e}",
            config.source.display()
        )
    })?;
    let gateway = Portcullis::start(config).await?;
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
