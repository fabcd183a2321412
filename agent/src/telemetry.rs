//! Logging: plain lines on stderr (no timestamps under journald, which adds its own), or JSON on request;
//! and the redaction every line passes through: [`LogSecrets`] holds every secret value this process has
//! learnt (render's sensitive values, credentials read from config files), and [`Redacting`], the
//! subscriber's writer, masks each of them with `***` in every formatted line before it is written.

use crate::config::LogFormat;
use aho_corasick::{AhoCorasick, MatchKind};
use std::collections::BTreeSet;
use std::io::Write;
use std::sync::{Arc, RwLock};
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::EnvFilter;

/// What a secret value is replaced with in a log line.
pub const MASK: &str = "***";

pub fn init(format: &LogFormat, level: &str) {
    let filter = EnvFilter::try_from_env("BERTH_LOG")
        .unwrap_or_else(|_| EnvFilter::new(format!("warn,berth={level}")));
    let journald = std::env::var_os("JOURNAL_STREAM").is_some();
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(Redacting::new(std::io::stderr, log_secrets()))
        .with_target(false);
    let _ = match format {
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
        LogFormat::Plain if journald => builder.without_time().with_ansi(false).try_init(),
        LogFormat::Plain => builder.with_ansi(false).try_init(),
    };
}

/// The process's secret values, as the log writer masks them. One per process, like the subscriber.
static LOG_SECRETS: LogSecrets = LogSecrets::new();

/// The set every log line of this process is redacted with. Whatever reads a secret value registers it
/// here ([`LogSecrets::add`]) before anything can log it: [`crate::sensitive::Sensitive::add`] (so every
/// value a render marks, including those of revisions read back from the store), and the readers of
/// credential files (source token, registry passwords, receiver, alert and fact secrets).
pub fn log_secrets() -> &'static LogSecrets {
    &LOG_SECRETS
}

/// Secret values and the matcher built from them. Values only accumulate: a value once secret stays
/// masked for the life of the process (a rotated password is still a password).
pub struct LogSecrets {
    state: RwLock<State>,
}

struct State {
    values: BTreeSet<String>,
    /// Built from `values` whenever one is added; `None` while there are none.
    matcher: Option<Arc<Matcher>>,
}

impl std::fmt::Debug for LogSecrets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let n = self.state.read().map(|s| s.values.len()).unwrap_or(0);
        write!(f, "LogSecrets({n} values)")
    }
}

impl Default for LogSecrets {
    fn default() -> Self {
        Self::new()
    }
}

impl LogSecrets {
    pub const fn new() -> LogSecrets {
        LogSecrets {
            state: RwLock::new(State {
                values: BTreeSet::new(),
                matcher: None,
            }),
        }
    }

    /// Mask `value` in every log line from now on. Values shorter than
    /// [`crate::sensitive::Sensitive::MIN_LEN`] are ignored, by the same rule as render's sensitive set
    /// (`on`, `1` would mask everywhere and hide nothing).
    pub fn add(&self, value: &str) {
        if value.len() < crate::sensitive::Sensitive::MIN_LEN {
            return;
        }
        let known = self
            .state
            .read()
            .map(|s| s.values.contains(value))
            .unwrap_or(false);
        if known {
            return;
        }
        let mut state = self.state.write().unwrap_or_else(|p| p.into_inner());
        if state.values.insert(value.to_owned()) {
            state.matcher = Matcher::build(&state.values).map(Arc::new);
        }
    }

    /// [`LogSecrets::add`] for a secret read as bytes (one that is not UTF-8 is never logged as text).
    pub fn add_bytes(&self, value: &[u8]) {
        if let Ok(text) = std::str::from_utf8(value) {
            self.add(text);
        }
    }

    fn matcher(&self) -> Option<Arc<Matcher>> {
        self.state
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .matcher
            .clone()
    }

    /// `text` with every secret value in it masked.
    pub fn redact(&self, text: &[u8]) -> Vec<u8> {
        match self.matcher() {
            Some(m) => m.redact(text),
            None => text.to_vec(),
        }
    }
}

/// One automaton over every form a secret value takes in a formatted line.
struct Matcher {
    ac: AhoCorasick,
}

impl Matcher {
    /// Patterns for each value: as given (`%field`, messages, plain lines), as `{:?}` writes it inside
    /// its quotes (`?field`: `"` → `\"`, newline → `\n`, `\` → `\\`, control and unprintable characters
    /// escaped), and both of those as JSON strings escape them (the JSON format). Leftmost-longest, so a
    /// value that holds another is masked whole.
    fn build(values: &BTreeSet<String>) -> Option<Matcher> {
        let mut patterns = BTreeSet::new();
        for v in values {
            let debug = format!("{v:?}");
            let debug = unquote(&debug).to_string();
            for form in [v.clone(), debug] {
                if let Ok(json) = serde_json::to_string(&form) {
                    patterns.insert(unquote(&json).to_string());
                }
                patterns.insert(form);
            }
        }
        if patterns.is_empty() {
            return None;
        }
        AhoCorasick::builder()
            .match_kind(MatchKind::LeftmostLongest)
            .build(&patterns)
            .ok()
            .map(|ac| Matcher { ac })
    }

