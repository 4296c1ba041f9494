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
