//! A real OTLP receiver (the OpenTelemetry collector protocol over HTTP), on an ephemeral
//! loopback port.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use serde_json::Value;

use crate::support::{root, tempdir};

/// The OTLP receiver, on an ephemeral loopback port; stops when dropped (stdin closes).
pub struct Receiver {
    pub base: String,
    _child: tokio::process::Child,
}

impl Receiver {
    pub async fn start() -> Self {
        let ready: PathBuf = tempdir().join("otlp-port");
        let child = tokio::process::Command::new(root().join("tests/.venv/bin/python"))
            .arg(root().join("tests/py/otlp_receiver.py"))
            .arg("--ready-file")
            .arg(&ready)
            .stdin(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("the OTLP receiver starts (tests/.venv from cargo xtask test)");
        for _ in 0..200 {
            if let Ok(port) = std::fs::read_to_string(&ready) {
                return Self {
                    base: format!("http://127.0.0.1:{}", port.trim()),
                    _child: child,
                };
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("the OTLP receiver did not start");
    }

    pub async fn get(&self, what: &str) -> String {
        reqwest::get(format!("{}/{what}", self.base))
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }

    /// Poll (up to 20 s) until `ready` holds for the spans or metric points received.
    pub async fn wait(&self, what: &str, ready: impl Fn(&[Value]) -> bool) -> Vec<Value> {
        for _ in 0..200 {
            let items: Vec<Value> = serde_json::from_str(&self.get(what).await).unwrap();
            if ready(&items) {
                return items;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let got = self.get(what).await;
        let tail: String = got
            .chars()
            .skip(got.chars().count().saturating_sub(4000))
            .collect();
        panic!("the receiver never got the expected {what}; the last of it: {tail}");
    }
}
