//! The `portcullis` command: serve, check a configuration, or serve stdio.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use portcullis::Portcullis;
use portcullis::config::Config;
use portcullis::telemetry::Telemetry;

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
enum PolicyCommand {
    /// Decide each request described in FILE (a JSON array of cases, each with the decision
    /// it expects) as the gateway would for the tenant; fails if any case is not met.
    Test {
        /// The configuration file.
        #[arg(long, short)]
        config: PathBuf,
        /// The tenant (default: the first).
        #[arg(long)]
        tenant: Option<String>,
        /// The cases.
        file: PathBuf,
    },
    /// Print the Cedar schema the tenant's policies are checked against (generated from its
    /// plugins).
    Schema {
        /// The configuration file.
        #[arg(long, short)]
        config: PathBuf,
        /// The tenant (default: the first).
        #[arg(long)]
        tenant: Option<String>,
    },
}

#[derive(Subcommand)]
enum AuditCommand {
    /// Check an audit file's hash chain and signed checkpoints: finds a removed, reordered,
    /// inserted or edited line and a cut-off tail (exit 1, naming the line).
    Verify {
        /// The audit file.
        file: PathBuf,
        /// The environment variable holding the checkpoint key.
        #[arg(long, default_value = "PORTCULLIS_AUDIT_KEY")]
        key_env: String,
        /// The file may still be being written: accept lines after its last checkpoint
        /// (reported, not vouched for).
        #[arg(long)]
        open: bool,
    },
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
    /// The audit record: verify a file.
    Audit {
        #[command(subcommand)]
        what: AuditCommand,
    },
    /// A tenant's authorization policies (Cedar): test them, or print their schema.
    Policy {
        #[command(subcommand)]
        what: PolicyCommand,
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
        /// Space-separated scopes. Default: the scopes a 401 challenge asks for first
        /// (`auth.challenge_scopes`, else `auth.scopes_supported`).
        #[arg(long)]
        scope: Option<String>,
        /// The tenant whose resource the token is for (default: the first).
        #[arg(long)]
        tenant: Option<String>,
    },
    /// Revoke one user's grant at a user-consent service (an operator's revocation): the
    /// user's next call asks them to consent again. Prints `{"revoked": true|false}`.
    RevokeGrant {
        /// The configuration file (its `[vault]`, and `[cluster]` if grants are on Redis).
        #[arg(long, short)]
        config: PathBuf,
        /// The tenant id.
        #[arg(long)]
        tenant: String,
        /// The issuer of the user's tokens, as in `[[auth.issuer]]`.
        #[arg(long)]
        issuer: String,
        /// The user's subject (`sub`) at that issuer.
        #[arg(long)]
        subject: String,
        /// The service's name.
        #[arg(long)]
        service: String,
    },
    /// Run one tool of a plugin in the real sandbox, without a server, and print the MCP
    /// result (JSON) on stdout; the plugin's log lines and its downstream requests go to
    /// stderr. Exits 1 when the result is an error.
    Call {
        /// The plugin component (`.wasm`).
        plugin: PathBuf,
        /// The tool's name.
        tool: String,
        /// The arguments: a JSON object.
        #[arg(default_value = "{}")]
        arguments: String,
        /// The caller's subject.
        #[arg(long, default_value = "local-user")]
        sub: String,
        /// A scope the caller holds (repeatable, or space-separated). Default: every scope.
        #[arg(long = "scope")]
        scopes: Vec<String>,
        /// The tenant the call is routed to.
        #[arg(long, default_value = "local")]
        tenant: String,
        /// A configuration value for the plugin: KEY=VALUE (repeatable).
        #[arg(long = "set", value_parser = key_value)]
        settings: Vec<(String, String)>,
        /// A stubbed downstream service, granted to the plugin: NAME=STATUS:BODY, NAME=BODY
        /// or NAME=@FILE; `NAME METHOD /PATH=...` answers only those requests (repeatable; the
        /// most specific stub answers).
        #[arg(long = "stub")]
        stubs: Vec<portcullis::harness::Stub>,
        /// The plugin's memory limit in MiB.
        #[arg(long)]
        memory_mb: Option<usize>,
    },
    /// Create a plugin project that builds as it is: `portcullis new rust|python|js my-tool`.
    New {
        /// The language.
        language: portcullis::scaffold::Language,
        /// The plugin's name (lowercase letters, digits and `-`); also its directory's.
        name: String,
        /// Where to create the directory (default: the current one).
        #[arg(long, default_value = ".")]
        dir: PathBuf,
        /// A local copy of the language's SDK to vendor into the project (default: the SDK
        /// this binary carries, the version it was built with).
        #[arg(long)]
        sdk: Option<PathBuf>,
    },
}

