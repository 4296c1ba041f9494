//! The Kubernetes manifests (`deploy/k8s`, kustomize) build offline with `kubectl kustomize`,
//! validate against the Kubernetes 1.34 schemas (PyPI `kubernetes-validate`, strict), and
//! agree with the gateway: the ConfigMap's TOML is a valid configuration, every secret it
//! names is in the Deployment's environment, the probes and ports are the gateway's, and
//! the termination grace covers the drain and the shutdown grace.

use std::path::Path;

use serde_json::Value;

use crate::support::{root, tempdir};

/// `kubectl kustomize deploy/k8s`, as YAML.
async fn rendered() -> String {
    let out = tokio::process::Command::new("kubectl")
        .arg("kustomize")
        .arg(root().join("deploy/k8s"))
        .output()
        .await
        .expect("kubectl runs (it comes with the machine image)");
    assert!(
        out.status.success(),
        "kubectl kustomize: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// `kubernetes-validate --strict -k 1.34` of `yaml`: its exit status and output.
async fn validate(yaml: &str) -> (bool, String) {
    let file = tempdir().join("manifests.yaml");
    std::fs::write(&file, yaml).unwrap();
    let out = tokio::process::Command::new(root().join("tests/.venv/bin/kubernetes-validate"))
        .args(["--strict", "-k", "1.34"])
        .arg(&file)
        .output()
        .await
        .expect("kubernetes-validate (tests/.venv from cargo xtask test)");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

/// The YAML documents as JSON (PyYAML from the test venv).
async fn documents(yaml: &str) -> Vec<Value> {
    let mut child = tokio::process::Command::new(root().join("tests/.venv/bin/python"))
        .args([
            "-c",
            "import sys, yaml, json; print(json.dumps(list(yaml.safe_load_all(sys.stdin))))",
        ])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    use tokio::io::AsyncWriteExt as _;
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(yaml.as_bytes()).await.unwrap();
    drop(stdin);
    let out = child.wait_with_output().await.unwrap();
    serde_json::from_slice(&out.stdout).unwrap()
}

fn find<'a>(docs: &'a [Value], kind: &str, name: &str) -> &'a Value {
    docs.iter()
        .find(|d| d["kind"] == kind && d["metadata"]["name"] == name)
        .unwrap_or_else(|| panic!("no {kind} {name}"))
}

#[tokio::test]
async fn the_kubernetes_manifests_build_validate_and_match_the_gateway() {
    let yaml = rendered().await;
    let (ok, report) = validate(&yaml).await;
    assert!(ok, "{report}");
    for kind in [
        "Deployment",
        "Service",
        "HorizontalPodAutoscaler",
        "PodDisruptionBudget",
        "NetworkPolicy",
        "ConfigMap",
    ] {
        assert!(
            report.contains(&format!("{}/", kind.to_lowercase())),
            "{kind} was validated: {report}"
        );
    }
    // The validator refuses what it should (this test could fail).
    let (ok, report) = validate(&yaml.replacen("replicas: 3", "replicas: three", 1)).await;
    assert!(!ok, "a broken manifest passed: {report}");

    let docs = documents(&yaml).await;
    let config_map = docs
        .iter()
        .find(|d| d["kind"] == "ConfigMap")
        .expect("the configuration");
    let toml = config_map["data"]["portcullis.toml"].as_str().unwrap();
    let config = portcullis::config::Config::parse(
        toml,
        Path::new("deploy/k8s/portcullis.toml"),
        Path::new("/etc/portcullis"),
    )
    .unwrap_or_else(|e| panic!("the ConfigMap's configuration: {e}"));
    let cluster = config.cluster.as_ref().expect("[cluster]");

    let deployment = find(&docs, "Deployment", "portcullis");
    let pod = &deployment["spec"]["template"]["spec"];
    let container = &pod["containers"][0];
    let env: Vec<&str> = container["env"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e["name"].as_str())
        .collect();
    let mut named = vec![
        cluster.redis_url_env.as_str(),
        cluster.advertise_url_env.as_str(),
        cluster.token_cache_key_env.as_str(),
        config.server.state_key_env.as_deref().unwrap(),
    ];
    named.extend(
        config
            .exchange
            .iter()
            .filter_map(|x| x.client_secret_env.as_deref()),
    );
    for var in named {
        assert!(
            env.contains(&var),
            "{var} is not set by the Deployment: {env:?}"
        );
    }
    assert_eq!(
        container["ports"][0]["containerPort"],
        config.server.listen.port()
    );
    assert_eq!(container["readinessProbe"]["httpGet"]["path"], "/readyz");
    assert_eq!(container["livenessProbe"]["httpGet"]["path"], "/healthz");
    let stop_ms = config.server.shutdown_drain_ms + config.server.shutdown_grace_ms;
    assert!(
        pod["terminationGracePeriodSeconds"].as_u64().unwrap() * 1000 > stop_ms,
        "Kubernetes would kill a replica before it finished stopping"
    );
    assert_eq!(
        find(&docs, "Service", "portcullis")["spec"]["selector"],
        deployment["spec"]["selector"]["matchLabels"]
    );
    assert_eq!(
        find(&docs, "HorizontalPodAutoscaler", "portcullis")["spec"]["metrics"][0]["resource"]["name"],
        "cpu"
    );
    let egress = find(&docs, "NetworkPolicy", "portcullis")["spec"]["policyTypes"]
        .as_array()
        .unwrap()
        .clone();
    assert!(
        egress.contains(&Value::from("Egress")),
        "egress is restricted"
    );
}

/// #28 AC7. Before: the manifests named a placeholder image that nothing could build. Now
/// `cargo xtask image` assembles it offline (buildah, vfs storage; here from the debug binary
/// the tests use), and what the image says matches what `deploy/k8s` expects of it: the
/// non-root user, the port, the binary as entrypoint taking the Deployment's arguments; the
/// binary runs inside it (its libraries are all there).
#[tokio::test]
async fn the_container_image_builds_offline_and_matches_the_deployment() {
    let store = root().join("target/image-store");
    let tag = "localhost/portcullis:test";
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let out = tokio::process::Command::new(cargo)
        .current_dir(root())
        .args(["xtask", "image", "--debug", "--tag", tag, "--store"])
        .arg(&store)
        .output()
        .await
        .unwrap();
    assert!(
        out.status.success(),
        "cargo xtask image: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let buildah = |args: &[&str]| {
        let store = store.clone();
        let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
        async move {
            let out = tokio::process::Command::new("buildah")
                .args(["--storage-driver", "vfs", "--root"])
                .arg(store.join("root"))
                .arg("--runroot")
                .arg(store.join("run"))
                .args(&args)
                .output()
                .await
                .unwrap();
            assert!(
                out.status.success(),
                "buildah {args:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            String::from_utf8_lossy(&out.stdout).trim().to_string()
        }
    };
    let inspected: Value =
        serde_json::from_str(&buildah(&["inspect", "--type", "image", tag]).await).unwrap();
    let config = &inspected["OCIv1"]["config"];

    let docs = documents(&rendered().await).await;
    let deployment = find(&docs, "Deployment", "portcullis");
    let pod = &deployment["spec"]["template"]["spec"];
    let container = &pod["containers"][0];
    let user = format!(
        "{}:{}",
        pod["securityContext"]["runAsUser"], pod["securityContext"]["runAsGroup"]
    );
    assert_eq!(config["User"], user.as_str(), "{config}");
    assert_ne!(user, "0:0", "non-root");
    let port = format!("{}/tcp", container["ports"][0]["containerPort"]);
    assert!(config["ExposedPorts"].get(&port).is_some(), "{config}");
    assert_eq!(
        config["Entrypoint"],
        serde_json::json!(["/usr/local/bin/portcullis"])
    );
    assert_eq!(
        config["Cmd"], container["args"],
        "the Deployment's arguments are the default"
    );
    assert_eq!(
        container["securityContext"]["readOnlyRootFilesystem"], true,
        "the image needs nothing written to its root"
    );

    // It runs: a container from the image (chroot isolation: no daemon, no namespaces needed).
    // buildah 1.28's chroot isolation sometimes loses a quick process's output (the run
    // itself succeeded: `buildah` checks its status): asked again, a few times at most.
    let ctr = buildah(&["from", tag]).await;
    let mut version = String::new();
    for _ in 0..5 {
        version = buildah(&[
            "run",
            "--isolation",
            "chroot",
            &ctr,
            "--",
            "/usr/local/bin/portcullis",
            "--version",
        ])
        .await;
        if !version.is_empty() {
            break;
        }
    }
    buildah(&["rm", &ctr]).await;
    assert!(version.starts_with("portcullis "), "{version}");
}