    /// `text` with every match replaced by [`MASK`]. Should the search fail, the line is withheld
    /// rather than written unredacted.
    fn redact(&self, text: &[u8]) -> Vec<u8> {
        let mut out = Vec::with_capacity(text.len());
        let replaced = self
            .ac
            .try_replace_all_with_bytes(text, &mut out, |_, _, dst| {
                dst.extend_from_slice(MASK.as_bytes());
                true
            });
        match replaced {
            Ok(()) => out,
            Err(_) => {
                b"[a log line was withheld: it could not be checked for secret values]\n".to_vec()
            }
        }
    }
}

/// `"text"` → `text`.
fn unquote(quoted: &str) -> &str {
    quoted
        .strip_prefix('"')
        .and_then(|s| s.strip_suffix('"'))
        .unwrap_or(quoted)
}

/// The subscriber's writer: each event is formatted into a [`RedactingWriter`], which keeps the bytes
/// until the line is complete and writes them to `inner`'s writer with every secret value masked.
pub struct Redacting<M> {
    inner: M,
    secrets: &'static LogSecrets,
}

impl<M> Redacting<M> {
    pub fn new(inner: M, secrets: &'static LogSecrets) -> Redacting<M> {
        Redacting { inner, secrets }
    }
}

impl<'a, M: MakeWriter<'a>> MakeWriter<'a> for Redacting<M> {
    type Writer = RedactingWriter<M::Writer>;

    fn make_writer(&'a self) -> Self::Writer {
        RedactingWriter {
            inner: self.inner.make_writer(),
            secrets: self.secrets,
            buf: Vec::new(),
        }
    }

    fn make_writer_for(&'a self, meta: &tracing::Metadata<'_>) -> Self::Writer {
        RedactingWriter {
            inner: self.inner.make_writer_for(meta),
            secrets: self.secrets,
            buf: Vec::new(),
        }
    }
}

/// One event's bytes: written on, redacted, when complete lines are flushed and when it is dropped (the
/// fmt layer makes one writer per event), so a value split across writes is still seen whole.
pub struct RedactingWriter<W: Write> {
    inner: W,
    secrets: &'static LogSecrets,
    buf: Vec<u8>,
}

impl<W: Write> RedactingWriter<W> {
    /// Write the first `n` buffered bytes, redacted.
    fn emit(&mut self, n: usize) -> std::io::Result<()> {
        if n == 0 {
            return Ok(());
        }
        let rest = self.buf.split_off(n);
        let line = std::mem::replace(&mut self.buf, rest);
        self.inner.write_all(&self.secrets.redact(&line))
    }
}

impl<W: Write> Write for RedactingWriter<W> {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        self.buf.extend_from_slice(data);
        Ok(data.len())
    }

    /// Complete lines go out; a partial one waits for the rest of its event.
    fn flush(&mut self) -> std::io::Result<()> {
        let complete = self
            .buf
            .iter()
            .rposition(|b| *b == b'\n')
            .map_or(0, |i| i + 1);
        self.emit(complete)?;
        self.inner.flush()
    }
}

impl<W: Write> Drop for RedactingWriter<W> {
    fn drop(&mut self) {
        let n = self.buf.len();
        let _ = self.emit(n);
        let _ = self.inner.flush();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    /// A writer into a shared buffer, for the subscriber under test.
    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);

    impl Write for Captured {
        fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(data);
            Ok(data.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl Captured {
        fn text(&self) -> String {
            String::from_utf8(self.0.lock().unwrap().clone()).unwrap()
        }
    }

    fn secrets(values: &[&str]) -> &'static LogSecrets {
        let s: &'static LogSecrets = Box::leak(Box::<LogSecrets>::default());
        for v in values {
            s.add(v);
        }
        s
    }

    /// Log through a subscriber of `format` whose writer is [`Redacting`] over `secrets`.
    fn logged(json: bool, secrets: &'static LogSecrets, f: impl FnOnce()) -> String {
        let out = Captured::default();
        let sink = out.clone();
        let make = Redacting::new(move || sink.clone(), secrets);
        let builder = tracing_subscriber::fmt()
            .with_writer(make)
            .with_ansi(false)
            .without_time();
        if json {
            tracing::subscriber::with_default(builder.json().flatten_event(true).finish(), f);
        } else {
            tracing::subscriber::with_default(builder.finish(), f);
        }
        out.text()
    }

