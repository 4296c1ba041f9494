//! Tenants side by side: tokens, sessions, plugins and services stay with their tenant; one
//! tenant's runaway plugin cannot starve another; quotas answer 429 with `Retry-After`;
//! tenants sharing a path are told apart by host; `/readyz` waits for signing keys.

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::support::peers::DownstreamApi;
use crate::support::peers::{TestIssuer, now};
use crate::support::{Client, Reply, TestGateway, plugin, toml_path};

fn claims(issuer: &TestIssuer, aud: &str, sub: &str) -> Value {
    json!({"iss": issuer.url, "sub": sub, "aud": aud, "exp": now() + 600, "iat": now(),
           "scope": "mcp:tools"})
}

async fn call(url: &str, token: &str, tool: &str, args: Value) -> Reply {
    Client::modern(url)
        .bearer(token)
        .call_tool(tool, args)
        .await
}

#[tokio::test]
async fn tenants_keep_their_tokens_sessions_plugins_and_services() {
    let (issuer_a, issuer_b) = (
        TestIssuer::start(&["a"]).await,
        TestIssuer::start(&["b"]).await,
    );
    let api = DownstreamApi::start().await;
    let body = format!(
        "[auth]\nmode = \"oauth\"\nscopes_supported = [\"mcp:tools\"]\n\
         [[auth.issuer]]\nissuer = \"{a}\"\n[[auth.issuer]]\nissuer = \"{b}\"\n\
         [[tenant]]\nid = \"a\"\npath = \"/t/a/mcp\"\nissuers = [\"{a}\"]\nplugins = [{hello}, {probe}]\n\
         [[tenant.service]]\nname = \"notes\"\nbase_url = \"{api}/api\"\n\
         [tenant.plugin.probe]\nservices = [\"notes\"]\n\
         [[tenant]]\nid = \"b\"\npath = \"/t/b/mcp\"\nissuers = [\"{b}\"]\nplugins = [{probe}]\n",
        a = issuer_a.url,
        b = issuer_b.url,
        api = api.base,
        hello = toml_path(&plugin("hello")),
        probe = toml_path(&plugin("probe")),
    );
    let gw = TestGateway::start("", &body).await;
    let (url_a, url_b) = (gw.url("/t/a/mcp"), gw.url("/t/b/mcp"));
    let alice_a = issuer_a.token("a", claims(&issuer_a, &url_a, "alice"));
    let bob_b = issuer_b.token("b", claims(&issuer_b, &url_b, "bob"));

    // Each tenant's metadata names only its own issuer.
    for (path, issuer) in [("/t/a/mcp", &issuer_a), ("/t/b/mcp", &issuer_b)] {
        let doc: Value =
            reqwest::get(gw.url(&format!("/.well-known/oauth-protected-resource{path}")))
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
        assert_eq!(doc["resource"], gw.url(path));
        assert_eq!(doc["authorization_servers"], json!([issuer.url]));
    }

    // Tokens: A's token works at A only; a token from A's issuer is refused at B even when
    // it names B's audience, because B does not trust that issuer.
    assert!(
        !call(&url_a, &alice_a, "probe.echo", json!({}))
            .await
            .is_error()
    );
    assert!(
        !call(&url_b, &bob_b, "probe.echo", json!({}))
            .await
            .is_error()
    );
    for (token, why) in [
        (alice_a.clone(), "A's token at B"),
        (
            issuer_a.token("a", claims(&issuer_a, &url_b, "mallory")),
            "A's issuer, B's audience",
        ),
    ] {
        let r = call(&url_b, &token, "probe.echo", json!({})).await;
        assert_eq!(r.status, 401, "{why}: {r:?}");
        let challenge = r.headers["www-authenticate"].to_str().unwrap();
        assert!(
            challenge.contains("error=\"invalid_token\""),
            "{why}: {challenge}"
        );
        assert!(
            challenge.contains("/t/b/mcp"),
            "B's own metadata: {challenge}"
        );
    }

    // Sessions: A's session id means nothing at B.
    let session_a =
        Client::initialize_with(&url_a, "2025-11-25", Some(&format!("Bearer {alice_a}"))).await;
    let mut at_b = Client::new(&url_b).bearer(&bob_b);
    at_b.session = session_a.session.clone();
    let r = at_b.request("tools/list", json!({})).await;
    assert_eq!(r.status, 404, "{r:?}");

    // Plugins: B lists only its own tools and cannot call A's.
    let mut list_b = Client::modern(&url_b).bearer(&bob_b);
    let names = list_b.request("tools/list", json!({})).await.tool_names();
    assert!(names.iter().all(|n| n.starts_with("probe.")), "{names:?}");
    let mut list_a = Client::modern(&url_a).bearer(&alice_a);
    let names_a = list_a.request("tools/list", json!({})).await.tool_names();
    let hello_tool = names_a.iter().find(|n| n.starts_with("hello.")).unwrap();
    let r = call(&url_b, &bob_b, hello_tool, json!({"name": "x"})).await;
    assert!(
        r.error()["message"]
            .as_str()
            .unwrap()
            .contains("Unknown tool"),
        "{r:?}"
    );

    // Services: A's probe reaches A's service; B's copy of the same plugin cannot name it.
    let r = call(
        &url_a,
        &alice_a,
        "probe.fetch",
        json!({"service": "notes", "path": "/hello"}),
    )
    .await;
    assert!(r.text().starts_with("status 200"), "{r:?}");
    let r = call(
        &url_b,
        &bob_b,
        "probe.fetch",
        json!({"service": "notes", "path": "/hello"}),
    )
    .await;
    assert!(r.text().contains("UnknownService"), "{r:?}");
    assert_eq!(
        api.authorizations().len(),
        1,
        "only A's call reached the API"
    );
}

