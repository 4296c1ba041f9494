//! The audit file's integrity: a hash chain with signed checkpoints, and its verification.
//!
//! Owns: the line format's integrity fields — every line carries `seq` (one more than the
//! line before) and `prev` (the SHA-256, hex, of the previous line's exact bytes); a
//! checkpoint line (`"event": "checkpoint"`) also carries `mac`, the HMAC-SHA256 under the
//! operator's key of its own `seq`, `prev` and `final`, so whoever lacks the key cannot write
//! one; the writer ends the file with a `final` checkpoint when it stops or rotates — and
//! [`verify`], which finds a removed, reordered, inserted or edited line and a truncated tail.
//! Must not: decide what is recorded (`audit`), or write files (`audit::file`).

use hmac::{Hmac, Mac};
use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};

/// The `prev` of a file's first line when no file came before it.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// The SHA-256 of `line` (without its newline), hex.
pub fn digest(line: &str) -> String {
    hex::encode(Sha256::digest(line.as_bytes()))
}

/// The checkpoint MAC of (`seq`, `prev`, `final`) under `key`, hex.
pub fn mac(key: &[u8], seq: u64, prev: &str, last: bool) -> String {
    let mut m = <Hmac<Sha256> as Mac>::new_from_slice(key).unwrap_or_else(|_| {
        // HMAC takes keys of any length; this branch cannot be reached.
        <Hmac<Sha256> as Mac>::new_from_slice(b"-").expect("a one-byte HMAC key")
    });
    m.update(format!("{seq}\n{prev}\n{last}").as_bytes());
    hex::encode(m.finalize().into_bytes())
}

/// The chain's state as a writer extends it.
#[derive(Debug, Clone)]
pub struct Chain {
    next_seq: u64,
    prev: String,
}

impl Chain {
    /// A chain whose first line follows `prev` (the last line's digest of the file before,
    /// or [`GENESIS`]).
    pub fn after(prev: String) -> Self {
        Self { next_seq: 0, prev }
    }

    /// `fields` as the chain's next line (with `seq` and `prev` first), and the chain moved
    /// past it.
    pub fn line(&mut self, fields: Map<String, Value>) -> String {
        let mut object = Map::new();
        object.insert("seq".into(), json!(self.next_seq));
        object.insert("prev".into(), json!(self.prev));
        object.extend(fields);
        let line = Value::Object(object).to_string();
        self.next_seq += 1;
        self.prev = digest(&line);
        line
    }

    /// The next line as a checkpoint signed with `key`; `last` when nothing follows it in the
    /// file.
    pub fn checkpoint(&mut self, key: &[u8], at: &str, last: bool) -> String {
        let signature = mac(key, self.next_seq, &self.prev, last);
        let mut fields = Map::new();
        fields.insert("at".into(), json!(at));
        fields.insert("event".into(), json!("checkpoint"));
        fields.insert("final".into(), json!(last));
        fields.insert("mac".into(), json!(signature));
        self.line(fields)
    }

    /// The digest of the last line written (the next file's first `prev`).
    pub fn head(&self) -> &str {
        &self.prev
    }

    /// How many lines were written.
    pub fn lines(&self) -> u64 {
        self.next_seq
    }
}

/// What a verified file holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    /// Its lines.
    pub lines: u64,
    /// Its checkpoints.
    pub checkpoints: u64,
    /// The `prev` of its first line (the previous file's last line, or [`GENESIS`]).
    pub follows: String,
    /// The digest of its last line.
    pub head: String,
}

/// How a file fails verification: the line (1-based) and what is wrong there.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {problem}")]
pub struct Broken {
    /// The line.
    pub line: u64,
    /// What is wrong.
    pub problem: String,
}

