//! The one-shot commands, run as a user runs them.

use std::process::Command;

/// `check` and `plugins` on the quickstart (OAuth on, the issuer being this gateway's own
/// development AS, which these commands do not serve): they answer without logging errors
/// about signing keys they never needed.
#[test]
fn one_shot_commands_do_not_fetch_keys_from_their_own_development_as() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    for command in ["check", "plugins"] {
        let out = Command::new(env!("CARGO_BIN_EXE_portcullis"))
            .args([command, "--config"])
            .arg(root.join("examples/quickstart.toml"))
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{command}: {stderr}");
        assert!(
            !stderr.contains("cannot fetch signing keys") && !stderr.contains("ERROR"),
            "{command} logged an error:\n{stderr}"
        );
    }
}

/// #17 AC6: `check` refuses per-plugin settings that name no plugin file (suggesting the stem:
/// cargo names `my-plugin`'s file `my_plugin.wasm`) or set scopes for an item the plugin does
/// not have, and tells the operator which scopes the authorization server must offer.
#[test]
fn check_refuses_misnamed_settings_and_lists_the_scopes_to_offer() {
    use crate::support::{plugin, tempdir, toml_path};
    let dir = tempdir();
    let config = dir.join("misnamed.toml");
    let write = |extra: &str| {
        std::fs::write(
            &config,
            format!(
                r#"
                [auth]
                mode = "oauth"
                scopes_supported = ["mcp:tools"]
                [[auth.issuer]]
                issuer = "https://as.example"
                jwks_uri = "https://as.example/jwks"

                [[tenant]]
                id = "default"
                plugins = [{hello}, {notes}]
                {extra}
                "#,
                hello = toml_path(&plugin("hello")),
                notes = toml_path(&plugin("notes")),
            ),
        )
        .unwrap();
    };
    let check = || {
        let out = Command::new(env!("CARGO_BIN_EXE_portcullis"))
            .args(["check", "--config"])
            .arg(&config)
            .output()
            .unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
        )
    };

    write("[tenant.plugin.Hello_]\nconfig = { greeting = \"hi\" }");
    let (ok, out) = check();
    assert!(!ok, "{out}");
    assert!(
        out.contains("[tenant.plugin.Hello_] names no plugin file")
            && out.contains("did you mean `hello`?"),
        "{out}"
    );

    write("[tenant.plugin.hello]\nscopes = { \"hello.gret\" = [\"hello:admin\"] }");
    let (ok, out) = check();
    assert!(!ok, "{out}");
    assert!(
        out.contains("the plugin has no tool, prompt, resource or template `hello.gret`"),
        "{out}"
    );

    write("[tenant.plugin.hello]\nscopes = { \"hello.whoami\" = [\"hello:admin\"] }");
    let (ok, out) = check();
    assert!(ok, "{out}");
    assert!(
        out.contains(
            "scopes  default: the plugins require hello:admin mcp:tools notes:read notes:write; \
             the authorization server(s) https://as.example must offer them \
             (advertised in the protected resource metadata; not in auth.scopes_supported: hello:admin notes:read notes:write)"
        ),
        "{out}"
    );
    // Each tool's scopes after the override, which tools may become tasks (#30).
    assert!(
        out.contains("          tool hello.whoami: hello:admin\n")
            && out.contains("          tool hello.report: mcp:tools (may run as a task)\n")
            && out.contains("          tool notes.add: notes:write\n"),
        "{out}"
    );
}

/// `portcullis call PLUGIN TOOL ARGS` with its options; (exit success, stdout as JSON,
/// stderr). Compiled artifacts go to the shared test cache.
fn call_tool(
    plugin: &str,
    tool: &str,
    args: &str,
    options: &[&str],
) -> (bool, serde_json::Value, String) {
    let cache_home = crate::support::root().join("target/test-artifacts/xdg");
    std::fs::create_dir_all(&cache_home).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_portcullis"))
        .arg("call")
        .arg(crate::support::plugin(plugin))
        .args([tool, args])
        .args(options)
        .env("XDG_CACHE_HOME", &cache_home)
        .env("NO_COLOR", "1")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    let json = serde_json::from_str(&stdout)
        .unwrap_or_else(|e| panic!("{e}: stdout {stdout}\nstderr {stderr}"));
    (out.status.success(), json, stderr)
}

