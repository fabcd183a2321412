//! Where a key is in a YAML file: a best-effort index from key paths to line numbers.
//!
//! serde_yaml gives a location for syntax errors only; a `Value` carries none. Errors found later (an
//! unknown key, a bad port) still have to name the line, so this scans the text of block-style YAML —
//! what compose files are written in — and records the line of every mapping key and sequence item.
//! Flow collections (`{a: 1}`, `[x, y]`) and keys reached through anchors are not indexed; a lookup then
//! falls back to the nearest indexed parent, which is still the right neighbourhood.
//!
//! Layer: foundations (see the table in `render`).

use std::collections::HashMap;

/// One step of a key path: a mapping key, or a sequence index.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Seg {
    Key(String),
    Index(usize),
}

/// A key path like `services.web.ports[1]`.
pub type KeyPath = Vec<Seg>;

/// `services.web.ports[1]`, for messages.
pub fn display(path: &[Seg]) -> String {
    let mut s = String::new();
    for seg in path {
        match seg {
            Seg::Key(k) => {
                if !s.is_empty() {
                    s.push('.');
                }
                s.push_str(k);
            }
            Seg::Index(i) => s.push_str(&format!("[{i}]")),
        }
    }
    s
}

/// How deep a key path is indexed (YAML itself nests at most 128 levels; deeper lines are text that
/// only looks like keys, such as a multi-line quoted string).
const MAX_DEPTH: usize = 256;

#[derive(Debug, Default, Clone)]
pub struct LineIndex {
    lines: HashMap<KeyPath, usize>,
}

struct Frame {
    indent: usize,
    path: KeyPath,
    /// A `key:` whose value follows on the next lines (a sequence may then start at the same indent).
    open_key: bool,
    next_index: usize,
}

impl LineIndex {
    pub fn build(text: &str) -> LineIndex {
        let mut idx = LineIndex::default();
        let mut stack: Vec<Frame> = vec![Frame {
            indent: 0,
            path: Vec::new(),
            open_key: true,
            next_index: 0,
        }];
        // Inside a block scalar (`key: |`): skip lines indented deeper than this.
        let mut block_scalar: Option<usize> = None;
        for (n, raw) in text.lines().enumerate() {
            let line_no = n + 1;
            let trimmed = raw.trim_start_matches(' ');
            let indent = raw.len() - trimmed.len();
            if trimmed.is_empty() || trimmed.starts_with('#') {
                continue;
            }
            if let Some(bi) = block_scalar {
                if indent > bi {
                    continue;
                }
                block_scalar = None;
            }
            if trimmed.starts_with("---") || trimmed.starts_with("...") {
                stack.truncate(1);
                stack[0].next_index = 0;
                continue;
            }
            idx.line(&mut stack, indent, trimmed, line_no, &mut block_scalar);
        }
        idx
    }

    /// Index one line (after its indentation). A line of nested items (`- - key: v`) is walked in a
    /// loop, and nothing deeper than [`MAX_DEPTH`] is indexed: no input can recurse the stack away.
    fn line(
        &mut self,
        stack: &mut Vec<Frame>,
        mut indent: usize,
        mut content: &str,
        line_no: usize,
        block_scalar: &mut Option<usize>,
    ) {
        loop {
            let is_item = content == "-" || content.starts_with("- ");
            while stack.len() > 1 {
                let Some(top) = stack.last() else { break };
                if top.indent < indent || (top.indent == indent && is_item && top.open_key) {
                    break;
                }
                stack.pop();
            }
            if stack.len() > MAX_DEPTH {
                return;
            }
            let Some(parent) = stack.last_mut() else {
                return;
            };
            if is_item {
                let i = parent.next_index;
                parent.next_index += 1;
                let mut path = parent.path.clone();
                path.push(Seg::Index(i));
                self.lines.entry(path.clone()).or_insert(line_no);
                // Mark the key frame as no longer accepting same-indent items of a nested sequence.
                stack.push(Frame {
                    indent,
                    path,
                    open_key: false,
                    next_index: 0,
                });
                let rest = content[1..].trim_start_matches(' ');
                if rest.is_empty() || rest.starts_with('#') {
                    return;
                }
                indent += content.len() - rest.len();
                content = rest;
                continue;
            }
            let Some((key, value)) = split_key(content) else {
                return; // a scalar continuation line
            };
            let mut path = parent.path.clone();
            path.push(Seg::Key(key));
            self.lines.entry(path.clone()).or_insert(line_no);
            let value = strip_comment(value).trim();
            let value = strip_props(value);
            if value.starts_with('|') || value.starts_with('>') {
                *block_scalar = Some(indent);
            }
            stack.push(Frame {
                indent,
                path,
                open_key: value.is_empty(),
                next_index: 0,
            });
            return;
        }
    }