#[tokio::main]
async fn main() -> ExitCode {
    match run(Cli::parse()).await {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Load the configuration and install logging: with the file's `[telemetry]` (OTLP export)
/// for serving commands, log lines only for one-shot ones. Logs go to stderr: on stdio,
/// stdout carries the protocol.
fn load(path: &std::path::Path, export: bool) -> anyhow::Result<(Config, Telemetry)> {
    let config = Config::load(path)?;
    let telemetry = if export {
        Telemetry::init(Some(&config.telemetry))?
    } else {
        let mut quiet = config.telemetry.clone();
        quiet.enabled = Some(false);
        Telemetry::init(Some(&quiet))?
    };
    Ok((config, telemetry))
}

async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Serve { config } => {
            let (config, telemetry) = load(&config, true)?;
            serve(config, telemetry).await
        }
        Command::Dev { config } => {
            let (config, telemetry) = load(&config, true)?;
            serve(config.for_dev()?, telemetry).await
        }
        Command::Stdio { config } => {
            let (config, _telemetry) = load(&config, true)?;
            let gateway = Portcullis::start_stdio(config).await?;
            let served =
                portcullis::transport::stdio::run(gateway.config(), gateway.stdio_tenant()).await;
            // The record ends with its final checkpoint however the session ended.
            gateway.audit().stop();
            served?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Token {
            config,
            sub,
            scope,
            tenant,
        } => token(&config, &sub, scope, tenant.as_deref()),
        Command::Plugins { config } => plugins(&config).await,
        Command::Policy { what } => policy(what).await,
        Command::Audit {
            what:
                AuditCommand::Verify {
                    file,
                    key_env,
                    open,
                },
        } => audit_verify(&file, &key_env, open),
        Command::RevokeGrant {
            config,
            tenant,
            issuer,
            subject,
            service,
        } => {
            let config = Config::load(&config)?;
            let key = portcullis::vault::GrantKey {
                tenant: &tenant,
                issuer: &issuer,
                subject: &subject,
                service: &service,
            };
            let revoked = portcullis::revoke_grant(&config, &key).await?;
            println!("{}", serde_json::json!({ "revoked": revoked }));
            Ok(ExitCode::SUCCESS)
        }
        Command::Check { config } => check(&config).await,
        Command::Call {
            plugin,
            tool,
            arguments,
            sub,
            scopes,
            tenant,
            settings,
            stubs,
            memory_mb,
        } => {
            let scopes: Vec<String> = scopes
                .iter()
                .flat_map(|s| s.split_whitespace().map(str::to_string))
                .collect();
            let plan = portcullis::harness::Plan {
                tenant,
                identity: portcullis::config::Identity {
                    subject: sub,
                    scopes: if scopes.is_empty() {
                        vec!["*".into()]
                    } else {
                        scopes
                    },
                },
                settings,
                memory_mb,
            };
            call(&plugin, &tool, &arguments, &plan, &stubs).await
        }
        Command::New {
            language,
            name,
            dir,
            sdk,
        } => {
            let created = portcullis::scaffold::create(language, &name, &dir, sdk.as_deref())?;
            println!("created {}", created.display());
            println!(
                "next: cd {} && {}",
                created.display(),
                language.next_steps().replace("NAME", &name)
            );
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// `KEY=VALUE`.
fn key_value(s: &str) -> Result<(String, String), String> {
    s.split_once('=')
        .filter(|(k, _)| !k.is_empty())
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .ok_or_else(|| format!("`{s}`: expected KEY=VALUE"))
}

/// `portcullis call`: one tool of `plugin`, through an in-process session.
async fn call(
    plugin: &std::path::Path,
    tool: &str,
    arguments: &str,
    plan: &portcullis::harness::Plan,
    stubs: &[portcullis::harness::Stub],
) -> anyhow::Result<ExitCode> {
    use anyhow::Context as _;
    let arguments: serde_json::Value =
        serde_json::from_str(arguments).context("the arguments are not JSON")?;
    anyhow::ensure!(arguments.is_object(), "the arguments must be a JSON object");
    let plugin = plugin
        .canonicalize()
        .with_context(|| format!("{}", plugin.display()))?;
    let stub_server = portcullis::harness::StubServer::start(stubs).await?;
    let config = portcullis::harness::configuration(&plugin, plan, stubs, stub_server.base())?;
    let mut quiet = config.telemetry.clone();
    quiet.enabled = Some(false);
    // The gateway's own lines only when they matter (PORTCULLIS_LOG=info shows them all): the
    // plugin's logs, progress and downstream requests are what this command is for.
    let _telemetry = Telemetry::init_at(Some(&quiet), "warn")?;
    eprintln!(
        "loading {} (its first load compiles it; later loads use the cache)",
        plugin.display()
    );
    let started = std::time::Instant::now();
    let gateway = Portcullis::start_local(config).await?;
    if started.elapsed() > std::time::Duration::from_secs(1) {
        eprintln!("loaded in {:.1} s", started.elapsed().as_secs_f64());
    }
    let transcript =
        portcullis::harness::call(gateway.stdio_tenant(), plan, tool, arguments).await?;
    for p in &transcript.progress {
        let total = p["total"]
            .as_f64()
            .map(|t| format!("/{t}"))
            .unwrap_or_default();
        let message = p["message"]
            .as_str()
            .map(|m| format!(": {m}"))
            .unwrap_or_default();
        let done = p["progress"].as_f64().unwrap_or_default();
        eprintln!("progress {done}{total}{message}");
    }
    for line in &transcript.logs {
        let logger = line["logger"]
            .as_str()
            .map(|l| format!(" {l}"))
            .unwrap_or_default();
        let data = match &line["data"] {
            serde_json::Value::String(s) => s.clone(),
            other => other.to_string(),
        };
        eprintln!(
            "log [{}]{logger}: {data}",
            line["level"].as_str().unwrap_or("?")
        );
    }
    for request in stub_server.requests() {
        eprintln!("downstream {request}");
    }
    let (shown, failed) = match &transcript.outcome {
        Ok(result) => (result, result["isError"] == true),
        Err(error) => (error, true),
    };
    println!("{}", serde_json::to_string_pretty(shown)?);
    Ok(if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

/// `portcullis token`: a development token the running gateway accepts.
fn token(
    config: &std::path::Path,
    sub: &str,
    scope: Option<String>,
    tenant: Option<&str>,
) -> anyhow::Result<ExitCode> {
    let (config, _telemetry) = load(config, false)?;
    anyhow::ensure!(
        config.dev_as.enabled && config.dev_as.key_file.is_some(),
        "{}: `portcullis token` needs [dev_as] enabled = true with a key_file, so the running gateway \
         and this command sign with the same key",
        config.source.display()
    );
    let t = match tenant {
        Some(id) => config
            .tenants
            .iter()
            .find(|t| t.id == id)
            .ok_or_else(|| anyhow::anyhow!("no tenant `{id}`"))?,
        None => &config.tenants[0],
    };
    let resource = config.tenant_resource(t);
    let scope = scope.unwrap_or_else(|| {
        let auth = &config.auth;
        auth.challenge_scopes
            .as_ref()
            .unwrap_or(&auth.scopes_supported)
            .join(" ")
    });
    anyhow::ensure!(
        !scope.trim().is_empty(),
        "no scopes: pass --scope \"mcp:tools ...\" (a token without scopes can call nothing)"
    );
    let dev = portcullis::dev_as::DevAs::minter(&config)?;
    println!("{}", dev.mint(sub, "portcullis-cli", &resource, &scope)?);
    Ok(ExitCode::SUCCESS)
}

/// `portcullis plugins`: every tenant's inventory, as `/admin/plugins` shows it.
async fn plugins(config: &std::path::Path) -> anyhow::Result<ExitCode> {
    let (gateway, _telemetry) = load_once(config).await?;
    let out: serde_json::Map<String, serde_json::Value> = gateway
        .catalogs()
        .into_iter()
        .map(|(id, catalog)| {
            let inventory = portcullis::admin::Inventory::of(&catalog);
            (id, serde_json::to_value(inventory).unwrap_or_default())
        })
        .collect();
    println!("{}", serde_json::to_string_pretty(&out)?);
    Ok(ExitCode::SUCCESS)
}

/// `portcullis audit verify`.
fn audit_verify(file: &std::path::Path, key_env: &str, open: bool) -> anyhow::Result<ExitCode> {
    let key = portcullis::config::secret_from_env(key_env)
        .map_err(|e| anyhow::anyhow!("the checkpoint key: {e}"))?;
    let text =
        std::fs::read_to_string(file).map_err(|e| anyhow::anyhow!("{}: {e}", file.display()))?;
    match portcullis::audit::chain::verify(&text, key.as_bytes(), open) {
        Ok(v) => {
            println!(
                "ok      {}: {} lines, {} checkpoints, follows {}, ends at {}",
                file.display(),
                v.lines,
                v.checkpoints,
                &v.follows[..12],
                &v.head[..12]
            );
            Ok(ExitCode::SUCCESS)
        }
        Err(broken) => {
            println!("FAILED  {}: {broken}", file.display());
            Ok(ExitCode::FAILURE)
        }
    }
}

/// `portcullis policy test|schema`.
async fn policy(what: PolicyCommand) -> anyhow::Result<ExitCode> {
    let (config, tenant) = match &what {
        PolicyCommand::Test { config, tenant, .. } | PolicyCommand::Schema { config, tenant } => {
            (config, tenant)
        }
    };
    let (gateway, _telemetry) = load_once(config).await?;
    let id = match tenant {
        Some(t) => t.clone(),
        None => gateway
            .config()
            .tenants
            .first()
            .map(|t| t.id.clone())
            .ok_or_else(|| anyhow::anyhow!("the configuration has no tenant"))?,
    };
    let context = gateway
        .tenant(&id)
        .ok_or_else(|| anyhow::anyhow!("no tenant `{id}`"))?;
    let catalog = context.plugins.catalog();
    match what {
        PolicyCommand::Schema { .. } => {
            let schema =
                portcullis::authz::policy::schema_json(&catalog, &gateway.config().auth.claims);
            println!("{}", serde_json::to_string_pretty(&schema)?);
            Ok(ExitCode::SUCCESS)
        }
        PolicyCommand::Test { file, .. } => {
            let text = std::fs::read_to_string(&file)
                .map_err(|e| anyhow::anyhow!("{}: {e}", file.display()))?;
            let cases = portcullis::authz::cases::parse(&text)
                .map_err(|e| anyhow::anyhow!("{}: {e}", file.display()))?;
            let mut failed = 0;
            for case in &cases {
                match portcullis::authz::cases::run(&id, &context.authz, &catalog, case) {
                    Ok(got) => println!("ok      {} ({got})", case.name),
                    Err(why) => {
                        failed += 1;
                        println!("FAILED  {}: {why}", case.name);
                    }
                }
            }
            println!("{} cases, {failed} failed", cases.len());
            Ok(if failed == 0 {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            })
        }
    }
}

/// `portcullis check`: load every plugin once; fails if any does not load.
async fn check(config: &std::path::Path) -> anyhow::Result<ExitCode> {
    let (gateway, _telemetry) = load_once(config).await?;
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
            // What each tool needs of a caller (after operator overrides), and where the
            // plugin may reach.
            for t in &p.tools {
                let scopes = if t.required_scopes.is_empty() {
                    "no scope".to_string()
                } else {
                    t.required_scopes.join(" ")
                };
                let task = if p.task_tools.contains_key(&t.name) {
                    " (may run as a task)"
                } else {
                    ""
                };
                println!("          tool {}: {scopes}{task}", t.name);
            }
            if !p.services.is_empty() {
                println!("          services: {}", p.services.join(", "));
            }
        }
        for f in &catalog.failures {
            failed += 1;
            println!("FAILED  {}: {}", id, f.error);
        }
    }
    let config = gateway.config();
    for tenant in &config.tenants {
        for problem in portcullis::plugins::unmatched_settings(config, tenant) {
            failed += 1;
            println!("FAILED  {problem}");
        }
    }
    let dev = gateway
        .dev_as()
        .map(|d| (config.dev_as_issuer(), d.metadata()));
    let served_here = dev.as_ref().map(|(i, doc)| (i.as_str(), doc));
    for problem in portcullis::downstream::credential_problems(config, served_here).await? {
        failed += 1;
        println!("FAILED  {problem}");
    }
    if config.auth.mode == portcullis::config::AuthMode::Oauth {
        print_required_scopes(config, &gateway.catalogs());
    }
    Ok(if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// What `check` tells an operator about scopes: which ones clients must be able to obtain
/// from the authorization servers (the development AS issues them by itself).
fn print_required_scopes(
    config: &Config,
    catalogs: &[(String, std::sync::Arc<portcullis::plugins::Catalog>)],
) {
    let issuers: Vec<String> = config
        .trusted_issuers()
        .into_iter()
        .map(|i| i.issuer)
        .collect();
    let dev = config.dev_as.enabled.then(|| config.dev_as_issuer());
    for (id, catalog) in catalogs {
        let declared = catalog.declared_scopes();
        if declared.is_empty() {
            continue;
        }
        let listed: Vec<&String> = declared
            .iter()
            .filter(|s| !config.auth.scopes_supported.contains(s))
            .collect();
        let external: Vec<&String> = issuers
            .iter()
            .filter(|i| Some(*i) != dev.as_ref())
            .collect();
        let mut line = format!(
            "scopes  {id}: the plugins require {}",
            declared.iter().cloned().collect::<Vec<_>>().join(" ")
        );
        if !external.is_empty() {
            line.push_str(&format!(
                "; the authorization server(s) {} must offer them",
                external
                    .iter()
                    .map(|s| s.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        }
        if !listed.is_empty() {
            line.push_str(&format!(
                " (advertised in the protected resource metadata; not in auth.scopes_supported: {})",
                listed.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(" ")
            ));
        }
        println!("{line}");
    }
}

/// Load a configuration and its plugins for a one-shot command: no file watcher.
async fn load_once(path: &std::path::Path) -> anyhow::Result<(Portcullis, Telemetry)> {
    let (mut config, telemetry) = load(path, false)?;
    config.sandbox.watch = false;
    Ok((Portcullis::start_local(config).await?, telemetry))
}

/// Serve HTTP until Ctrl-C or SIGTERM; buffered telemetry is flushed on the way out.
async fn serve(config: Config, telemetry: Telemetry) -> anyhow::Result<ExitCode> {
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
    let stopper = gateway.stopper();
    tokio::spawn(async move {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("installing the SIGTERM handler");
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
        tracing::info!("shutting down");
        stopper.stop().await;
    });
    for t in &gateway.config().tenants {
        tracing::info!(tenant = %t.id, "MCP endpoint: {}", gateway.config().tenant_resource(t));
    }
    let audit = gateway.audit().clone();
    let served = gateway.serve(listener).await;
    // The audit file ends with its final checkpoint, whatever ended the serving.
    audit.stop();
    served?;
    drop(telemetry);
    Ok(ExitCode::SUCCESS)
}
