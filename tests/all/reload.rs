//! Hot reload of a plugin directory: broken updates keep the old version serving, deletes and
//! additions change the lists and notify clients, and a restart with a warm artifact cache
//! does not compile.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::json;

use crate::support::{Client, TestGateway, plugin, tempdir, toml_path};

/// Write `bytes` to `path` the way deploys should: a temporary file, then a rename.
fn deploy(path: &Path, bytes: &[u8]) {
    let tmp = path.with_extension("partial");
    std::fs::write(&tmp, bytes).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

/// Tenant `t` serving every plugin in `dir`, watched (100 ms debounce), compiled into `cache`.
async fn gateway_watching(dir: &Path, cache: &Path) -> TestGateway {
    TestGateway::from_toml(&format!(
        r#"
        [sandbox]
        max_instances = 16
        reload_debounce_ms = 100
        cache_dir = {cache}
        [auth]
        mode = "none"

        [[tenant]]
        id = "t"
        plugins = [{dir}]
        "#,
        cache = toml_path(cache),
        dir = toml_path(dir),
    ))
    .await
}

/// Wait (up to 10 s) until the tenant's catalog satisfies `ready`.
async fn until(
    gw: &TestGateway,
    what: &str,
    ready: impl Fn(&portcullis::plugins::Catalog) -> bool,
) {
    for _ in 0..200 {
        if ready(&gw.tenants[0].plugins.catalog()) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("timed out waiting for: {what}");
}

async fn greet(gw: &TestGateway) -> String {
    let r = Client::modern(&gw.url("/mcp"))
        .call_tool("hello.greet", json!({"name": "reload"}))
        .await;
    r.text()
}

fn plugin_dir() -> (PathBuf, PathBuf) {
    let root = tempdir();
    let dir = root.join("plugins");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::copy(plugin("hello"), dir.join("hello.wasm")).unwrap();
    (dir, root.join("cache"))
}

#[tokio::test]
async fn broken_updates_keep_the_old_version_serving_and_a_fix_recovers() {
    let (dir, cache) = plugin_dir();
    let gw = gateway_watching(&dir, &cache).await;
    assert_eq!(greet(&gw).await, "Hello, reload!");
    let good = std::fs::read(plugin("hello")).unwrap();
    let hello = dir.join("hello.wasm");
    let failure = |c: &portcullis::plugins::Catalog| {
        c.failures
            .iter()
            .map(|f| f.error.clone())
            .collect::<Vec<_>>()
            .join("\n")
    };

    // A truncated file.
    deploy(&hello, &good[..good.len() / 2]);
    until(&gw, "the truncated file is refused", |c| {
        failure(c).contains("still serving the previous version")
    })
    .await;
    assert_eq!(greet(&gw).await, "Hello, reload!");
    // The inventory shows what serves and why the update was refused (loopback, auth off).
    let inventory: serde_json::Value = reqwest::get(gw.url("/admin/plugins"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let entry = &inventory["plugins"][0];
    assert_eq!(entry["name"], "hello");
    assert_eq!(entry["tools"][0]["name"], "hello.greet");
    assert!(
        entry["last_error"]
            .as_str()
            .is_some_and(|e| e.contains("still serving the previous version")),
        "{inventory}"
    );

    // A component of the wrong world.
    deploy(&hello, &std::fs::read(plugin("wrong-world")).unwrap());
    until(&gw, "the wrong world is refused", |c| {
        let f = failure(c);
        f.contains("does not implement") || f.contains("wrong") || f.contains("world")
    })
    .await;
    assert_eq!(greet(&gw).await, "Hello, reload!");

    // Back to good, then an invalid manifest: the error names the file and the key.
    deploy(&hello, &good);
    until(&gw, "the good file loads", |c| c.failures.is_empty()).await;
    deploy(&dir.join("hello.toml"), b"deadline_ms = 0\n");
    until(&gw, "the bad manifest is refused", |c| {
        failure(c).contains("hello.toml: deadline_ms: must be greater than 0")
    })
    .await;
    assert_eq!(greet(&gw).await, "Hello, reload!");
    deploy(&dir.join("hello.toml"), b"unknown_key = 1\n");
    until(&gw, "the unknown manifest key is refused", |c| {
        failure(c).contains("hello.toml: line 1: unknown field `unknown_key`")
    })
    .await;

    // A second plugin declaring the same tool names is refused; hello keeps serving.
    std::fs::remove_file(dir.join("hello.toml")).unwrap();
    deploy(&dir.join("hello2.wasm"), &good);
    until(&gw, "the duplicate is refused", |c| {
        failure(c).contains("is already provided by plugin `hello`")
    })
    .await;
    assert_eq!(greet(&gw).await, "Hello, reload!");
    std::fs::remove_file(dir.join("hello2.wasm")).unwrap();
    until(&gw, "everything is healthy again", |c| {
        c.failures.is_empty() && c.plugins.len() == 1
    })
    .await;
}

#[tokio::test]
async fn a_valid_manifest_applies_without_a_restart() {
    let (dir, cache) = plugin_dir();
    let gw = gateway_watching(&dir, &cache).await;
    deploy(
        &dir.join("hello.toml"),
        b"tools = [\"hello.greet\"]\nscopes = { \"hello.greet\" = [\"mcp:tools\"] }\n",
    );
    until(&gw, "the allow-list applies", |c| {
        c.tool("hello.whoami").is_none() && c.tool("hello.greet").is_some()
    })
    .await;
    assert_eq!(greet(&gw).await, "Hello, reload!");
}

/// Wait (up to 10 s) for `notifications/tools/list_changed` on a session's GET stream.
async fn next_list_changed(stream: &mut tokio::sync::mpsc::UnboundedReceiver<serde_json::Value>) {
    tokio::time::timeout(Duration::from_secs(10), async {
        while let Some(m) = stream.recv().await {
            if m["method"] == "notifications/tools/list_changed" {
                return;
            }
        }
        panic!("the stream ended");
    })
    .await
    .expect("a tools/list_changed notification");
}

#[tokio::test]
async fn deleting_and_adding_a_plugin_changes_the_tools_and_notifies_sessions() {
    let (dir, cache) = plugin_dir();
    let gw = gateway_watching(&dir, &cache).await;
    let mut session = Client::initialize(&gw.url("/mcp"), "2025-11-25").await;
    let mut stream = session.open_get_stream().await;
    let listed = session.request("tools/list", json!({})).await.tool_names();
    assert!(listed.contains(&"hello.greet".to_string()), "{listed:?}");

    std::fs::remove_file(dir.join("hello.wasm")).unwrap();
    next_list_changed(&mut stream).await;
    assert!(
        session
            .request("tools/list", json!({}))
            .await
            .tool_names()
            .is_empty()
    );

    deploy(
        &dir.join("hello.wasm"),
        &std::fs::read(plugin("hello")).unwrap(),
    );
    next_list_changed(&mut stream).await;
    assert!(
        session
            .request("tools/list", json!({}))
            .await
            .tool_names()
            .contains(&"hello.greet".to_string())
    );
}

#[tokio::test]
async fn a_restart_with_a_warm_artifact_cache_does_not_compile() {
    let (dir, cache) = plugin_dir();
    let from_cache = |gw: &TestGateway| -> Vec<bool> {
        gw.tenants[0]
            .plugins
            .catalog()
            .plugins
            .iter()
            .map(|p| p.code.from_cache())
            .collect()
    };
    let first = gateway_watching(&dir, &cache).await;
    assert_eq!(from_cache(&first), [false], "a cold cache compiles");
    drop(first);
    let second = gateway_watching(&dir, &cache).await;
    assert_eq!(from_cache(&second), [true], "a warm cache does not");
    assert_eq!(greet(&second).await, "Hello, reload!");
    // A corrupted artifact is discarded and the plugin compiled again. (Replaced, not written
    // in place: the running gateway may still map the old file.)
    drop(second);
    for artifact in artifacts(&cache) {
        deploy(&artifact, b"garbage");
    }
    let third = gateway_watching(&dir, &cache).await;
    assert_eq!(from_cache(&third), [false]);
    assert_eq!(greet(&third).await, "Hello, reload!");
}

#[tokio::test]
async fn swapping_versions_under_load_fails_no_call() {
    let root = tempdir();
    let dir = root.join("plugins");
    std::fs::create_dir_all(&dir).unwrap();
    let versions = [
        ("one", std::fs::read(plugin("version-one")).unwrap()),
        ("two", std::fs::read(plugin("version-two")).unwrap()),
    ];
    let target = dir.join("versioned.wasm");
    deploy(&target, &versions[0].1);
    let gw = gateway_watching(&dir, &root.join("cache")).await;
    let url = gw.url("/mcp");
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    // Eight callers, each call taking a few milliseconds inside the plugin, non-stop.
    let callers: Vec<_> = (0..8)
        .map(|_| {
            let (url, stop) = (url.clone(), stop.clone());
            tokio::spawn(async move {
                let mut answers = Vec::new();
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    let r = Client::modern(&url)
                        .call_tool("versioned.which", json!({"ms": 3}))
                        .await;
                    answers.push(if r.status == 200 && !r.is_error() {
                        r.text()
                    } else {
                        format!("FAILED: {r:?}")
                    });
                }
                answers
            })
        })
        .collect();
    let serving = |gw: &TestGateway| -> Option<String> {
        gw.tenants[0]
            .plugins
            .catalog()
            .tool("versioned.which")
            .map(|(p, _)| p.sha256.clone())
    };
    use sha2::Digest as _;
    for i in 1..=20 {
        let (_, bytes) = &versions[i % 2];
        deploy(&target, bytes);
        let want = hex::encode(sha2::Sha256::digest(bytes));
        until(&gw, &format!("swap {i} is serving"), |c| {
            c.tool("versioned.which")
                .is_some_and(|(p, _)| p.sha256 == want)
        })
        .await;
        // Let some calls run on this version.
        tokio::time::sleep(Duration::from_millis(30)).await;
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let mut counts = std::collections::BTreeMap::<String, usize>::new();
    for c in callers {
        for a in c.await.unwrap() {
            *counts.entry(a).or_default() += 1;
        }
    }
    assert_eq!(
        counts.keys().map(String::as_str).collect::<Vec<_>>(),
        ["one", "two"],
        "every call succeeded and came from one of the two versions: {counts:?}"
    );
    // The last swap (20, even) deployed version one: only it answers now.
    assert!(serving(&gw).is_some());
    for _ in 0..5 {
        let r = Client::modern(&url)
            .call_tool("versioned.which", json!({}))
            .await;
        assert_eq!(r.text(), "one");
    }
}

#[tokio::test]
async fn the_typescript_sdk_client_is_told_when_plugins_go_and_come() {
    use tokio::io::AsyncBufReadExt as _;
    let (dir, cache) = plugin_dir();
    let gw = gateway_watching(&dir, &cache).await;
    let mut child = tokio::process::Command::new(crate::support::node())
        .arg(crate::support::root().join("tests/js/list-changed-client.mjs"))
        .args([gw.url("/mcp").as_str(), "2"])
        .current_dir(crate::support::root().join("tests"))
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = tokio::io::BufReader::new(child.stdout.take().unwrap()).lines();
    let mut next = async || -> serde_json::Value {
        let line = tokio::time::timeout(Duration::from_secs(40), lines.next_line())
            .await
            .expect("the client reports in time")
            .unwrap()
            .expect("the client is still running");
        serde_json::from_str(&line).unwrap()
    };
    let ready = next().await;
    assert_eq!(ready["event"], "ready");
    assert!(
        ready["tools"]
            .as_array()
            .unwrap()
            .contains(&json!("hello.greet")),
        "{ready}"
    );

    std::fs::remove_file(dir.join("hello.wasm")).unwrap();
    let gone = next().await;
    assert_eq!(gone, json!({"event": "changed", "tools": []}));

    deploy(
        &dir.join("hello.wasm"),
        &std::fs::read(plugin("hello")).unwrap(),
    );
    let back = next().await;
    assert!(
        back["tools"]
            .as_array()
            .unwrap()
            .contains(&json!("hello.greet")),
        "{back}"
    );
    assert!(child.wait().await.unwrap().success());
}

#[tokio::test]
async fn the_plugins_command_prints_the_inventory_and_uses_the_cache() {
    let (dir, cache) = plugin_dir();
    let config = dir.parent().unwrap().join("inventory.toml");
    std::fs::write(
        &config,
        format!(
            "[sandbox]\ncache_dir = {}\n[auth]\nmode = \"none\"\n[[tenant]]\nid = \"t\"\nplugins = [{}]\n",
            toml_path(&cache),
            toml_path(&dir)
        ),
    )
    .unwrap();
    let inventory = || async {
        serde_json::from_str::<serde_json::Value>(
            &crate::support::run_cli("plugins", &config, &[]).await,
        )
        .unwrap()
    };
    let cold = inventory().await;
    assert_eq!(cold["t"]["plugins"][0]["name"], "hello");
    assert_eq!(cold["t"]["plugins"][0]["from_cache"], false);
    let warm = inventory().await;
    assert_eq!(warm["t"]["plugins"][0]["from_cache"], true, "{warm}");
    assert_eq!(
        warm["t"]["plugins"][0]["sha256"],
        cold["t"]["plugins"][0]["sha256"]
    );
}

/// #16 AC6, as the attack: reading the plugin files (anyone may: a backup job, `cat`, the
/// gateway's own reload) and a settled change must not make an idle gateway reload, again
/// and again. Before: every open/read event reloaded, and each reload's own read triggered
/// the next, forever.
#[tokio::test]
async fn reads_of_the_plugin_files_and_a_settled_change_cause_no_further_reloads() {
    let (dir, cache) = plugin_dir();
    std::fs::write(dir.join("broken.wasm"), b"not a component").unwrap();
    let gw = gateway_watching(&dir, &cache).await;
    let catalog = || gw.tenants[0].plugins.catalog();
    let settled = catalog();
    for _ in 0..5 {
        std::fs::read(dir.join("hello.wasm")).unwrap();
        std::fs::read(dir.join("broken.wasm")).unwrap();
    }
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert!(
        std::sync::Arc::ptr_eq(&settled, &catalog()),
        "reading the plugin files reloaded the tenant"
    );

    // A real change reloads once, then the gateway stays idle.
    deploy(
        &dir.join("hello.wasm"),
        &std::fs::read(plugin("hello")).unwrap(),
    );
    let changed = || !std::sync::Arc::ptr_eq(&settled, &catalog());
    for _ in 0..100 {
        if changed() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(changed(), "the deploy was not picked up");
    tokio::time::sleep(Duration::from_millis(500)).await;
    let after = catalog();
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert!(
        std::sync::Arc::ptr_eq(&after, &catalog()),
        "the gateway kept reloading after the change settled"
    );
    assert_eq!(greet(&gw).await, "Hello, reload!");
}

/// The compiled artifacts in a cache directory.
fn artifacts(cache: &Path) -> Vec<PathBuf> {
    let mut found: Vec<PathBuf> = std::fs::read_dir(cache)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "cwasm"))
        .collect();
    found.sort();
    found
}

/// An artifact file as an attacker who chose the key would write it: MAC (HMAC-SHA256 over
/// the component's digest, the engine tag in the file name, the artifact), then the artifact.
fn forge(key: &[u8], component: &[u8], name: &Path, artifact: &[u8]) -> Vec<u8> {
    use hmac::Mac as _;
    use sha2::Digest as _;
    let file = name.file_stem().unwrap().to_str().unwrap();
    let tag = file.rsplit_once('-').unwrap().1;
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(key).unwrap();
    mac.update(&sha2::Sha256::digest(component));
    mac.update(tag.as_bytes());
    mac.update(artifact);
    let mut out = mac.finalize().into_bytes().to_vec();
    out.extend_from_slice(artifact);
    out
}

/// #16 AC4, as the attack: another plugin's compiled code planted under hello's artifact
/// name — in place, in a directory someone else could write before the gateway started (with
/// their own key, so the MAC is valid for it), and in a directory swapped in after start —
/// never runs: each case ends in hello compiled from its own bytes, or the cache refused.
#[cfg(unix)]
#[tokio::test]
async fn a_planted_artifact_is_never_run() {
    use std::os::unix::fs::PermissionsExt as _;
    let root = tempdir();
    let (hello_dir, probe_dir) = (root.join("hello"), root.join("probe"));
    for (dir, name) in [(&hello_dir, "hello"), (&probe_dir, "probe")] {
        std::fs::create_dir_all(dir).unwrap();
        std::fs::copy(plugin(name), dir.join(format!("{name}.wasm"))).unwrap();
    }
    let hello_bytes = std::fs::read(plugin("hello")).unwrap();
    let warm = root.join("warm");
    drop(gateway_watching(&hello_dir, &warm).await);
    let [hello_artifact] = artifacts(&warm).try_into().unwrap();
    drop(gateway_watching(&probe_dir, &warm).await);
    let probe_artifact = artifacts(&warm)
        .into_iter()
        .find(|p| p != &hello_artifact)
        .unwrap();
    let probe_code = std::fs::read(&probe_artifact).unwrap()[32..].to_vec();
    let name = hello_artifact.file_name().unwrap();
    let serves_hello = |gw: &TestGateway| {
        let p = gw.tenants[0].plugins.catalog().plugins.clone();
        assert_eq!(p.len(), 1);
        assert!(!p[0].code.from_cache(), "the planted artifact was used");
    };

    // 1. In place: probe's artifact (valid MAC for probe) under hello's name.
    deploy(&hello_artifact, &std::fs::read(&probe_artifact).unwrap());
    let gw = gateway_watching(&hello_dir, &warm).await;
    serves_hello(&gw);
    assert_eq!(greet(&gw).await, "Hello, reload!");
    drop(gw);

    // 2. A directory another user (uid 4242) could write before start, with their own key
    //    and an artifact forged with it.
    let planted = root.join("planted");
    std::fs::create_dir_all(&planted).unwrap();
    std::fs::set_permissions(&planted, std::fs::Permissions::from_mode(0o777)).unwrap();
    let their_key = [7u8; 32];
    std::fs::write(planted.join("key"), their_key).unwrap();
    std::fs::set_permissions(planted.join("key"), std::fs::Permissions::from_mode(0o600)).unwrap();
    std::fs::write(
        planted.join(name),
        forge(&their_key, &hello_bytes, &hello_artifact, &probe_code),
    )
    .unwrap();
    for file in [planted.join("key"), planted.join(name)] {
        std::os::unix::fs::chown(&file, Some(4242), Some(4242)).unwrap();
    }
    let gw = gateway_watching(&hello_dir, &planted).await;
    serves_hello(&gw);
    assert_eq!(greet(&gw).await, "Hello, reload!");
    drop(gw);
    //    And the directory itself theirs: the cache is refused outright.
    std::os::unix::fs::chown(&planted, Some(4242), Some(4242)).unwrap();
    let gw = gateway_watching(&hello_dir, &planted).await;
    serves_hello(&gw);
    drop(gw);

    // 3. Swapped after start: the cache directory replaced by one holding a forged artifact
    //    and the forger's key; hello is then reloaded (removed and deployed again).
    let swap = root.join("swap");
    let gw = gateway_watching(&hello_dir, &swap).await;
    std::fs::rename(&swap, root.join("swap.old")).unwrap();
    std::fs::create_dir_all(&swap).unwrap();
    std::fs::write(swap.join("key"), their_key).unwrap();
    std::fs::set_permissions(swap.join("key"), std::fs::Permissions::from_mode(0o600)).unwrap();
    std::fs::write(
        swap.join(name),
        forge(&their_key, &hello_bytes, &hello_artifact, &probe_code),
    )
    .unwrap();
    std::fs::remove_file(hello_dir.join("hello.wasm")).unwrap();
    until(&gw, "hello unloaded", |c| c.plugins.is_empty()).await;
    deploy(&hello_dir.join("hello.wasm"), &hello_bytes);
    until(&gw, "hello reloaded", |c| c.plugins.len() == 1).await;
    serves_hello(&gw);
    assert_eq!(greet(&gw).await, "Hello, reload!");
}
