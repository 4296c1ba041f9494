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
}
