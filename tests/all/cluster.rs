//! Replicas behind a round-robin balancer on one Redis (`[cluster]`, #19): real `portcullis`
//! processes, Debian's `redis-server` and `nginx`, the official SDK clients. A 2025 session
//! works whichever replica a request lands on; it stays its creator's on every replica; a
//! replica that is gone takes its sessions with it (404, so clients start again); a record
//! planted in Redis cannot send a caller's token anywhere but an internal address; while
//! Redis is away new sessions are refused with 503 and stateless calls go on.

use std::collections::BTreeSet;
use std::time::Duration;

use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::support::peers::{DownstreamApi, HaProxy, Nginx, RealAs, Redis, TestIssuer, now};
use crate::support::{BinaryGateway, Client, node, plugin, root, run_json_program, toml_path};

const STATE_KEY: &str = "0123456789abcdef0123456789abcdef-cluster-tests";

/// `[server]` keys (after `listen`) and the rest of a replica's configuration: the
/// conformance and hello plugins for tenant `t` at `/mcp` and tenant `u` at `/u/mcp`, with
/// `auth` as the `[auth]` table, in a cluster on `redis` announcing replicas quickly.
fn replica_config(auth: &str, server: &str) -> String {
    replica_config_with(auth, server, "", "")
}

/// [`replica_config`] with `cluster` keys in `[cluster]` and `tenant` tables for tenant `t`.
fn replica_config_with(auth: &str, server: &str, cluster: &str, tenant: &str) -> String {
    format!(
        r#"state_key_env = "PORTCULLIS_TEST_STATE_KEY"
{server}
{auth}
[sandbox]
cache_dir = {cache}
[cluster]
replica_ttl_ms = 1500
{cluster}
[[tenant]]
id = "t"
plugins = [{conformance}, {hello}]
{tenant}
[[tenant]]
id = "u"
path = "/u/mcp"
plugins = [{hello}]
"#,
        cache = toml_path(&root().join("target/test-artifact-cache")),
        conformance = toml_path(&plugin("conformance")),
        hello = toml_path(&plugin("hello")),
    )
}

const NO_AUTH: &str = "[auth]\nmode = \"none\"";

/// `n` replicas of `config` on `redis` (trusting its CA, with TLS).
async fn replicas(redis: &Redis, n: usize, config: &str) -> Vec<BinaryGateway> {
    replicas_with(redis, n, config, &[]).await
}