/// #17 `portcullis call`: a tool of a `.wasm` runs in the real sandbox without a server, with
/// the given identity, scopes, configuration and stubbed downstream answers, and the MCP
/// result is printed; the host's checks (scopes, schemas, egress) apply as when served.
#[test]
fn call_runs_one_tool_in_the_sandbox_with_identity_config_and_stubs() {
    // Identity and a log line (stderr), structured output (stdout).
    let (ok, r, err) = call_tool(
        "js-words",
        "jswords.count",
        r#"{"text": "a bb ccc", "minLength": 2}"#,
        &["--sub", "ada", "--scope", "words:read"],
    );
    assert!(ok, "{r} {err}");
    assert_eq!(
        r["structuredContent"],
        serde_json::json!({"words": 2, "longest": "ccc"})
    );
    assert!(
        err.contains("log [info] js-words: counted 2 words for ada"),
        "{err}"
    );

    // A stubbed downstream service, granted to the plugin; the request is shown.
    let (ok, r, err) = call_tool(
        "py-words",
        "pywords.fetch",
        r#"{"path": "/docs/intro?lang=en"}"#,
        &["--stub", "docs=200:one two three"],
    );
    assert!(ok, "{r} {err}");
    assert_eq!(r["content"][0]["text"], "3 words");
    assert!(
        err.contains("downstream docs: GET /docs/intro?lang=en"),
        "{err}"
    );
    // #30: stubs per method and path (the most specific answers), the plugin's progress
    // shown, and the gateway's own INFO lines left out.
    let (ok, r, err) = call_tool(
        "py-words",
        "pywords.report",
        r#"{"path": "/a"}"#,
        &[
            "--stub",
            "docs=404:",
            "--stub",
            "docs GET /a=x yy zzz",
            "--sub",
            "ada",
        ],
    );
    assert!(ok, "{r} {err}");
    assert_eq!(r["content"][0]["text"], "3 words", "{r}");
    assert!(
        err.contains("progress 1.0/2.0: fetched") || err.contains("progress 1/2: fetched"),
        "{err}"
    );
    assert!(err.contains("loading ") && !err.contains(" INFO "), "{err}");
    let (ok, r, _) = call_tool(
        "py-words",
        "pywords.fetch",
        r#"{"path": "/gone"}"#,
        &["--stub", "docs=404:no such document"],
    );
    assert!(!ok);
    assert!(
        r["content"][0]["text"]
            .as_str()
            .unwrap()
            .contains("HTTP 404"),
        "{r}"
    );

    // The call context: tenant, subject, scopes and configuration values (and no issuer:
    // a configured identity).
    let (ok, r, _) = call_tool(
        "probe",
        "probe.observe",
        "{}",
        &[
            "--tenant",
            "acme",
            "--sub",
            "bob",
            "--scope",
            "a b",
            "--set",
            "greeting=Howdy",
        ],
    );
    assert!(ok, "{r}");
    let seen = &r["structuredContent"]["context"];
    assert_eq!(seen["tenant"], "acme", "{r}");
    assert_eq!(seen["subject"], "bob");
    assert_eq!(seen["issuer"], serde_json::Value::Null);
    assert_eq!(seen["scopes"], serde_json::json!(["a", "b"]));
    assert_eq!(seen["config"], serde_json::json!([["greeting", "Howdy"]]));

    // The host's checks: a missing scope is refused before the plugin runs; so are
    // arguments the schema refuses.
    let (ok, r, _) = call_tool(
        "js-words",
        "jswords.count",
        r#"{"text": "a"}"#,
        &["--scope", "mcp:tools"],
    );
    assert!(!ok);
    assert_eq!(r["isError"], true, "{r}");
    assert_eq!(
        r["content"][0]["text"],
        "Forbidden: tool `jswords.count` requires the scope(s) words:read"
    );
    let (ok, r, _) = call_tool("js-words", "jswords.count", r#"{"text": 1}"#, &[]);
    assert!(!ok);
    assert_eq!(r["isError"], true, "{r}");
    assert!(
        r["content"][0]["text"]
            .as_str()
            .unwrap()
            .starts_with("Invalid arguments"),
        "{r}"
    );
}

/// #29: `check` names what each service's credential strategy needs and does not have: a
/// grant its authorization server does not perform (the development AS does no RFC 7523),
/// metadata it cannot read; a service whose strategy has what it needs passes.
#[test]
fn check_names_what_each_credential_strategy_is_missing() {
    use crate::support::{check_config, plugin, tempdir, toml_path};
    let dir = tempdir();
    let config = dir.join("strategies.toml");
    std::fs::write(
        &config,
        format!(
            r#"
            [auth]
            mode = "oauth"
            scopes_supported = ["mcp:tools"]
            [[auth.issuer]]
            issuer = "http://127.0.0.1:8080/dev-as"
            [[auth.issuer]]
            issuer = "http://127.0.0.1:9/gone"
            [auth.issuer.exchange]
            client_id = "gw"
            auth_method = "client_secret_post"
            client_secret_env = "STRATEGIES_SECRET"
            [dev_as]
            enabled = true
            key_file = {key}
            [[dev_as.clients]]
            client_id = "gateway"
            client_secret_env = "STRATEGIES_SECRET"
            grant_types = ["urn:ietf:params:oauth:grant-type:token-exchange"]
            [exchange]
            issuer = "http://127.0.0.1:8080/dev-as"
            client_id = "gateway"
            client_secret_env = "STRATEGIES_SECRET"

            [[tenant]]
            id = "default"
            plugins = [{notes}]
            [[tenant.service]]
            name = "exchanged"
            base_url = "http://127.0.0.1:8090/api"
            credential = "token-exchange"
            audience = "http://127.0.0.1:8090/api"
            issuer = "http://127.0.0.1:8080/dev-as"
            [[tenant.service]]
            name = "asserted"
            base_url = "http://127.0.0.1:8090/api"
            credential = "jwt-bearer"
            audience = "http://127.0.0.1:8090/api"
            issuer = "http://127.0.0.1:8080/dev-as"
            [[tenant.service]]
            name = "graph"
            base_url = "http://127.0.0.1:8090/api"
            credential = "on-behalf-of"
            scopes = ["api://graph/.default"]
            issuer = "http://127.0.0.1:9/gone"
            "#,
            key = toml_path(&dir.join("dev-as.key")),
            notes = toml_path(&plugin("notes")),
        ),
    )
    .unwrap();
    // `check` with the secret set: (success, stdout, stderr).
    let run_check = || {
        let out = Command::new(env!("CARGO_BIN_EXE_portcullis"))
            .args(["check", "--config"])
            .arg(&config)
            .env("STRATEGIES_SECRET", "s")
            .output()
            .unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (passed, said, stderr) = run_check();
    assert!(!passed, "{said}");
    assert!(
        said.contains("FAILED  default/asserted (credential = \"jwt-bearer\"): http://127.0.0.1:8080/dev-as does not list the grant urn:ietf:params:oauth:grant-type:jwt-bearer"),
        "{said}"
    );
    assert!(
        said.contains("FAILED  default/graph (credential = \"on-behalf-of\"): cannot read http://127.0.0.1:9/gone's metadata"),
        "{said}"
    );
    assert!(!said.contains("default/exchanged"), "{said}");
    assert!(
        !stderr.contains("DEVELOPMENT AUTHORIZATION SERVER IS ON"),
        "check serves no HTTP, so it does not warn that the development AS is on"
    );
    // #30: the gateway's exchange client must be a client of the development AS too; before,
    // `check` said ok and every downstream call failed with `invalid_client (unknown client)`.
    let unregistered = std::fs::read_to_string(&config).unwrap().replacen(
        "client_id = \"gateway\"\n            client_secret_env",
        "client_id = \"other\"\n            client_secret_env",
        1,
    );
    std::fs::write(&config, &unregistered).unwrap();
    let (passed, said, _) = run_check();
    assert!(!passed, "{said}");
    assert!(
        said.contains("FAILED  default/exchanged (credential = \"token-exchange\"): the development AS does not know the gateway's client `gateway`")
            && said.contains("[[dev_as.clients]]\n    client_id = \"gateway\"\n    client_secret_env = \"STRATEGIES_SECRET\"")
            && said.contains("grant_types = [\"urn:ietf:params:oauth:grant-type:token-exchange\"]"),
        "{said}"
    );
    // A missing secret is named before anything is asked.
    let (passed, said) = check_config(&config);
    assert!(!passed && said.contains("STRATEGIES_SECRET"), "{said}");
}

/// #30: a manifest named after the crate (`word-count.toml` beside cargo's
/// `word_count.wasm`) was silently ignored, so the scope it tightened did not apply. Now the
/// plugin is refused, naming the file it should be; renamed, it loads and applies.
#[test]
fn a_manifest_named_after_the_crate_is_refused_with_the_name_it_needs() {
    use crate::support::{check_config, plugin, tempdir, toml_path};
    let dir = tempdir();
    std::fs::copy(plugin("hello"), dir.join("word_count.wasm")).unwrap();
    // Another component's manifest beside it is not a near miss.
    std::fs::copy(plugin("probe"), dir.join("probe.wasm")).unwrap();
    std::fs::write(dir.join("probe.toml"), "config = { a = \"b\" }\n").unwrap();
    std::fs::write(
        dir.join("word-count.toml"),
        "scopes = { \"hello.greet\" = [\"words:admin\"] }\n",
    )
    .unwrap();
    let config = dir.join("gateway.toml");
    std::fs::write(
        &config,
        format!(
            "[[tenant]]\nid = \"t\"\nplugins = [{}, {}]\n",
            toml_path(&dir.join("word_count.wasm")),
            toml_path(&dir.join("probe.wasm"))
        ),
    )
    .unwrap();
    let (passed, said) = check_config(&config);
    assert!(!passed, "{said}");
    assert!(
        said.contains("word-count.toml is not this plugin's manifest, which must be named")
            && said.contains("word_count.toml")
            && said.contains("did you mean"),
        "{said}"
    );
    assert!(said.contains("ok      t/probe"), "{said}");
    std::fs::rename(dir.join("word-count.toml"), dir.join("word_count.toml")).unwrap();
    let (passed, said) = check_config(&config);
    assert!(passed, "{said}");
}

/// #30 AC6: the quickstart needs only Rust. `cargo xtask run` with a `PATH` holding only the
/// Rust toolchain (and the C linker it needs) serves the quickstart; before, it stopped at
/// building the Python example (`python3 ... No such file or directory`). Here the builds are
/// up to date (the test suite built them), so this shows what the command needs, not how long
/// a cold build takes.
#[test]
fn the_quickstart_runs_with_only_rust_installed() {
    use std::io::BufRead as _;
    use std::os::unix::process::CommandExt as _;

    use crate::support::toml_path;
    let dir = crate::support::tempdir();
    let bin = dir.join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    let which = |program: &str| -> std::path::PathBuf {
        std::env::split_paths(&std::env::var_os("PATH").unwrap())
            .map(|d| d.join(program))
            .find(|p| p.is_file())
            .unwrap_or_else(|| panic!("{program} on PATH"))
    };
    for program in ["cargo", "rustc", "rustup", "cc", "ld"] {
        std::os::unix::fs::symlink(which(program), bin.join(program)).unwrap();
    }
    let root = crate::support::root();
    let port = crate::support::free_port();
    let config = dir.join("quickstart.toml");
    let quickstart = std::fs::read_to_string(root.join("examples/quickstart.toml")).unwrap();
    std::fs::write(
        &config,
        quickstart
            .replace("127.0.0.1:8080", &format!("127.0.0.1:{port}"))
            .replace(
                "\"../target/plugins/hello.wasm\"",
                &toml_path(&crate::support::plugin("hello")),
            )
            .replace(
                "\"../target/dev-as.key\"",
                &toml_path(&dir.join("dev-as.key")),
            ),
    )
    .unwrap();
    let mut child = Command::new(which("cargo"))
        .current_dir(&root)
        .args(["xtask", "run"])
        .arg(&config)
        .env("PATH", &bin)
        .stderr(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .process_group(0)
        .spawn()
        .unwrap();
    let stderr = std::io::BufReader::new(child.stderr.take().unwrap());
    let mut said = Vec::new();
    let mut ready = false;
    for line in stderr.lines() {
        let line = line.unwrap();
        let endpoint = line.contains("MCP endpoint");
        said.push(line);
        if endpoint {
            ready = true;
            break;
        }
    }
    // The whole group (cargo, xtask and the gateway), which the child leads.
    let group = child.id();
    assert!(group > 1);
    let _ = Command::new("kill")
        .args(["-s", "TERM", "--", &format!("-{group}")])
        .status();
    let _ = child.wait();
    let said = said.join("\n");
    assert!(ready, "{said}");
    assert!(
        !said.contains("python3\" \"-m\" \"venv") && !said.contains("No such file"),
        "{said}"
    );
}