    #[derive(Debug)]
    #[allow(dead_code)]
    struct Wrapped {
        inner: String,
    }

    #[test]
    fn every_form_of_a_secret_value_is_masked_in_plain_and_json_lines() {
        let quoted = "pa\"ss\nword-7f3a";
        let plain = "hunter2-secret-81c0";
        let s = secrets(&[quoted, plain, "on"]);
        for json in [false, true] {
            let text = logged(json, s, || {
                tracing::warn!(error = %format!("engine said: {plain}!"), "apply step failed");
                tracing::warn!(value = ?quoted, "debug field");
                tracing::warn!(value = %quoted, "display field");
                tracing::warn!(spec = ?Wrapped { inner: quoted.into() }, "nested debug");
                tracing::warn!("in the message {plain} and {quoted:?}");
                tracing::warn!(flag = "on", "short values are not secrets");
            });
            for leaked in [
                plain,
                quoted,
                "pa\\\"ss",
                "pa\\\\\\\"ss",
                "ss\\nword",
                "ss\\\\nword",
                "word-7f3a",
            ] {
                assert!(!text.contains(leaked), "json {json}: {leaked:?} in\n{text}");
            }
            assert_eq!(text.lines().count(), 6, "{text}");
            assert_eq!(text.matches(MASK).count(), 6, "json {json}:\n{text}");
            assert!(text.contains("engine said: ***!"), "{text}");
        }
    }

    #[test]
    fn a_value_holding_another_is_masked_whole_and_values_added_later_are_masked() {
        let s = secrets(&["abcd-1234"]);
        let text = logged(false, s, || {
            tracing::info!("before: abcd-1234-longer-9 late-value-55");
            s.add("abcd-1234-longer");
            s.add("late-value-55");
            tracing::info!("after: abcd-1234-longer-9 late-value-55");
        });
        assert!(
            text.contains("before: ***-longer-9 late-value-55"),
            "{text}"
        );
        assert!(text.contains("after: ***-9 ***"), "{text}");
    }

    #[test]
    fn a_value_split_across_writes_is_masked_and_only_complete_lines_are_flushed() {
        let s = secrets(&["split-secret-42"]);
        let out = Captured::default();
        let sink = out.clone();
        let make = Redacting::new(move || sink.clone(), s);
        {
            let mut w = make.make_writer();
            w.write_all(b"first split-").unwrap();
            w.write_all(b"secret-42 line\nsecond split-sec").unwrap();
            w.flush().unwrap();
            assert_eq!(out.text(), "first *** line\n");
            w.write_all(b"ret-42\n").unwrap();
        }
        assert_eq!(out.text(), "first *** line\nsecond ***\n");
    }

    /// The process-wide set: whatever reads a secret registers it before anything can log it.
    #[test]
    fn sensitive_values_and_credentials_read_from_files_are_masked_process_wide() {
        let masked = |v: &str| log_secrets().redact(format!("<{v}>").as_bytes()) == b"<***>";
        let mut s = crate::sensitive::Sensitive::default();
        s.add("rendered-secret-5e1d");
        assert!(masked("rendered-secret-5e1d"));

        let dir = tempfile::tempdir().unwrap();
        let fact = dir.path().join("fact");
        std::fs::write(&fact, "fact-secret-0b7c\n").unwrap();
        crate::render::facts::read_secret("db_key", &fact).unwrap();
        assert!(masked("fact-secret-0b7c"));

        let hook = dir.path().join("hook");
        std::fs::write(&hook, "hook-secret-93aa\n").unwrap();
        crate::signals::receivers::Receiver::load(&crate::signals::receivers::ReceiverSettings {
            name: "gh".into(),
            kind: crate::signals::receivers::ReceiverKind::Github,
            secret_file: Some(hook),
        })
        .unwrap();
        assert!(masked("hook-secret-93aa"));

        // "carol:registry-pw-4c2e", and a password written out.
        let auth = br#"{"auths": {"r.example:5000": {"auth": "Y2Fyb2w6cmVnaXN0cnktcHctNGMyZQ=="},
            "q.example": {"username": "dave", "password": "registry-pw-77d1"}}}"#;
        crate::runtime::auth::RegistryAuth::parse(auth).unwrap();
        assert!(masked("registry-pw-4c2e"));
        assert!(masked("Y2Fyb2w6cmVnaXN0cnktcHctNGMyZQ=="));
        assert!(masked("registry-pw-77d1"));
        assert!(
            !masked("dave") && !masked("carol"),
            "user names are not secrets"
        );
    }

    #[test]
    fn without_secrets_lines_pass_unchanged() {
        let s = secrets(&[]);
        assert_eq!(s.redact(b"nothing to hide\n"), b"nothing to hide\n");
        assert!(format!("{s:?}").contains("0 values"));
    }
}