/// [`replicas`], with `extra` in each replica's environment.
async fn replicas_with(
    redis: &Redis,
    n: usize,
    config: &str,
    extra: &[(&str, &str)],
) -> Vec<BinaryGateway> {
    let url = redis.url();
    let ca = redis
        .tls
        .as_ref()
        .map(|(ca, _)| ca.display().to_string())
        .unwrap_or_default();
    let mut env = vec![
        ("PORTCULLIS_REDIS_URL", url.as_str()),
        ("PORTCULLIS_TEST_STATE_KEY", STATE_KEY),
        (
            "PORTCULLIS_LOG",
            "info,portcullis::transport::forward=debug",
        ),
    ];
    if !ca.is_empty() {
        // rustls-native-certs reads the trusted roots from here.
        env.push(("SSL_CERT_FILE", ca.as_str()));
    }
    env.extend_from_slice(extra);
    let mut started = Vec::new();
    for _ in 0..n {
        started.push(BinaryGateway::start(config, &env).await);
    }
    // Each announces itself on start; wait until all have.
    for _ in 0..100 {
        if redis.keys("portcullis:replica:*").await.len() == n {
            return started;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the replicas did not announce themselves");
}

fn backend(replica: &BinaryGateway) -> String {
    replica.base.trim_start_matches("http://").to_string()
}

fn log_of(replica: &BinaryGateway) -> String {
    std::fs::read_to_string(&replica.log).unwrap_or_default()
}

/// AC1: the TypeScript and the Python SDK client each run a whole session (initialize, list,
/// calls with log and progress notifications, a tool that asks for input, more calls, the
/// end) through nginx balancing round robin over three replicas, without stickiness.
#[tokio::test]
async fn sdk_sessions_work_whichever_replica_the_balancer_picks() {
    let redis = Redis::start().await;
    let replicas = replicas(&redis, 3, &replica_config(NO_AUTH, "")).await;
    let nginx = Nginx::start(&replicas.iter().map(backend).collect::<Vec<_>>()).await;
    let url = format!("{}/mcp", nginx.base);
    let ts = run_json_program(
        &node(),
        "tests/js/cluster-session-client.mjs",
        &[url.as_ref(), "6".as_ref()],
        &[],
    )
    .await;
    let py = run_json_program(
        &root().join("tests/.venv/bin/python"),
        "tests/py/cluster_session_client.py",
        &[url.as_ref(), "6".as_ref()],
        &[],
    )
    .await;
    for (sdk, t) in [("TypeScript", &ts), ("Python", &py)] {
        assert_eq!(t["protocol"], "2025-11-25", "{sdk}: {t}");
        assert_eq!(
            t["simple"], "This is a simple text response for testing.",
            "{sdk}: {t}"
        );
        assert_eq!(
            t["logs"],
            json!([
                "Tool execution started",
                "Tool processing data",
                "Tool execution completed"
            ]),
            "{sdk}: log notifications reach the client: {t}"
        );
        let progress: Vec<f64> = t["progress"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_f64)
            .collect();
        assert_eq!(progress, [0.0, 50.0, 100.0], "{sdk}: progress: {t}");
        assert_eq!(t["elicitations"], json!(["Who are you?"]), "{sdk}: {t}");
        assert!(
            t["elicited"]
                .as_str()
                .is_some_and(|s| s.contains("ada@example.com")),
            "{sdk}: the answer to the elicitation reached the waiting call: {t}"
        );
        assert_eq!(t["extra_calls"], 6, "{sdk}: {t}");
    }

    // Where the requests landed, as the balancer logged them.
    let logged = nginx.logged();
    let sessions: BTreeSet<String> = logged
        .iter()
        .filter(|l| l.session != "-")
        .map(|l| l.session.clone())
        .collect();
    assert_eq!(sessions.len(), 2, "one session per SDK: {logged:#?}");
    for session in &sessions {
        let mine: Vec<_> = logged.iter().filter(|l| &l.session == session).collect();
        assert!(
            mine.iter().all(|l| l.status < 300),
            "every request of the session succeeded: {mine:#?}"
        );
        let replicas_used: BTreeSet<&str> = mine.iter().map(|l| l.backend.as_str()).collect();
        assert!(
            replicas_used.len() >= 2,
            "the session's requests landed on several replicas: {mine:#?}"
        );
        assert!(
            mine.iter().any(|l| l.method == "DELETE"),
            "the session was ended: {mine:#?}"
        );
        assert!(
            mine.windows(2).any(|w| w[0].backend != w[1].backend),
            "consecutive requests landed on different replicas: {mine:#?}"
        );
    }
    let forwarding = replicas
        .iter()
        .filter(|r| log_of(r).contains("forwarded a session's request to the replica holding it"))
        .count();
    assert!(
        forwarding >= 2,
        "replicas that did not hold a session forwarded its requests"
    );
    assert!(
        redis.keys("portcullis:session:*").await.is_empty(),
        "both sessions ended (DELETE) and their records are gone"
    );
}

/// `[auth]` trusting `issuers`.
fn oauth(issuers: &[&TestIssuer]) -> String {
    let mut auth = "[auth]\nmode = \"oauth\"\nscopes_supported = [\"mcp:tools\"]\n".to_string();
    for i in issuers {
        auth.push_str(&format!(
            "[[auth.issuer]]\nissuer = \"{}\"\nalgorithms = [\"RS256\"]\n",
            i.url
        ));
    }
    auth
}

/// Where the replicas' tokens are meant for (their shared `server.public_url`).
const PUBLIC: &str = "http://127.0.0.1:9";

/// AC2: a per-subject quota of 4 a minute holds across three replicas: alice's calls, spread
/// over them, are admitted four times, and her fifth gets 429 on every replica; bob has his
/// own bucket.
#[tokio::test]
async fn a_subjects_quota_holds_across_replicas() {
    let x = TestIssuer::start(&["a"]).await;
    let redis = Redis::start().await;
    let config = replica_config_with(
        &oauth(&[&x]),
        &format!("public_url = \"{PUBLIC}\""),
        "",
        "[tenant.quota]\nsubject_requests_per_minute = 4\n",
    );
    let replicas = replicas(&redis, 3, &config).await;
    let aud = format!("{PUBLIC}/mcp");
    let call = |replica: &BinaryGateway, sub: &str| {
        let c = Client::modern(&format!("{}/mcp", replica.base))
            .bearer(&x.token("a", claims(&x, &aud, sub)));
        async move {
            let mut c = c;
            c.call_tool("test_simple_text", json!({})).await
        }
    };
    for i in 0..4 {
        let r = call(&replicas[i % 3], "alice").await;
        assert_eq!(r.status, 200, "call {i}: {r:?}");
    }
    for replica in &replicas {
        let r = call(replica, "alice").await;
        assert_eq!(r.status, 429, "{r:?}");
        let wait: u64 = r.headers["retry-after"].to_str().unwrap().parse().unwrap();
        assert!((1..=15).contains(&wait), "one cell every 15 s: {wait}");
    }
    let r = call(&replicas[1], "bob").await;
    assert_eq!(r.status, 200, "{r:?}");
    let keys = redis.keys("portcullis:quota:t:subject:*").await;
    assert_eq!(
        keys.len(),
        2,
        "one bucket per caller, none named in clear: {keys:?}"
    );
    assert!(
        keys.iter()
            .all(|k| !k.contains("alice") && !k.contains("bob"))
    );
    // #28: nor by a digest anyone can recompute from a guess (the name the unkeyed SHA-256
    // of (issuer, "s", subject) gave before): the digest is keyed with the cluster key.
    let guess = |sub: &str| {
        let mut h = Sha256::new();
        h.update((x.url.len() as u64).to_be_bytes());
        h.update(x.url.as_bytes());
        h.update(b"s");
        h.update(sub.as_bytes());
        hex::encode(h.finalize())
    };
    assert!(
        keys.iter()
            .all(|k| !k.contains(&guess("alice")) && !k.contains(&guess("bob"))),
        "{keys:?}"
    );
}

/// #28 AC2, across replicas. Before: `max_sessions_per_subject` counted per replica, so a
/// caller spreading its `initialize`s over N replicas held N times its share. Now each
/// caller's sessions and reservations are counted on Redis: in turn, its oldest session is
/// ended on whichever replica holds it; in a burst spread over both replicas it ends with at
/// most its cap, and another caller gets in.
#[tokio::test]
async fn a_callers_session_cap_holds_across_replicas() {
    let x = TestIssuer::start(&["a"]).await;
    let redis = Redis::start().await;
    let config = replica_config_with(
        &oauth(&[&x]),
        &format!("public_url = \"{PUBLIC}\"\nmax_sessions_per_subject = 3"),
        "",
        "",
    );
    let replicas = replicas(&redis, 2, &config).await;
    let urls: Vec<String> = replicas.iter().map(|r| format!("{}/mcp", r.base)).collect();
    let aud = format!("{PUBLIC}/mcp");
    let bearer = |sub: &str| format!("Bearer {}", x.token("a", claims(&x, &aud, sub)));
    let alice = bearer("alice");
    // Whether each client's session still answers (its own replica), once evictions relayed
    // over Redis have been applied (waited for, not timed).
    let live_when = |clients: Vec<Client>, ok: fn(&[bool]) -> bool| async move {
        let mut seen = Vec::new();
        for _ in 0..100 {
            seen.clear();
            for c in &clients {
                let mut c = c.clone();
                seen.push(c.request("tools/list", json!({})).await.status == 200);
            }
            if ok(&seen) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        seen
    };

    // In turn, alternating replicas: the fourth session ends the first, held by the other one.
    let mut in_turn = Vec::new();
    for i in 0..4 {
        in_turn.push(Client::initialize_with(&urls[i % 2], "2025-11-25", Some(&alice)).await);
    }
    let seen = live_when(in_turn, |s| s == [false, true, true, true]).await;
    assert_eq!(seen, [false, true, true, true], "alice keeps her 3 newest");
    assert!(
        log_of(&replicas[0]).contains("closed a session another replica evicted"),
        "the holder ended it"
    );

    // A burst of 40 spread over both replicas.
    let burst = (0..40).map(|i| {
        let mut c = Client::new(&urls[i % 2]);
        c.authorization = Some(alice.clone());
        c.try_initialize()
    });
    let answered = futures::future::join_all(burst).await;
    let statuses: std::collections::BTreeSet<u16> = answered.iter().map(|(s, _)| *s).collect();
    assert!(statuses.is_subset(&[200, 429].into()), "{statuses:?}");
    let opened: Vec<Client> = answered
        .into_iter()
        .filter(|(s, _)| *s == 200)
        .map(|(_, c)| c)
        .collect();
    let seen = live_when(opened, |s| s.iter().filter(|l| **l).count() <= 3).await;
    let live = seen.iter().filter(|l| **l).count();
    assert!(
        (1..=3).contains(&live),
        "alice holds {live} sessions across the replicas"
    );
    // Bob is his own caller, on either replica.
    let bob = bearer("bob");
    for url in &urls {
        let _bob = Client::initialize_with(url, "2025-11-25", Some(&bob)).await;
    }
    // Redis names no one: the caller sets are keyed digests.
    let keys = redis.keys("portcullis:caller-*").await;
    assert!(
        !keys.is_empty() && keys.iter().all(|k| !k.contains("alice")),
        "{keys:?}"
    );
}

/// #28 AC2, across replicas. Before: `tasks.max_per_subject` counted per replica, so a caller
/// could run its cap on every replica. Now each caller's unfinished tasks are counted on
/// Redis: the third of a cap of 2 is refused on the other replica too, another caller is not
/// affected, and a task that ends frees its place everywhere.
#[tokio::test]
async fn a_callers_unfinished_tasks_are_capped_across_replicas() {
    let x = TestIssuer::start(&["a"]).await;
    let redis = Redis::start().await;
    let config = replica_config_with(
        &oauth(&[&x]),
        &format!("public_url = \"{PUBLIC}\"\n[tasks]\nmax_per_subject = 2"),
        "",
        "",
    );
    let replicas = replicas(&redis, 2, &config).await;
    let urls: Vec<String> = replicas.iter().map(|r| format!("{}/mcp", r.base)).collect();
    let aud = format!("{PUBLIC}/mcp");
    let (alice, bob) = (
        x.token("a", claims(&x, &aud, "alice")),
        x.token("a", claims(&x, &aud, "bob")),
    );
    let caps = json!({"io.modelcontextprotocol/clientCapabilities":
        {"extensions": {"io.modelcontextprotocol/tasks": {}}}});
    let start = |url: &str, token: &str| {
        let (url, token, caps) = (url.to_string(), token.to_string(), caps.clone());
        async move {
            Client::modern(&url)
                .bearer(&token)
                .request(
                    "tools/call",
                    json!({"name": "slow_compute", "arguments": {"seconds": 60}, "_meta": caps}),
                )
                .await
        }
    };
    let first = start(&urls[0], &alice).await;
    let first_id = first.result()["taskId"].as_str().unwrap().to_string();
    let second = start(&urls[0], &alice).await;
    assert_eq!(second.result()["resultType"], "task");
    for _ in 0..5 {
        let refused = start(&urls[1], &alice).await;
        assert!(
            refused.error()["message"]
                .as_str()
                .is_some_and(|m| m.contains("tasks.max_per_subject")),
            "the other replica counts alice's tasks too: {refused:?}"
        );
    }
    let bobs = start(&urls[1], &bob).await;
    assert_eq!(bobs.result()["resultType"], "task", "bob is not affected");
    // A refused task leaves nothing on Redis. Replica 1 shares its changes in order, so once
    // the other replica finds bob's task (and alice's) every earlier write has landed.
    let shared = |url: &str, token: &str, id: &serde_json::Value| {
        let (url, token, caps) = (url.to_string(), token.to_string(), caps.clone());
        let id = id.as_str().unwrap().to_string();
        async move {
            for _ in 0..100 {
                let r = Client::modern(&url)
                    .bearer(&token)
                    .request_with(
                        "tasks/get",
                        json!({"taskId": id, "_meta": caps}),
                        &[("mcp-name", &id)],
                    )
                    .await;
                if r.result()["status"] == "working" {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            panic!("task {id} never reached the shared store");
        }
    };
    shared(&urls[0], &bob, &bobs.result()["taskId"]).await;
    shared(&urls[1], &alice, &second.result()["taskId"]).await;
    shared(&urls[1], &alice, &first.result()["taskId"]).await;
    assert_eq!(
        redis.keys("portcullis:task:*").await.len(),
        3,
        "alice's two and bob's, not the five refused"
    );
    // Alice cancels one: its place is free on every replica (waited for: the change is
    // shared asynchronously).
    let cancelled = Client::modern(&urls[0])
        .bearer(&alice)
        .request_with(
            "tasks/cancel",
            json!({"taskId": first_id, "_meta": caps}),
            &[("mcp-name", &first_id)],
        )
        .await;
    assert_eq!(cancelled.status, 200, "{cancelled:?}");
    let mut again = None;
    for _ in 0..50 {
        let r = start(&urls[1], &alice).await;
        if r.message
            .as_ref()
            .is_some_and(|m| m["result"]["resultType"] == "task")
        {
            again = Some(r);
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        again.is_some(),
        "a place freed by a cancel is free everywhere"
    );
    // Redis names no owner: the set's name is a keyed digest.
    let keys = redis.keys("portcullis:owner-tasks:*").await;
    assert!(
        !keys.is_empty() && keys.iter().all(|k| !k.contains("alice")),
        "{keys:?}"
    );
}

/// #28 AC2, across replicas. Before: each replica counted its own introspection budget, so
/// junk tokens spread over N replicas cost the authorization server N budgets. Now the slots
/// are taken on Redis before each introspection starts: 40 junk opaque tokens at once over two
/// replicas cost oidc-provider at most one budget (10), and a real token is still served.
#[tokio::test]
async fn junk_tokens_over_the_replicas_cost_one_introspection_budget() {
    let aud = format!("{PUBLIC}/mcp");
    let as_ = RealAs::opaque(&aud).await;
    let auth = format!(
        "[auth]\nmode = \"oauth\"\nscopes_supported = [\"mcp:tools\"]\n\
         introspection_failures_per_minute = 10\n[[auth.issuer]]\nissuer = \"{}\"\n\
         introspection = {{ client_id = \"gateway\", client_secret_env = \"GATEWAY_SECRET\" }}",
        as_.issuer
    );
    let config = replica_config_with(&auth, &format!("public_url = \"{PUBLIC}\""), "", "");
    let redis = Redis::start().await;
    let replicas = replicas_with(&redis, 2, &config, &[("GATEWAY_SECRET", "gateway-secret")]).await;
    let urls: Vec<String> = replicas.iter().map(|r| format!("{}/mcp", r.base)).collect();
    let before = as_.introspections().await;
    let burst = (0..40).map(|i| {
        let url = urls[i % 2].clone();
        async move {
            Client::modern(&url)
                .bearer(&format!("junk-{i}"))
                .call_tool("test_simple_text", json!({}))
                .await
                .status
        }
    });
    let statuses = futures::future::join_all(burst).await;
    let spent = as_.introspections().await - before;
    assert!(
        spent <= 10,
        "{spent} introspections for one budget of 10: {statuses:?}"
    );
    assert!(
        statuses.iter().all(|s| [401, 429].contains(s)),
        "{statuses:?}"
    );
    // Nothing names the client's address in Redis.
    let keys = redis.keys("portcullis:introspect:*").await;
    assert!(keys.iter().all(|k| !k.contains("127.0.0.1")), "{keys:?}");
}

/// The cap on a tenant's requests in progress counts every replica's: while a slow call
/// runs on one, a call on another gets 429; once it ends, its place is free everywhere.
#[tokio::test]
async fn requests_in_progress_are_capped_across_replicas() {
    let redis = Redis::start().await;
    let config = replica_config_with(
        NO_AUTH,
        "",
        "",
        "[tenant.quota]\nmax_concurrent_requests = 1\n",
    );
    let replicas = replicas(&redis, 2, &config).await;
    let slow_url = format!("{}/mcp", replicas[0].base);
    let slow = tokio::spawn(async move {
        // Three log lines 50 ms apart: about 100 ms in the plugin.
        Client::modern(&slow_url)
            .call_tool("test_tool_with_logging", json!({}))
            .await
            .status
    });
    tokio::time::sleep(Duration::from_millis(40)).await;
    let other = format!("{}/mcp", replicas[1].base);
    let r = Client::modern(&other)
        .call_tool("test_simple_text", json!({}))
        .await;
    assert_eq!(r.status, 429, "{r:?}");
    assert_eq!(r.error()["data"]["limit"], "concurrency", "{r:?}");
    assert_eq!(slow.await.unwrap(), 200);
    let mut freed = false;
    for _ in 0..50 {
        let status = Client::modern(&other)
            .call_tool("test_simple_text", json!({}))
            .await
            .status;
        if status == 200 {
            freed = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(freed, "the slow call's place is given back");
}

/// While Redis is away quotas do what `cluster.quotas_without_redis` says, and then share
/// again: "refuse" answers 503 + `Retry-After`; "local" (the default) keeps each replica's
/// own buckets.
#[tokio::test]
async fn quotas_without_redis_refuse_or_fall_back_to_each_replica() {
    let mut redis = Redis::start().await;
    let quota = "[tenant.quota]\nsubject_requests_per_minute = 2\n";
    let refusing = replicas(
        &redis,
        1,
        &replica_config_with(NO_AUTH, "", "quotas_without_redis = \"refuse\"", quota),
    )
    .await;
    let local = BinaryGateway::start(
        &replica_config_with(NO_AUTH, "", "", quota),
        &[
            ("PORTCULLIS_REDIS_URL", redis.url().as_str()),
            ("PORTCULLIS_TEST_STATE_KEY", STATE_KEY),
        ],
    )
    .await;
    let call = |base: &str| {
        let mut c = Client::modern(&format!("{base}/mcp"));
        async move { c.call_tool("test_simple_text", json!({})).await.status }
    };
    redis.stop().await;
    let r = Client::modern(&format!("{}/mcp", refusing[0].base))
        .call_tool("test_simple_text", json!({}))
        .await;
    assert_eq!(r.status, 503, "{r:?}");
    assert_eq!(r.headers["retry-after"], "1");
    assert_eq!(
        [
            call(&local.base).await,
            call(&local.base).await,
            call(&local.base).await
        ],
        [200, 200, 429],
        "this replica's own bucket of 2"
    );
    redis.resume().await;
    assert_eq!(
        call(&refusing[0].base).await,
        200,
        "shared again (a fresh Redis)"
    );
    assert_eq!(call(&local.base).await, 200);
    assert_eq!(call(&refusing[0].base).await, 429, "one shared bucket of 2");
    let log = local.stop().await;
    assert_eq!(
        log.matches("quotas fall back while the shared store is away")
            .count(),
        1,
        "said once, not per request: {log}"
    );
    assert!(log.contains("quotas are shared again"), "{log}");
}

const TOKEN_CACHE_KEY: &str = "a token cache key of at least thirty-two bytes";

/// AC3: calls needing the same exchanged token, spread over three replicas and made at once,
/// cause one exchange at oidc-provider; Redis holds the token only encrypted; a replica with
/// another cache key cannot read it (and exchanges for itself).
#[tokio::test]
async fn replicas_share_one_exchanged_token_counted_at_the_authorization_server() {
    let api = DownstreamApi::start().await;
    let audience = format!("{}/api", api.base);
    let mcp = format!("{PUBLIC}/mcp");
    let as_ = RealAs::for_exchange(&mcp, &audience, 600).await;
    let redis = Redis::start().await;
    let config = format!(
        r#"public_url = "{PUBLIC}"
state_key_env = "PORTCULLIS_TEST_STATE_KEY"
[auth]
mode = "oauth"
scopes_supported = ["mcp:tools", "notes:read"]
[[auth.issuer]]
issuer = "{issuer}"
algorithms = ["RS256"]
[exchange]
client_id = "gateway"
client_secret_env = "GATEWAY_SECRET"
[sandbox]
cache_dir = {cache}
[cluster]
replica_ttl_ms = 1500
[[tenant]]
id = "t"
plugins = [{probe}]
[[tenant.service]]
name = "notes"
base_url = "{audience}"
credential = "token-exchange"
audience = "{audience}"
[tenant.plugin.probe]
services = ["notes"]
"#,
        issuer = as_.issuer,
        cache = toml_path(&root().join("target/test-artifact-cache")),
        probe = toml_path(&plugin("probe")),
    );
    let url = redis.url();
    let start = |key: &'static str| {
        let (config, url) = (config.clone(), url.clone());
        async move {
            BinaryGateway::start(
                &config,
                &[
                    ("PORTCULLIS_REDIS_URL", url.as_str()),
                    ("PORTCULLIS_TEST_STATE_KEY", STATE_KEY),
                    ("PORTCULLIS_TOKEN_CACHE_KEY", key),
                    ("GATEWAY_SECRET", "gateway-secret"),
                ],
            )
            .await
        }
    };
    let replicas = [
        start(TOKEN_CACHE_KEY).await,
        start(TOKEN_CACHE_KEY).await,
        start(TOKEN_CACHE_KEY).await,
    ];
    let user = as_.user_token(&mcp, "mcp:tools notes:read").await;
    let fetch = |base: String| {
        let user = user.clone();
        async move {
            Client::modern(&format!("{base}/mcp"))
                .bearer(&user)
                .call_tool("probe.fetch", json!({"service": "notes", "path": "/echo"}))
                .await
                .text()
        }
    };
    let calls = (0..9).map(|i| fetch(replicas[i % 3].base.clone()));
    for out in futures::future::join_all(calls).await {
        assert!(out.starts_with("status 200: "), "{out}");
    }
    assert_eq!(
        as_.downstream_tokens_issued().await,
        1,
        "nine calls on three replicas, one exchange"
    );
    let exchanged = api.authorizations()[0].clone().unwrap();
    assert!(
        api.authorizations()
            .iter()
            .all(|a| a.as_ref() == Some(&exchanged)),
        "every replica sent the same token"
    );
    let exchanged = exchanged.trim_start_matches("Bearer ").to_string();
    let entries = redis.keys("portcullis:token:*").await;
    assert_eq!(entries.len(), 1, "{entries:?}");
    let stored = redis.cli(&["--raw", "GET", &entries[0]]).await.unwrap();
    assert!(
        !stored.contains(&exchanged) && !stored.contains("eyJ"),
        "encrypted: {stored}"
    );
    assert!(!entries[0].contains("alice"));

    // A replica with another key cannot use the entry: it exchanges for itself.
    let stranger = start("another key, also at least thirty-two bytes long").await;
    let out = fetch(stranger.base.clone()).await;
    assert!(out.starts_with("status 200: "), "{out}");
    assert_eq!(as_.downstream_tokens_issued().await, 2);
    assert!(
        log_of(&stranger).contains("a shared token cache entry did not decrypt"),
        "the operator is told"
    );
    for r in replicas.iter().chain([&stranger]) {
        let log = log_of(r);
        assert!(
            !log.contains(&exchanged) && !log.contains(&user) && !log.contains(TOKEN_CACHE_KEY)
        );
    }
}

/// The first `notifications/tools/list_changed` on `stream` within 10 s.
async fn list_changed(stream: &mut tokio::sync::mpsc::UnboundedReceiver<Value>) -> bool {
    tokio::time::timeout(Duration::from_secs(10), async {
        while let Some(m) = stream.recv().await {
            if m["method"] == "notifications/tools/list_changed" {
                return true;
            }
        }
        false
    })
    .await
    .unwrap_or(false)
}

/// AC4: sessions and `subscriptions/listen` streams on every replica hear
/// `tools/list_changed` when a plugin is added to the shared plugin directory (each replica
/// reloads it), and when a plugin running on one replica announces a change (relayed over
/// Redis to the others).
#[tokio::test]
async fn list_changes_reach_sessions_on_every_replica() {
    let dir = crate::support::tempdir().join("shared-plugins");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::copy(plugin("conformance"), dir.join("conformance.wasm")).unwrap();
    let config = format!(
        r#"state_key_env = "PORTCULLIS_TEST_STATE_KEY"
[auth]
mode = "none"
[sandbox]
cache_dir = {cache}
reload_debounce_ms = 100
[cluster]
replica_ttl_ms = 1500
[[tenant]]
id = "t"
plugins = [{dir}]
"#,
        cache = toml_path(&root().join("target/test-artifact-cache")),
        dir = toml_path(&dir),
    );
    let redis = Redis::start().await;
    let replicas = replicas(&redis, 3, &config).await;
    let mut streams = Vec::new();
    let mut clients = Vec::new();
    for r in &replicas {
        let url = format!("{}/mcp", r.base);
        let c = Client::initialize(&url, "2025-11-25").await;
        streams.push(c.open_get_stream().await);
        clients.push(c);
        // And a 2026-07-28 listen stream on each replica.
        let listen = Client::modern(&url)
            .open_listen_stream(json!({"toolsListChanged": true}))
            .await;
        streams.push(listen);
    }

    // A plugin running on the first replica announces a change.
    let r = Client::modern(&format!("{}/mcp", replicas[0].base))
        .call_tool("test_trigger_tool_change", json!({}))
        .await;
    assert_eq!(r.status, 200, "{r:?}");
    for (i, stream) in streams.iter_mut().enumerate() {
        assert!(
            list_changed(stream).await,
            "replica {i} heard the plugin's change"
        );
    }

    // A plugin added to the shared directory.
    std::fs::copy(plugin("hello"), dir.join("hello.wasm")).unwrap();
    for (i, stream) in streams.iter_mut().enumerate() {
        assert!(list_changed(stream).await, "stream {i} heard the reload");
    }
    for (i, c) in clients.iter_mut().enumerate() {
        let tools = c.request("tools/list", json!({})).await.tool_names();
        assert!(
            tools.contains(&"hello.greet".to_string()),
            "replica {i}: {tools:?}"
        );
    }
}

/// What one load loop saw.
#[derive(Debug, Default)]
struct Seen {
    ok: usize,
    /// Session requests answered 404 (their replica went away).
    gone: usize,
    /// Everything else: a failed call, a failed re-initialize, a hang.
    failures: Vec<String>,
}

/// AC5: a rolling restart of all three replicas (SIGTERM: not ready for a moment while still
/// serving, then the listener closes and requests in flight finish) behind HAProxy checking
/// `/readyz`, under a steady load of stateless and session calls: no stateless call fails;
/// a session call succeeds or gets 404, after which a new session works; nothing hangs.
#[tokio::test]
async fn a_rolling_restart_under_load_fails_no_stateless_call() {
    rolling_restart(Balancer::HaProxy).await;
}

/// #28 AC7. The same behind nginx's round robin, which checks no health: before, a stopping
/// replica kept its port in LISTEN until the grace ended, so nginx kept sending POSTs there,
/// reset when the process exited (1–3 failed stateless calls per restart). Now the listener
/// closes when draining ends: nginx gets "connection refused" and tries the next replica.
#[tokio::test]
async fn a_rolling_restart_behind_nginx_without_health_checks_fails_no_stateless_call() {
    rolling_restart(Balancer::Nginx).await;
}

/// The balancer in front of a rolling restart.
enum Balancer {
    /// Checks `/readyz` every second.
    HaProxy,
    /// Round robin, no health checks.
    Nginx,
}

async fn rolling_restart(kind: Balancer) {
    let redis = Redis::start().await;
    let config = replica_config(NO_AUTH, "shutdown_drain_ms = 700\nshutdown_grace_ms = 5000");
    let env = [
        ("PORTCULLIS_REDIS_URL", redis.url()),
        ("PORTCULLIS_TEST_STATE_KEY", STATE_KEY.to_string()),
    ];
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let ports: Vec<u16> = (0..3).map(|_| crate::support::free_port()).collect();
    let mut replicas = Vec::new();
    for &port in &ports {
        replicas.push(Some(
            BinaryGateway::start_on_port(port, &config, &env).await,
        ));
    }
    let backends: Vec<String> = ports.iter().map(|p| format!("127.0.0.1:{p}")).collect();
    let (_haproxy, _nginx, url) = match kind {
        Balancer::HaProxy => {
            let balancer = HaProxy::start(&backends).await;
            let url = format!("{}/mcp", balancer.base);
            (Some(balancer), None, url)
        }
        Balancer::Nginx => {
            let balancer = Nginx::start(&backends).await;
            let url = format!("{}/mcp", balancer.base);
            (None, Some(balancer), url)
        }
    };
    // Until every backend passed its first health check (HAProxy).
    let settle = match kind {
        Balancer::HaProxy => Duration::from_millis(600),
        Balancer::Nginx => Duration::ZERO,
    };
    tokio::time::sleep(settle).await;

    let stop = tokio_util::sync::CancellationToken::new();
    let bounded = Duration::from_secs(20);
    let stateless = (0..3).map(|_| {
        let (url, stop) = (url.clone(), stop.clone());
        tokio::spawn(async move {
            let mut seen = Seen::default();
            while !stop.is_cancelled() {
                let mut c = Client::modern(&url);
                let call = c.call_tool("test_simple_text", json!({}));
                match tokio::time::timeout(bounded, call).await {
                    Ok(r) if r.status == 200 && !r.is_error() => seen.ok += 1,
                    Ok(r) => seen.failures.push(format!("{r:?}")),
                    Err(_) => seen.failures.push("a stateless call hung".into()),
                }
            }
            seen
        })
    });
    let sessions = (0..2).map(|_| {
        let (url, stop) = (url.clone(), stop.clone());
        tokio::spawn(async move {
            let mut seen = Seen::default();
            'session: while !stop.is_cancelled() {
                let mut c = Client::new(&url);
                let init = tokio::time::timeout(
                    bounded,
                    c.post_raw(
                        crate::support::initialize_request("2025-11-25", json!({})),
                        &[],
                    ),
                )
                .await;
                let Ok(init) = init else {
                    seen.failures.push("initialize hung".into());
                    continue;
                };
                let Some(id) = init.headers.get("mcp-session-id") else {
                    seen.failures.push(format!("initialize failed: {init:?}"));
                    continue;
                };
                c.session = Some(id.to_str().unwrap().to_string());
                while !stop.is_cancelled() {
                    let call = c.call_tool("test_simple_text", json!({}));
                    match tokio::time::timeout(bounded, call).await {
                        Ok(r) if r.status == 200 && !r.is_error() => seen.ok += 1,
                        Ok(r) if r.status == 404 => {
                            seen.gone += 1;
                            continue 'session;
                        }
                        Ok(r) => seen.failures.push(format!("{r:?}")),
                        Err(_) => seen.failures.push("a session call hung".into()),
                    }
                }
            }
            seen
        })
    });
    let (stateless, sessions): (Vec<_>, Vec<_>) = (stateless.collect(), sessions.collect());
    tokio::time::sleep(Duration::from_millis(500)).await;
    for (i, &port) in ports.iter().enumerate() {
        replicas[i].take().unwrap().terminate().await;
        replicas[i] = Some(BinaryGateway::start_on_port(port, &config, &env).await);
        // Back in the balancer (one passed check) before the next one goes.
        tokio::time::sleep(settle.max(Duration::from_millis(300))).await;
    }
    stop.cancel();
    let mut gone = 0;
    for (kind, tasks) in [("stateless", stateless), ("session", sessions)] {
        for task in tasks {
            let seen = task.await.unwrap();
            assert!(seen.failures.is_empty(), "{kind}: {:#?}", seen.failures);
            assert!(seen.ok > 10, "{kind}: the load ran: {seen:?}");
            gone += seen.gone;
        }
    }
    // Sessions on a restarted replica ended; their clients started new ones (above).
    assert!(gone >= 1, "the restarts ended some sessions");
}

fn claims(issuer: &TestIssuer, aud: &str, sub: &str) -> Value {
    json!({"iss": issuer.url, "sub": sub, "aud": aud, "exp": now() + 600, "iat": now(),
           "scope": "mcp:tools"})
}

/// A session stays its creator's on every replica: another subject, the same `sub` from
/// another issuer, and the same caller at another tenant's endpoint all get 404 on a replica
/// that forwards (the holder checks the caller itself); Redis holds neither the session id
/// nor any token.
/// Callers that are not alice@`x` of tenant `t`: (who, token, the tenant's path).
fn strangers_to_alice(x: &TestIssuer, y: &TestIssuer) -> [(&'static str, String, &'static str); 3] {
    let aud = format!("{PUBLIC}/mcp");
    [
        (
            "another subject",
            x.token("a", claims(x, &aud, "mallory")),
            "/mcp",
        ),
        (
            "alice from another issuer",
            y.token("b", claims(y, &aud, "alice")),
            "/mcp",
        ),
        (
            "alice at another tenant",
            x.token("a", claims(x, &format!("{PUBLIC}/u/mcp"), "alice")),
            "/u/mcp",
        ),
    ]
}

/// Two in-test issuers (keys `a` and `b`), Redis, and two replicas trusting both, at
/// [`PUBLIC`].
async fn two_issuers_two_replicas() -> (TestIssuer, TestIssuer, Redis, Vec<BinaryGateway>) {
    let (x, y) = (
        TestIssuer::start(&["a"]).await,
        TestIssuer::start(&["b"]).await,
    );
    let redis = Redis::start().await;
    let config = replica_config(&oauth(&[&x, &y]), &format!("public_url = \"{PUBLIC}\""));
    let replicas = replicas(&redis, 2, &config).await;
    (x, y, redis, replicas)
}

#[tokio::test]
async fn a_session_is_only_its_creators_on_every_replica() {
    let public = PUBLIC;
    let (x, y, redis, replicas) = two_issuers_two_replicas().await;
    let (one, two) = (&replicas[0], &replicas[1]);
    let aud = format!("{public}/mcp");
    let alice = x.token("a", claims(&x, &aud, "alice"));
    let mut owner = Client::new(&format!("{}/mcp", one.base)).bearer(&alice);
    owner.initialize_declaring("2025-11-25", json!({})).await;
    let session = owner.session.clone().unwrap();

    // The owner, on the other replica: forwarded, and served.
    let mut elsewhere = Client::new(&format!("{}/mcp", two.base)).bearer(&alice);
    elsewhere.session = Some(session.clone());
    let r = elsewhere.call_tool("hello.whoami", json!({})).await;
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.result()["structuredContent"]["subject"], "alice", "{r:?}");

    for (who, token, path) in strangers_to_alice(&x, &y) {
        for replica in [one, two] {
            let mut hijack = Client::new(&format!("{}{path}", replica.base)).bearer(&token);
            hijack.session = Some(session.clone());
            let r = hijack.call_tool("hello.whoami", json!({})).await;
            assert_eq!(r.status, 404, "{who} on {}: {r:?}", replica.base);
        }
    }

    let keys = redis.keys("*").await;
    let hashed = hex::encode(Sha256::digest(session.as_bytes()));
    assert!(
        keys.contains(&format!("portcullis:session:t:{hashed}")),
        "{keys:?}"
    );
    for key in &keys {
        let value = redis.cli(&["--raw", "GET", key]).await.unwrap();
        for secret in [&session, &alice] {
            assert!(
                !key.contains(secret.as_str()) && !value.contains(secret.as_str()),
                "{key} = {value} holds a secret"
            );
        }
    }
}

/// Redis over TLS with a password (`rediss://:password@…`, the CA trusted through
/// `SSL_CERT_FILE`): the replicas announce themselves and find each other's sessions, and
/// the password appears in no log.
#[tokio::test]
async fn replicas_reach_redis_over_tls_with_a_password() {
    let password = "a-redis-password-nobody-logs";
    let redis = Redis::start_tls(password).await;
    let replicas = replicas(&redis, 2, &replica_config(NO_AUTH, "")).await;
    let held = Client::initialize(&format!("{}/mcp", replicas[0].base), "2025-11-25").await;
    let mut elsewhere = Client::new(&format!("{}/mcp", replicas[1].base));
    elsewhere.session = held.session.clone();
    let r = elsewhere.call_tool("test_simple_text", json!({})).await;
    assert_eq!(
        r.status, 200,
        "forwarded over the TLS-found directory: {r:?}"
    );
    for r in &replicas {
        assert!(!log_of(r).contains(password), "the password was logged");
    }
}

/// A replica that is gone takes its sessions with it: killed, or stopped with SIGTERM (it
/// withdraws its announcement), another replica answers 404 for them, and a new session
/// there works.
#[tokio::test]
async fn a_replica_that_is_gone_takes_its_sessions_with_it() {
    let redis = Redis::start().await;
    let mut replicas = replicas(&redis, 3, &replica_config(NO_AUTH, "")).await;
    let survivor = format!("{}/mcp", replicas[2].base);
    let mut sessions = Vec::new();
    for r in &replicas[..2] {
        let c = Client::initialize(&format!("{}/mcp", r.base), "2025-11-25").await;
        sessions.push(c.session.unwrap());
    }
    let terminated = replicas.remove(1);
    terminated.terminate().await;
    // Withdrawn before it exited (#28: the withdrawal was fire-and-forget, and asserting it
    // failed under load).
    assert_eq!(
        redis.keys("portcullis:replica:*").await.len(),
        2,
        "the terminated replica withdrew its announcement before it exited"
    );
    let killed = replicas.remove(0);
    drop(killed.stop().await);
    for session in sessions {
        let mut c = Client::new(&survivor);
        c.session = Some(session);
        let r = c.request("tools/list", json!({})).await;
        assert_eq!(r.status, 404, "{r:?}");
    }
    let mut fresh = Client::initialize(&survivor, "2025-11-25").await;
    let r = fresh.call_tool("test_simple_text", json!({})).await;
    assert_eq!(r.status, 200, "{r:?}");
}

/// #28 AC6, as the attack of whoever may write to Redis without the cluster key. Before: a
/// planted session record plus an announcement naming a loopback listener (an internal IP
/// literal, so allowed) got a caller's bearer token forwarded there; a change published on the
/// changes channel was applied; a task's older sealed record written back made a finished
/// task read `working`. Now every record and message replicas act on is tagged or sealed with
/// the cluster key (bound to its key), and none of these has an effect.
#[tokio::test]
async fn what_a_redis_writer_plants_moves_no_token_no_change_and_no_task_back() {
    let catcher = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let caught = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let port = catcher.local_addr().unwrap().port();
    let c = caught.clone();
    tokio::spawn(async move {
        while let Ok((_conn, _)) = catcher.accept().await {
            c.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        }
    });
    let redis = Redis::start().await;
    let replicas = replicas(&redis, 2, &replica_config(NO_AUTH, "")).await;
    let session_key = |id: &str| {
        format!(
            "portcullis:session:t:{}",
            hex::encode(Sha256::digest(id.as_bytes()))
        )
    };

    // 1. A session "held" by a replica that announces the catcher: by hand, and by copying
    // real records under other names (a tag is bound to its key).
    let real = Client::initialize(&format!("{}/mcp", replicas[1].base), "2025-11-25").await;
    let real_record = redis
        .cli(&[
            "--raw",
            "GET",
            &session_key(real.session.as_deref().unwrap()),
        ])
        .await
        .unwrap();
    let real_announcement = redis
        .cli(&["--raw", "GET", &redis.keys("portcullis:replica:*").await[0]])
        .await
        .unwrap();
    let catcher_url = format!("http://127.0.0.1:{port}/");
    for (record, announcement) in [
        ("evil".to_string(), catcher_url.clone()),
        (real_record.clone(), catcher_url.clone()),
        (
            "evil".to_string(),
            real_announcement.replace(&backend(&replicas[1]), &format!("127.0.0.1:{port}")),
        ),
    ] {
        let planted = "planted-session";
        redis
            .cli(&["SET", &session_key(planted), &record])
            .await
            .unwrap();
        redis
            .cli(&["SET", "portcullis:replica:evil", &announcement])
            .await
            .unwrap();
        let mut c = Client::new(&format!("{}/mcp", replicas[0].base));
        c.session = Some(planted.into());
        c.authorization = Some("Bearer secret-token-for-the-catcher".into());
        let r = c.request("tools/list", json!({})).await;
        assert_eq!(r.status, 404, "{record} / {announcement}: {r:?}");
    }
    assert_eq!(
        caught.load(std::sync::atomic::Ordering::SeqCst),
        0,
        "nothing connected to the planted address"
    );
    assert!(
        log_of(&replicas[0]).contains("ignored a session record without this cluster's tag"),
        "the operator is told"
    );

    // 2. A change published by hand is not announced; the next real one is, once.
    let url = format!("{}/mcp", replicas[0].base);
    let listening = Client::initialize(&url, "2025-11-25").await;
    let mut stream = listening.open_get_stream().await;
    let forged = json!({"from": "evil", "tenant": "t", "at": 0,
        "change": {"lists": {"tools": true, "prompts": false, "resources": false}}});
    for payload in [forged.to_string(), format!("{forged}|AAAA")] {
        redis
            .cli(&["PUBLISH", "portcullis:changes", &payload])
            .await
            .unwrap();
    }
    let r = Client::modern(&format!("{}/mcp", replicas[1].base))
        .call_tool("test_trigger_tool_change", json!({}))
        .await;
    assert_eq!(r.status, 200, "{r:?}");
    assert!(list_changed(&mut stream).await, "the real change arrives");
    let mut more = 0;
    while let Ok(Some(m)) = tokio::time::timeout(Duration::from_millis(500), stream.recv()).await {
        if m["method"] == "notifications/tools/list_changed" {
            more += 1;
        }
    }
    assert_eq!(
        more, 0,
        "the forged ones (published first) were not announced"
    );
    assert!(log_of(&replicas[0]).contains("ignored a relayed change without this cluster's tag"));

    // 3. A task's record from while it worked, written back after it finished.
    let caps = json!({"io.modelcontextprotocol/clientCapabilities":
        {"extensions": {"io.modelcontextprotocol/tasks": {}}}});
    let created = Client::modern(&format!("{}/mcp", replicas[0].base))
        .request(
            "tools/call",
            json!({"name": "slow_compute", "arguments": {"seconds": 1, "label": "x"}, "_meta": caps}),
        )
        .await;
    let id = created.result()["taskId"].as_str().unwrap().to_string();
    let task_key = format!(
        "portcullis:task:t:{}",
        hex::encode(Sha256::digest(id.as_bytes()))
    );
    let working = redis.cli(&["--raw", "GET", &task_key]).await.unwrap();
    assert!(working.starts_with("l|"), "{working}");
    let get = || {
        let (url, caps, id) = (
            format!("{}/mcp", replicas[1].base),
            caps.clone(),
            id.clone(),
        );
        async move {
            Client::modern(&url)
                .request_with(
                    "tasks/get",
                    json!({"taskId": id, "_meta": caps}),
                    &[("mcp-name", &id)],
                )
                .await
        }
    };
    let mut status = Value::Null;
    for _ in 0..100 {
        status = get().await.result()["status"].clone();
        if status == "completed" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(status, "completed");
    redis.cli(&["SET", &task_key, &working]).await.unwrap();
    let r = get().await;
    assert_ne!(
        r.message.as_ref().map(|m| m["result"]["status"].clone()),
        Some(json!("working")),
        "{r:?}"
    );
    assert!(log_of(&replicas[1]).contains("older than one this replica has seen"));
}

/// While Redis is away: new sessions get 503 + `Retry-After` (no other replica could find
/// them), a session's requests on a replica that does not hold it get 503, the holder
/// serves its own sessions, stateless calls go on; once Redis is back (empty: nothing was
/// persisted) the replicas announce themselves and their sessions again and all of it works.
#[tokio::test]
async fn while_redis_is_away_sessions_wait_and_stateless_calls_go_on() {
    let mut redis = Redis::start().await;
    let mut replicas = replicas(&redis, 2, &replica_config(NO_AUTH, "")).await;
    let (one, two) = (
        format!("{}/mcp", replicas[0].base),
        format!("{}/mcp", replicas[1].base),
    );
    let mut held = Client::initialize(&one, "2025-11-25").await;
    let session = held.session.clone().unwrap();
    // Stateless calls on both replicas all along: none may fail.
    let stop = tokio_util::sync::CancellationToken::new();
    let load: Vec<_> = [one.clone(), two.clone()]
        .into_iter()
        .map(|url| {
            let stop = stop.clone();
            tokio::spawn(async move {
                let (mut ok, mut failed) = (0, Vec::new());
                while !stop.is_cancelled() {
                    let mut c = Client::modern(&url);
                    let r = c.call_tool("test_simple_text", json!({})).await;
                    if r.status == 200 {
                        ok += 1;
                    } else {
                        failed.push(format!("{r:?}"));
                    }
                }
                (ok, failed)
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(200)).await;
    redis.stop().await;

    let init = Client::new(&two)
        .post_raw(
            crate::support::initialize_request("2025-11-25", json!({})),
            &[],
        )
        .await;
    assert_eq!(init.status, 503, "{init:?}");
    assert_eq!(init.headers["retry-after"], "1", "{init:?}");
    let mut elsewhere = Client::new(&two);
    elsewhere.session = Some(session.clone());
    let r = elsewhere.request("tools/list", json!({})).await;
    assert_eq!(r.status, 503, "{r:?}");
    let r = held.call_tool("test_simple_text", json!({})).await;
    assert_eq!(r.status, 200, "the holder serves its own session: {r:?}");
    for url in [&one, &two] {
        let r = Client::modern(url)
            .call_tool("test_simple_text", json!({}))
            .await;
        assert_eq!(r.status, 200, "stateless: {r:?}");
    }

    redis.resume().await;
    let mut recovered = false;
    for _ in 0..60 {
        let r = elsewhere.request("tools/list", json!({})).await;
        if r.status == 200 {
            recovered = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        recovered,
        "the session is found from the other replica again"
    );
    let mut fresh = Client::initialize(&two, "2025-11-25").await;
    let r = fresh.call_tool("test_simple_text", json!({})).await;
    assert_eq!(r.status, 200, "{r:?}");
    stop.cancel();
    for task in load {
        let (ok, failed) = task.await.unwrap();
        assert!(failed.is_empty(), "stateless calls failed: {failed:#?}");
        assert!(ok > 10, "the load ran ({ok} calls)");
    }
    for r in &mut replicas {
        assert!(r.is_running(), "no replica crashed");
        assert!(
            !log_of(r).contains(&redis.url()),
            "the Redis URL is never logged"
        );
    }
}

/// #20: MCP Tasks are shared. A task created on one replica is answered for by the other
/// (working, then its result); a cancel on the other replica stops it where it runs, and
/// answers sent to the other replica reach it. Another subject, the same `sub` from another
/// issuer, or the same caller at another tenant get "not found" on either replica; Redis
/// holds neither the task id, nor its result, nor a token in clear.
#[tokio::test]
async fn tasks_are_answered_for_by_every_replica_and_only_for_their_owner() {
    let public = PUBLIC;
    let (x, y, redis, replicas) = two_issuers_two_replicas().await;
    let (one, two) = (&replicas[0], &replicas[1]);
    let aud = format!("{public}/mcp");
    let alice = x.token("a", claims(&x, &aud, "alice"));
    let caps = json!({"io.modelcontextprotocol/clientCapabilities":
        {"elicitation": {}, "extensions": {"io.modelcontextprotocol/tasks": {}}}});
    let call = |replica: &BinaryGateway, token: &str, tool: &str, args: Value| {
        let (url, token, caps) = (
            format!("{}/mcp", replica.base),
            token.to_string(),
            caps.clone(),
        );
        let params = json!({"name": tool, "arguments": args, "_meta": caps});
        async move {
            Client::modern(&url)
                .bearer(&token)
                .request("tools/call", params)
                .await
        }
    };
    let on_task =
        |replica: &BinaryGateway, path: &str, token: &str, method: &str, id: &str, extra: Value| {
            let url = format!("{}{path}", replica.base);
            let (token, method, id) = (token.to_string(), method.to_string(), id.to_string());
            let mut params = json!({"taskId": id, "_meta": caps.clone()});
            if let Value::Object(extra) = extra {
                params.as_object_mut().unwrap().extend(extra);
            }
            async move {
                Client::modern(&url)
                    .bearer(&token)
                    .request_with(&method, params, &[("mcp-name", &id)])
                    .await
            }
        };
    let until = |replica: &BinaryGateway, id: String, status: &'static str| {
        let (url, token, caps) = (format!("{}/mcp", replica.base), alice.clone(), caps.clone());
        async move {
            for _ in 0..100 {
                let params = json!({"taskId": id, "_meta": caps});
                let r = Client::modern(&url)
                    .bearer(&token)
                    .request_with("tasks/get", params, &[("mcp-name", &id)])
                    .await;
                if r.result()["status"] == status {
                    return r;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            panic!("task {id} never reached {status} on {url}");
        }
    };

    // Created on one, answered for by the other: working, then the result.
    let created = call(
        one,
        &alice,
        "slow_compute",
        json!({"seconds": 2, "label": "shared"}),
    )
    .await;
    assert_eq!(created.result()["resultType"], "task", "{created:?}");
    let id = created.result()["taskId"].as_str().unwrap().to_string();
    let seen = on_task(two, "/mcp", &alice, "tasks/get", &id, json!({})).await;
    assert_eq!(seen.result()["status"], "working", "{seen:?}");
    let done = until(two, id.clone(), "completed").await;
    assert_eq!(
        done.result()["result"]["content"][0]["text"],
        "shared: computed after 2 s",
        "{done:?}"
    );

    // Nobody else, on either replica.
    for (who, token, path) in &strangers_to_alice(&x, &y) {
        for replica in [one, two] {
            for method in ["tasks/get", "tasks/cancel"] {
                let r = on_task(replica, path, token, method, &id, json!({})).await;
                assert_eq!(
                    r.error()["code"],
                    -32602,
                    "{who} {method} on {}: {r:?}",
                    replica.base
                );
            }
        }
    }

    // Cancelled from the other replica: stopped where it runs.
    let long = call(one, &alice, "slow_compute", json!({"seconds": 60})).await;
    let long_id = long.result()["taskId"].as_str().unwrap().to_string();
    let ack = on_task(two, "/mcp", &alice, "tasks/cancel", &long_id, json!({})).await;
    assert_eq!(ack.result()["resultType"], "complete", "{ack:?}");
    until(one, long_id.clone(), "cancelled").await;
    until(two, long_id.clone(), "cancelled").await;

    // Answered through the other replica: the task resumes where it runs.
    let asking = call(one, &alice, "confirm_delete", json!({})).await;
    let asking_id = asking.result()["taskId"].as_str().unwrap().to_string();
    let waiting = until(two, asking_id.clone(), "input_required").await;
    assert!(
        waiting.result()["inputRequests"]["confirm"].is_object(),
        "{waiting:?}"
    );
    let answers =
        json!({"inputResponses": {"confirm": {"action": "accept", "content": {"confirm": true}}}});
    let ack = on_task(two, "/mcp", &alice, "tasks/update", &asking_id, answers).await;
    assert_eq!(ack.result()["resultType"], "complete", "{ack:?}");
    let done = until(two, asking_id.clone(), "completed").await;
    assert_eq!(
        done.result()["result"]["content"][0]["text"],
        "Deleted.",
        "{done:?}"
    );

    // Redis holds no task id, result or token in clear.
    for key in redis.keys("*").await {
        let value = redis.cli(&["--raw", "GET", &key]).await.unwrap_or_default();
        for secret in [&id, &long_id, &alice, &"computed after".to_string()] {
            assert!(
                !key.contains(secret.as_str()) && !value.contains(secret.as_str()),
                "{key} = {value} holds a secret"
            );
        }
    }
}

/// #31 AC1: a DPoP proof is spent once for every replica — replayed to another replica, it is
/// refused there — and a request another replica forwards (its session is held elsewhere) has
/// its proof spent by the replica that serves it, not by the one that forwards it: the
/// forwarded call succeeds, and the same proof replayed anywhere afterwards is refused.
#[tokio::test]
async fn a_dpop_proof_is_spent_once_for_every_replica_and_a_forwarded_one_where_it_is_served() {
    use crate::support::dpop::DpopKey;
    let x = TestIssuer::start(&["a"]).await;
    let redis = Redis::start().await;
    let config = replica_config(&oauth(&[&x]), &format!("public_url = \"{PUBLIC}\""));
    let replicas = replicas(&redis, 2, &config).await;
    let (one, two) = (&replicas[0], &replicas[1]);
    let htu = format!("{PUBLIC}/mcp");
    let key = DpopKey::new();
    let mut bound = claims(&x, &htu, "alice");
    bound["cnf"] = json!({"jkt": key.jkt()});
    let token = x.token("a", bound);
    let dpop = format!("DPoP {token}");
    let call = |replica: &BinaryGateway, session: Option<&str>, proof: String| {
        let mut c = Client::new(&format!("{}/mcp", replica.base));
        if session.is_none() {
            c = Client::modern(&c.url);
        }
        c.session = session.map(str::to_string);
        c.authorization = Some(dpop.clone());
        async move {
            c.request_with(
                "tools/call",
                json!({"name": "hello.whoami", "arguments": {}}),
                &[("dpop", proof.as_str())],
            )
            .await
        }
    };
    // Stateless: once on one replica; the same proof on the other is a replay.
    let proof = key.proof("POST", &htu, Some(&token));
    let r = call(one, None, proof.clone()).await;
    assert_eq!(r.result()["structuredContent"]["subject"], "alice", "{r:?}");
    let r = call(two, None, proof).await;
    assert_eq!(r.status, 401, "{r:?}");
    assert!(r.body.contains("presented before"), "{r:?}");

    // A session held by one, called on two: forwarded with its proof, spent by one.
    let mut owner = Client::new(&format!("{}/mcp", one.base));
    owner.authorization = Some(dpop.clone());
    let init = owner
        .post_raw(
            crate::support::initialize_request("2025-11-25", json!({})),
            &[("dpop", key.proof("POST", &htu, Some(&token)).as_str())],
        )
        .await;
    assert_eq!(init.status, 200, "{init:?}");
    let session = init.headers["mcp-session-id"].to_str().unwrap().to_string();
    let forwarded = key.proof("POST", &htu, Some(&token));
    let r = call(two, Some(&session), forwarded.clone()).await;
    assert_eq!(
        r.status, 200,
        "the forwarding replica must not spend the proof: {r:?}"
    );
    assert_eq!(r.result()["structuredContent"]["subject"], "alice", "{r:?}");
    for replica in [one, two] {
        let r = call(replica, Some(&session), forwarded.clone()).await;
        assert_eq!(r.status, 401, "replayed at {}: {r:?}", replica.base);
        let r = call(replica, None, forwarded.clone()).await;
        assert_eq!(
            r.status, 401,
            "replayed stateless at {}: {r:?}",
            replica.base
        );
    }
    // Redis holds digests only: neither the token nor the proof.
    for k in redis.keys("portcullis:dpop:*").await {
        assert!(!k.contains(&token) && !k.contains(&key.jkt()), "{k}");
    }
    assert!(!redis.keys("portcullis:dpop:*").await.is_empty());
}

/// #32: a single-use approval runs its call once for all replicas: used on one, it is refused
/// on the other (the spent set is shared on Redis).
#[tokio::test]
async fn a_single_use_approval_runs_once_across_replicas() {
    let x = TestIssuer::start(&["a"]).await;
    let redis = Redis::start().await;
    let config = format!(
        r#"state_key_env = "PORTCULLIS_TEST_STATE_KEY"
public_url = "{PUBLIC}"
{auth}
[sandbox]
cache_dir = {cache}
[cluster]
replica_ttl_ms = 1500
[[tenant]]
id = "t"
plugins = [{payments}]
[tenant.plugin.payments.approvals."payments.refund"]
type = "payment_refund"
bind = ["amount", "currency", "account"]
"#,
        auth = oauth(&[&x]),
        cache = toml_path(&root().join("target/test-artifact-cache")),
        payments = toml_path(&plugin("payments")),
    );
    let replicas = replicas(&redis, 2, &config).await;
    let aud = format!("{PUBLIC}/mcp");
    let arguments = json!({"amount": "5.00", "currency": "EUR", "account": "DE02"});
    let mut claims = claims(&x, &aud, "alice");
    claims["scope"] = json!("mcp:tools payments:write");
    claims["jti"] = json!("approval-1");
    claims["authorization_details"] = json!([{"type": "payment_refund", "locations": [aud],
        "actions": ["tools/call"], "tool": "payments.refund", "subject": "alice",
        "arguments": arguments}]);
    let approved = x.token("a", claims);
    let run = |replica: &BinaryGateway| {
        let mut c = Client::modern(&format!("{}/mcp", replica.base)).bearer(&approved);
        let arguments = arguments.clone();
        async move { c.call_tool("payments.refund", arguments).await }
    };
    let first = run(&replicas[0]).await;
    assert_eq!(
        first.text(),
        "refunded 5.00 EUR to DE02 for alice [approved: payment_refund]",
        "{first:?}"
    );
    let again = run(&replicas[1]).await;
    assert_eq!(again.status, 403, "{again:?}");
    assert!(
        again.headers["www-authenticate"]
            .to_str()
            .unwrap()
            .contains("insufficient_authorization"),
        "{again:?}"
    );
}