/// Verify `text` (a whole audit file) with `key`. With `open`, the file may still be being
/// written: it may end after its last checkpoint (the lines after it are reported, not
/// trusted); otherwise it must end with a `final` checkpoint.
pub fn verify(text: &str, key: &[u8], open: bool) -> Result<Verified, Broken> {
    let mut lines = 0u64;
    let mut checkpoints = 0u64;
    let mut follows = String::new();
    let mut prev = String::new();
    let mut last_final = false;
    let mut since_checkpoint = 0u64;
    let broken = |line: u64, problem: String| Broken { line, problem };
    if !text.is_empty() && !text.ends_with('\n') {
        return Err(broken(
            text.lines().count() as u64,
            "the last line is cut short (no newline)".into(),
        ));
    }
    for (n, line) in text.lines().enumerate() {
        let number = n as u64 + 1;
        let value: Value = serde_json::from_str(line)
            .map_err(|e| broken(number, format!("not a JSON line ({e})")))?;
        let seq = value["seq"]
            .as_u64()
            .ok_or_else(|| broken(number, "no seq".into()))?;
        let this_prev = value["prev"]
            .as_str()
            .ok_or_else(|| broken(number, "no prev".into()))?;
        if n == 0 {
            follows = this_prev.to_string();
        } else if this_prev != prev {
            return Err(broken(
                number,
                "prev is not the digest of the line before: a line before it was removed, \
                 inserted, reordered or edited"
                    .into(),
            ));
        }
        if seq != n as u64 {
            return Err(broken(
                number,
                format!("seq {seq} where {n} was due: a line was removed, inserted or reordered"),
            ));
        }
        if value["event"] == "checkpoint" {
            let last = value["final"].as_bool().unwrap_or(false);
            let expected = mac(key, seq, this_prev, last);
            if value["mac"].as_str() != Some(expected.as_str()) {
                return Err(broken(
                    number,
                    "the checkpoint's signature is not the key's: forged, edited, or another key"
                        .into(),
                ));
            }
            checkpoints += 1;
            last_final = last;
            since_checkpoint = 0;
        } else {
            if last_final {
                return Err(broken(number, "a line after the final checkpoint".into()));
            }
            since_checkpoint += 1;
        }
        prev = digest(line);
        lines += 1;
    }
    if lines == 0 {
        return Err(broken(0, "the file is empty".into()));
    }
    if !open && !last_final {
        return Err(broken(
            lines,
            format!(
                "the file does not end with its final checkpoint ({since_checkpoint} line(s) after the last \
                 one): its tail was cut off, or it is still being written (verify with --open)"
            ),
        ));
    }
    Ok(Verified {
        lines,
        checkpoints,
        follows,
        head: prev,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &[u8] = b"test audit key";

    /// A file of `n` events with a checkpoint every third line and a final one.
    fn file(n: usize) -> Vec<String> {
        let mut chain = Chain::after(GENESIS.into());
        let mut lines = Vec::new();
        for i in 0..n {
            let mut fields = Map::new();
            fields.insert("event".into(), json!("request"));
            fields.insert("n".into(), json!(i));
            lines.push(chain.line(fields));
            if i % 3 == 2 {
                lines.push(chain.checkpoint(KEY, "t", false));
            }
        }
        lines.push(chain.checkpoint(KEY, "t", true));
        lines
    }

    fn text(lines: &[String]) -> String {
        lines.iter().map(|l| format!("{l}\n")).collect()
    }

    #[test]
    fn an_intact_file_verifies() {
        let lines = file(7);
        let v = verify(&text(&lines), KEY, false).unwrap();
        assert_eq!(v.lines, lines.len() as u64);
        assert_eq!(v.checkpoints, 3);
        assert_eq!(v.follows, GENESIS);
        assert_eq!(v.head, digest(lines.last().unwrap()));
    }

    #[test]
    fn each_kind_of_tampering_is_found() {
        let lines = file(7);
        let mut removed = lines.clone();
        removed.remove(2);
        let mut reordered = lines.clone();
        reordered.swap(1, 2);
        let mut inserted = lines.clone();
        inserted.insert(2, lines[1].clone());
        let mut edited = lines.clone();
        edited[1] = edited[1].replace("\"n\":1", "\"n\":9");
        let mut truncated = lines.clone();
        truncated.truncate(lines.len() - 2);
        let mut to_checkpoint = lines.clone();
        to_checkpoint.truncate(4); // ends at a non-final checkpoint
        let mut forged = lines.clone();
        let last = forged.len() - 1;
        forged[last] = forged[last].replace("\"final\":true", "\"final\":false");
        let mut other_key = lines.clone();
        let mut chain = Chain::after(GENESIS.into());
        for l in &lines[..lines.len() - 1] {
            let fields: Map<String, Value> = serde_json::from_str::<Value>(l)
                .unwrap()
                .as_object()
                .unwrap()
                .iter()
                .filter(|(k, _)| *k != "seq" && *k != "prev")
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect();
            chain.line(fields);
        }
        let n = other_key.len() - 1;
        other_key[n] = chain.checkpoint(b"another key", "t", true);
        for (name, tampered, line) in [
            ("removed", removed, 3),
            ("reordered", reordered, 2),
            ("inserted", inserted, 3),
            ("edited", edited, 3),
            ("truncated", truncated, 8),
            ("cut to a checkpoint", to_checkpoint, 4),
            ("final flag edited", forged, 10),
            ("signed with another key", other_key, 10),
        ] {
            let e = verify(&text(&tampered), KEY, false).unwrap_err();
            assert_eq!(e.line, line, "{name}: {e}");
        }
        let mut cut = text(&lines);
        cut.pop();
        assert!(
            verify(&cut, KEY, false)
                .unwrap_err()
                .problem
                .contains("cut short")
        );
        // A file still being written verifies with --open, up to its last checkpoint.
        let mut open = lines.clone();
        open.truncate(5);
        assert!(verify(&text(&open), KEY, true).is_ok());
    }
}
