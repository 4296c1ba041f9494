//! Log lines that say only what the gateway wrote: one event is one line, and values from
//! outside (token claims, names, paths a caller chose) cannot forge another.
//!
//! Owns two defences. [`untrusted`] escapes control characters in a value from a client,
//! a token, a plugin or a downstream API and caps its length, for messages built from it.
//! [`OneLinePerEvent`] is the stderr writer of the log subscriber: whatever reaches it, a
//! line break inside an event is written as `\n` and other control characters as escapes
//! (ANSI colour sequences only when stderr is a terminal and colours are on), so a newline in
//! an unverified `iss` can never start a line of its own. It must not decide what is logged.

use std::fmt::Write as _;

/// Longest untrusted value kept in a message, in characters.
const MAX_UNTRUSTED_CHARS: usize = 200;

/// `value` made safe for a log line or an error message: control characters escaped
/// (`\n`, `\r`, `\t`, `\u{..}`), at most 200 characters (then `…`).
pub fn untrusted(value: &str) -> String {
    let mut out = String::with_capacity(value.len().min(MAX_UNTRUSTED_CHARS + 8));
    for (i, c) in value.chars().enumerate() {
        if i == MAX_UNTRUSTED_CHARS {
            out.push('…');
            break;
        }
        push_escaped(&mut out, c);
    }
    out
}

fn push_escaped(out: &mut String, c: char) {
    match c {
        '\n' => out.push_str("\\n"),
        '\r' => out.push_str("\\r"),
        '\t' => out.push_str("\\t"),
        c if c.is_control() || matches!(c, '\u{2028}' | '\u{2029}') => {
            let _ = write!(out, "\\u{{{:x}}}", u32::from(c));
        }
        c => out.push(c),
    }
}

/// The log subscriber's writer: stderr, one line per event.
#[derive(Clone, Copy, Debug)]
pub(crate) struct OneLinePerEvent {
    /// Whether ANSI colour sequences are being written (stderr is a terminal).
    pub(crate) ansi: bool,
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for OneLinePerEvent {
    type Writer = EventWriter;

    fn make_writer(&'a self) -> Self::Writer {
        EventWriter { ansi: self.ansi }
    }
}

/// Writes one formatted event (the subscriber writes each event with one `write_all`).
pub(crate) struct EventWriter {
    ansi: bool,
}

impl EventWriter {
    fn line(&self, buf: &[u8]) -> Vec<u8> {
        let text = String::from_utf8_lossy(buf);
        let body = text.strip_suffix('\n').unwrap_or(&text);
        let mut out = String::with_capacity(body.len() + 1);
        for c in body.chars() {
            if c == '\u{1b}' && self.ansi {
                out.push(c);
            } else {
                push_escaped(&mut out, c);
            }
        }
        out.push('\n');
        out.into_bytes()
    }
}

impl std::io::Write for EventWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        std::io::stderr().lock().write_all(&self.line(buf))?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        std::io::stderr().flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn untrusted_values_cannot_break_lines_or_grow_without_bound() {
        assert_eq!(
            untrusted("https://evil\nINFO forged"),
            "https://evil\\nINFO forged"
        );
        assert_eq!(untrusted("a\u{1b}[31mb"), "a\\u{1b}[31mb");
        let long = "x".repeat(10_000);
        assert_eq!(untrusted(&long).chars().count(), MAX_UNTRUSTED_CHARS + 1);
    }

    #[test]
    fn an_event_with_a_newline_is_still_one_line() {
        let w = EventWriter { ansi: false };
        let line = w.line(b"WARN request denied: issuer https://x\nINFO fake\n");
        assert_eq!(
            String::from_utf8(line).unwrap(),
            "WARN request denied: issuer https://x\\nINFO fake\n"
        );
        let coloured = EventWriter { ansi: true }.line(b"\x1b[2mts\x1b[0m msg\n");
        assert_eq!(coloured, b"\x1b[2mts\x1b[0m msg\n");
    }
}