// The gateway runs in this test's runtime: give it the worker threads a server has here.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_runaway_plugin_in_one_tenant_does_not_starve_another() {
    // A pool of 8 instances: tenant a may use 2 of them, tenant b the other 6.
    let body = format!(
        "[sandbox]\nmax_instances = 8\n[auth]\nmode = \"none\"\n\
         [[tenant]]\nid = \"a\"\nplugins = [{probe}]\n[tenant.limits]\ndeadline_ms = 3000\n\
         [tenant.quota]\nmax_instances = 2\n\
         [[tenant]]\nid = \"b\"\nplugins = [{probe}]\n",
        probe = toml_path(&plugin("probe")),
    );
    let gw = TestGateway::start("", &body).await;
    let (url_a, url_b) = (gw.url("/mcp"), gw.url("/t/b/mcp"));
    // Twelve calls that spin until their deadline, far more than a's share.
    let runaway: Vec<_> = (0..12)
        .map(|_| {
            let url = url_a.clone();
            tokio::spawn(async move {
                Client::modern(&url)
                    .call_tool("probe.spin", json!({}))
                    .await
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(300)).await;
    // Meanwhile b's calls succeed promptly, every one of them.
    for i in 0..5 {
        let started = Instant::now();
        let r = Client::modern(&url_b)
            .call_tool("probe.echo", json!({"i": i}))
            .await;
        let took = started.elapsed();
        assert!(!r.is_error(), "{r:?}");
        assert!(
            took < Duration::from_secs(1),
            "tenant b waited {took:?} while a ran away"
        );
    }
    let mut timed_out = 0;
    let mut waited_for_share = 0;
    for r in runaway {
        let r = r.await.unwrap();
        assert!(r.is_error(), "a runaway call ends as a tool error: {r:?}");
        let text = r.text();
        if text.contains("deadline") {
            timed_out += 1;
        } else if text.contains("instances of this tenant's share are busy") {
            waited_for_share += 1;
        } else {
            panic!("unexpected failure: {text}");
        }
    }
    // Never more than a's share ran at once (calls that got a freed slot before their own
    // deadline ran after the first ones, not beside them).
    let probe_a = &gw.tenants[0].plugins.catalog().plugins[0].code;
    assert_eq!(
        probe_a.peak_instances(),
        2,
        "instances alive at once in tenant a"
    );
    assert!(
        timed_out >= 2 && waited_for_share >= 6,
        "{timed_out} timed out, {waited_for_share} waited"
    );
    assert_eq!(timed_out + waited_for_share, 12);
}

#[tokio::test]
async fn rate_limits_and_concurrency_caps_answer_429_with_retry_after() {
    let issuer = TestIssuer::start(&["a"]).await;
    let body = format!(
        "[auth]\nmode = \"oauth\"\nscopes_supported = [\"mcp:tools\"]\n[[auth.issuer]]\nissuer = \"{iss}\"\n\
         [[tenant]]\nid = \"a\"\nplugins = [{probe}]\n\
         [tenant.quota]\nrequests_per_minute = 5\nsubject_requests_per_minute = 3\n\
         [[tenant]]\nid = \"b\"\nplugins = [{probe}]\n\
         [[tenant]]\nid = \"c\"\nplugins = [{probe}]\n[tenant.quota]\nmax_concurrent_requests = 1\n",
        iss = issuer.url,
        probe = toml_path(&plugin("probe")),
    );
    let gw = TestGateway::start("", &body).await;
    let (url_a, url_b, url_c) = (gw.url("/mcp"), gw.url("/t/b/mcp"), gw.url("/t/c/mcp"));
    let token = |aud: &str, sub: &str| issuer.token("a", claims(&issuer, aud, sub));
    let (alice, bob) = (token(&url_a, "alice"), token(&url_a, "bob"));

    // alice: 3 per minute.
    for _ in 0..3 {
        assert!(
            !call(&url_a, &alice, "probe.echo", json!({}))
                .await
                .is_error()
        );
    }
    let r = call(&url_a, &alice, "probe.echo", json!({})).await;
    assert_eq!(r.status, 429, "{r:?}");
    let wait: u64 = r.headers["retry-after"].to_str().unwrap().parse().unwrap();
    assert!(
        (1..=20).contains(&wait),
        "the next of 3/min is ≤ 20 s away: {wait}"
    );
    assert_eq!(r.error()["code"], -32000);
    assert_eq!(r.error()["data"]["limit"], "subject_rate");
    assert!(
        r.message.as_ref().unwrap()["id"].is_number(),
        "the error answers the request's id: {r:?}"
    );

    // bob is his own subject, until the tenant's 5 per minute are spent.
    assert!(!call(&url_a, &bob, "probe.echo", json!({})).await.is_error());
    assert!(!call(&url_a, &bob, "probe.echo", json!({})).await.is_error());
    let r = call(&url_a, &bob, "probe.echo", json!({})).await;
    assert_eq!(r.status, 429, "{r:?}");
    assert_eq!(r.error()["data"]["limit"], "tenant_rate");
    assert!(r.headers.contains_key("retry-after"));

    // Another tenant is unaffected.
    let carol_b = token(&url_b, "carol");
    for _ in 0..6 {
        assert!(
            !call(&url_b, &carol_b, "probe.echo", json!({}))
                .await
                .is_error()
        );
    }

    // c admits one request at a time: a second while the first sleeps is refused.
    let dave_c = token(&url_c, "dave");
    let slow = {
        let (url, t) = (url_c.clone(), dave_c.clone());
        tokio::spawn(async move { call(&url, &t, "probe.sleep", json!({"ms": 1500})).await })
    };
    tokio::time::sleep(Duration::from_millis(400)).await;
    let r = call(&url_c, &dave_c, "probe.echo", json!({})).await;
    assert_eq!(r.status, 429, "{r:?}");
    assert_eq!(r.headers["retry-after"], "1");
    assert_eq!(r.error()["data"]["limit"], "concurrency");
    assert!(!slow.await.unwrap().is_error());
    assert!(
        !call(&url_c, &dave_c, "probe.echo", json!({}))
            .await
            .is_error()
    );
}

#[tokio::test]
async fn tenants_sharing_a_path_are_told_apart_by_host() {
    let body = format!(
        "[auth]\nmode = \"none\"\n\
         [[tenant]]\nid = \"x\"\npath = \"/mcp\"\nhosts = [\"x.test\"]\nplugins = [{hello}]\n\
         [[tenant]]\nid = \"y\"\npath = \"/mcp\"\nhosts = [\"y.test\"]\nplugins = [{probe}]\n",
        hello = toml_path(&plugin("hello")),
        probe = toml_path(&plugin("probe")),
    );
    let gw = TestGateway::start("", &body).await;
    let url = gw.url("/mcp");
    let list = |host: &'static str| {
        let url = url.clone();
        async move {
            Client::modern(&url)
                .request_with("tools/list", json!({}), &[("host", host)])
                .await
        }
    };
    let x = list("x.test").await.tool_names();
    assert!(
        !x.is_empty() && x.iter().all(|n| n.starts_with("hello.")),
        "{x:?}"
    );
    let y = list("y.test:8080").await.tool_names();
    assert!(
        !y.is_empty() && y.iter().all(|n| n.starts_with("probe.")),
        "{y:?}"
    );
    // A host no tenant serves is not this gateway's: refused before any routing.
    let none = list("z.test").await;
    assert_eq!(none.status, 403, "{none:?}");
}

#[tokio::test]
async fn readiness_waits_for_every_issuers_keys() {
    let up = TestIssuer::start(&["a"]).await;
    // An issuer that is not running: a port bound and released.
    let down = format!("http://127.0.0.1:{}", crate::support::free_port());
    let body = format!(
        "[auth]\nmode = \"oauth\"\nscopes_supported = [\"mcp:tools\"]\n\
         [[auth.issuer]]\nissuer = \"{}\"\n[[auth.issuer]]\nissuer = \"{down}\"\n\
         [[tenant]]\nid = \"a\"\nplugins = [{}]\n",
        up.url,
        toml_path(&plugin("probe")),
    );
    let gw = TestGateway::start("", &body).await;
    assert_eq!(
        reqwest::get(gw.url("/healthz")).await.unwrap().status(),
        200
    );
    let mut last = Value::Null;
    for _ in 0..50 {
        let r = reqwest::get(gw.url("/readyz")).await.unwrap();
        assert_eq!(r.status(), 503);
        last = r.json().await.unwrap();
        if last["issuers_without_keys"] == json!([down]) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(last["issuers_without_keys"], json!([down]), "{last}");
    assert_eq!(last["plugins"]["a"]["loaded"], 1);

    // With only the reachable issuer, it becomes ready once the keys are in.
    let body = format!(
        "[auth]\nmode = \"oauth\"\nscopes_supported = [\"mcp:tools\"]\n[[auth.issuer]]\nissuer = \"{}\"\n\
         [[tenant]]\nid = \"a\"\nplugins = [{}]\n",
        up.url,
        toml_path(&plugin("probe")),
    );
    let gw = TestGateway::start("", &body).await;
    let mut status = 0;
    for _ in 0..50 {
        status = reqwest::get(gw.url("/readyz"))
            .await
            .unwrap()
            .status()
            .as_u16();
        if status == 200 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(status, 200);
}

#[test]
fn the_multi_tenant_example_is_valid() {
    let c = portcullis::config::Config::load(&crate::support::root().join("examples/tenants.toml"))
        .expect("examples/tenants.toml is valid");
    let shares: Vec<u32> = c.tenants.iter().map(|t| c.instance_share(t)).collect();
    assert_eq!(shares, [48, 16]);
    assert_eq!(
        c.tenant_resource(&c.tenants[1]),
        "http://127.0.0.1:8080/t/team-b/mcp"
    );
}

/// #28 AC2. Before: `max_concurrent_requests` was given back when a 2025 session call's
/// response stream ended — the client gone — while rmcp went on running the call, so a client
/// that hangs up could keep any number of calls running under a cap of 1. Now the handler
/// holds the place until the call is over.
#[tokio::test]
async fn a_client_that_hangs_up_keeps_its_place_until_its_call_is_over() {
    let body = format!(
        "[auth]\nmode = \"none\"\n[limits]\ndeadline_ms = 20000\n\
         [[tenant]]\nid = \"c\"\nplugins = [{probe}]\n[tenant.quota]\nmax_concurrent_requests = 1\n",
        probe = toml_path(&plugin("probe")),
    );
    let gw = TestGateway::start("", &body).await;
    let url = gw.url("/mcp");
    // A client that may be asked for input: its session's calls run through rmcp's worker.
    let session = Client::initialize_with(&url, "2025-11-25", None).await;
    let started = Instant::now();
    let hung_up = reqwest::Client::new()
        .post(&url)
        .header("accept", "application/json, text/event-stream")
        .header("content-type", "application/json")
        .header("mcp-protocol-version", "2025-11-25")
        .header("mcp-session-id", session.session.as_deref().unwrap())
        .body(
            json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call",
                   "params": {"name": "probe.sleep", "arguments": {"ms": 6000}}})
            .to_string(),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(hung_up.status(), 200);
    drop(hung_up);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let r = Client::modern(&url)
        .call_tool("probe.echo", json!({}))
        .await;
    assert!(
        started.elapsed() < Duration::from_millis(6000),
        "still within the first call"
    );
    assert_eq!(r.status, 429, "the first call still runs: {r:?}");
    assert_eq!(r.error()["data"]["limit"], "concurrency");
    // Once it is over, the place is free again (waited for, not timed).
    let mut freed = false;
    for _ in 0..200 {
        let r = Client::modern(&url)
            .call_tool("probe.echo", json!({}))
            .await;
        if r.status == 200 {
            freed = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(freed, "the place is given back when the call ends");
}

/// #28. Before: `/readyz` showed its details (every tenant's plugin counts, every issuer
/// still without keys) to an admin token of any tenant. Now a tenant's admin sees its own
/// tenant only; the whole gateway is shown to loopback operators.
#[tokio::test]
async fn readiness_details_show_a_tenants_admin_only_its_tenant() {
    let (issuer_a, issuer_b) = (
        TestIssuer::start(&["a"]).await,
        TestIssuer::start(&["b"]).await,
    );
    let body = format!(
        "[auth]\nmode = \"oauth\"\nscopes_supported = [\"mcp:tools\"]\n\
         [[auth.issuer]]\nissuer = \"{a}\"\n[[auth.issuer]]\nissuer = \"{b}\"\n\
         [[tenant]]\nid = \"tenant-a\"\npath = \"/t/a/mcp\"\nissuers = [\"{a}\"]\nplugins = [{hello}]\n\
         [[tenant]]\nid = \"tenant-b\"\npath = \"/t/b/mcp\"\nissuers = [\"{b}\"]\nplugins = [{probe}]\n",
        a = issuer_a.url,
        b = issuer_b.url,
        hello = toml_path(&plugin("hello")),
        probe = toml_path(&plugin("probe")),
    );
    let gw = TestGateway::start("", &body).await;
    let url_a = gw.url("/t/a/mcp");
    let mut admin = claims(&issuer_a, &url_a, "ops");
    admin["scope"] = json!("mcp:tools portcullis:admin");
    let admin_a = issuer_a.token("a", admin);
    let gateway = portcullis::Portcullis::start(gw.gateway_config.clone())
        .await
        .unwrap();
    use tower::ServiceExt as _;
    // Through the router, as a remote peer (no loopback address) would arrive.
    let resp = gateway
        .router()
        .oneshot(
            http::Request::get("/readyz")
                .header("host", "127.0.0.1")
                .header("authorization", format!("Bearer {admin_a}"))
                .body(axum::body::Body::empty())
                .unwrap(),
        )
        .await
        .unwrap();
    let body = axum::body::to_bytes(resp.into_body(), 1 << 20)
        .await
        .unwrap();
    let details: Value = serde_json::from_slice(&body).unwrap();
    assert!(details["plugins"]["tenant-a"].is_object(), "{details}");
    assert!(
        details["plugins"].get("tenant-b").is_none(),
        "nothing of another tenant: {details}"
    );
    assert!(!details.to_string().contains(&issuer_b.url), "{details}");
}