    /// The line of `path`, or of its nearest indexed ancestor.
    pub fn find(&self, path: &[Seg]) -> Option<usize> {
        (0..=path.len())
            .rev()
            .find_map(|n| self.lines.get(&path[..n]).copied())
    }

    /// The line of the longest indexed prefix of `path`, with that prefix's length.
    pub fn deepest(&self, path: &[Seg]) -> Option<(usize, usize)> {
        (0..=path.len())
            .rev()
            .find_map(|n| self.lines.get(&path[..n]).map(|l| (n, *l)))
    }

    /// The line of exactly `path`.
    pub fn exact(&self, path: &[Seg]) -> Option<usize> {
        self.lines.get(path).copied()
    }
}

/// `key: value` → (key, value); quoted keys are unquoted. `None` for anything that is not a mapping key.
fn split_key(content: &str) -> Option<(String, &str)> {
    let (key, rest) = if let Some(q) = content.chars().next().filter(|c| *c == '"' || *c == '\'') {
        let end = content[1..].find(q)? + 1;
        (content[1..end].to_string(), content[end + 1..].trim_start())
    } else {
        let mut pos = None;
        let bytes = content.as_bytes();
        for (i, b) in bytes.iter().enumerate() {
            if *b == b'#' && (i == 0 || bytes[i - 1] == b' ') {
                return None;
            }
            if *b == b':' && (i + 1 == bytes.len() || bytes[i + 1] == b' ') {
                pos = Some(i);
                break;
            }
            if i == 0 && matches!(b, b'{' | b'[' | b'"' | b'\'' | b'|' | b'>') {
                return None;
            }
        }
        let p = pos?;
        (content[..p].trim_end().to_string(), &content[p..])
    };
    let value = rest.strip_prefix(':')?;
    if !(value.is_empty() || value.starts_with(' ')) {
        return None;
    }
    Some((key, value))
}

fn strip_comment(v: &str) -> &str {
    let b = v.as_bytes();
    for i in 0..b.len() {
        if b[i] == b'#' && (i == 0 || b[i - 1] == b' ') {
            return &v[..i];
        }
    }
    v
}

/// Drop a leading anchor or tag (`&base`, `!!str`) from a value.
fn strip_props(mut v: &str) -> &str {
    while v.starts_with('&') || v.starts_with('!') {
        v = v.find(' ').map(|i| v[i..].trim_start()).unwrap_or("");
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    fn k(s: &str) -> Seg {
        Seg::Key(s.into())
    }

    #[test]
    fn indexes_keys_and_items_of_block_yaml() {
        let text = "\
name: shop
services:
  web:
    image: nginx   # comment
    command: |
      line one
      image: not a key
    ports:
    - \"80:80\"
    - target: 443
      published: 8443
  \"db\":
    environment:
      - A=1
      - B=2
x-base: &base
  a: 1
";
        let idx = LineIndex::build(text);
        assert_eq!(idx.exact(&[k("name")]), Some(1));
        assert_eq!(idx.exact(&[k("services"), k("web"), k("image")]), Some(4));
        assert_eq!(idx.exact(&[k("services"), k("web"), k("command")]), Some(5));
        assert_eq!(
            idx.exact(&[k("services"), k("web"), k("ports"), Seg::Index(0)]),
            Some(9)
        );
        assert_eq!(
            idx.exact(&[
                k("services"),
                k("web"),
                k("ports"),
                Seg::Index(1),
                k("published")
            ]),
            Some(11)
        );
        assert_eq!(
            idx.exact(&[k("services"), k("db"), k("environment"), Seg::Index(1)]),
            Some(15)
        );
        assert_eq!(idx.exact(&[k("x-base"), k("a")]), Some(17));
        // The block scalar's content is not indexed as keys.
        assert_eq!(idx.exact(&[k("services"), k("web"), k("image")]), Some(4));
        // Unknown paths fall back to the nearest ancestor.
        assert_eq!(
            idx.find(&[k("services"), k("web"), k("healthcheck"), k("test")]),
            Some(3)
        );
        assert_eq!(
            display(&[k("services"), k("web"), k("ports"), Seg::Index(1)]),
            "services.web.ports[1]"
        );
    }

    #[test]
    fn a_line_of_a_hundred_thousand_items_does_not_recurse() {
        // Text that only looks like nested items (inside a quoted string) must not blow the stack.
        let text = format!("a: \"x\n  {}y\"\n", "- ".repeat(100_000));
        let idx = LineIndex::build(&text);
        assert_eq!(idx.exact(&[k("a")]), Some(1));
        let items = format!("{}x\n", "- ".repeat(100_000));
        let idx = LineIndex::build(&items);
        assert_eq!(idx.exact(&[Seg::Index(0)]), Some(1));
        assert_eq!(idx.exact(&[Seg::Index(0), Seg::Index(0)]), Some(1));
    }
}
