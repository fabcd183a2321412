//! Parsing one YAML document into a [`Value`] with its size bounded. Aliases are expanded as the
//! document is read; every node and string is charged to a budget, so a document that expands past it
//! (a "billion laughs" of nested aliases, one long string aliased many times) is refused as soon as it
//! does, before it takes the memory. serde_yaml itself bounds nesting (128 levels) and alias jumps.
//!
//! Layer: foundations (see the table in `render`).

use serde::de::{self, DeserializeSeed, Deserializer, EnumAccess, MapAccess, SeqAccess, Visitor};
use serde_yaml::value::{Tag, TaggedValue};
use serde_yaml::{Mapping, Value};
use std::cell::Cell;
use std::fmt;

/// What one node costs besides the bytes of its text: about the memory a `Value` takes.
const NODE_COST: usize = 32;

/// Why a document could not be read.
#[derive(Debug, thiserror::Error)]
pub enum YamlError {
    /// A syntax or structure error, with serde_yaml's location when it has one.
    #[error("invalid YAML: {message}")]
    Syntax {
        message: String,
        line: Option<usize>,
        column: Option<usize>,
    },
    #[error(
        "the YAML expands (through anchors and aliases) to more than its budget of {budget} bytes"
    )]
    TooLarge { budget: usize },
    #[error("YAML merge key (<<): {0}")]
    Merge(#[source] serde_yaml::Error),
}

impl YamlError {
    pub fn line(&self) -> Option<usize> {
        match self {
            YamlError::Syntax { line, .. } => *line,
            _ => None,
        }
    }

    pub fn column(&self) -> Option<usize> {
        match self {
            YamlError::Syntax { column, .. } => *column,
            _ => None,
        }
    }
}

/// The budget of one parse: what is left, and whether it ran out (the error serde_yaml reports then
/// is ours).
struct Budget {
    left: Cell<usize>,
    exceeded: Cell<bool>,
}

impl Budget {
    fn charge<E: de::Error>(&self, cost: usize) -> Result<(), E> {
        match self.left.get().checked_sub(cost) {
            Some(left) => {
                self.left.set(left);
                Ok(())
            }
            None => {
                self.exceeded.set(true);
                Err(E::custom("expansion budget exceeded"))
            }
        }
    }
}

/// Parse `text` (one document) within `budget` (bytes of text plus [`NODE_COST`] per node); apply YAML
/// merge keys. Returns the value and the budget left.
pub fn parse(text: &str, budget: usize) -> Result<(Value, usize), YamlError> {
    let b = Budget {
        left: Cell::new(budget),
        exceeded: Cell::new(false),
    };
    let mut value = Seed(&b)
        .deserialize(serde_yaml::Deserializer::from_str(text))
        .map_err(|e| b.error(e, budget))?;
    // serde_yaml's merge errors are fixed texts (they quote nothing).
    value.apply_merge().map_err(YamlError::Merge)?;
    Ok((value, b.left.get()))
}

/// Every document of `text` (`---`-separated) within one `budget`, merge keys (`<<`) left as keys: for
/// SOPS files, whose values are authenticated where SOPS found them (`render::sops::file`).
pub fn parse_documents_unmerged(text: &str, budget: usize) -> Result<Vec<Value>, YamlError> {
    let b = Budget {
        left: Cell::new(budget),
        exceeded: Cell::new(false),
    };
    serde_yaml::Deserializer::from_str(text)
        .map(|doc| Seed(&b).deserialize(doc).map_err(|e| b.error(e, budget)))
        .collect()
}

impl Budget {
    /// What a parse that failed with `e` reports.
    fn error(&self, e: serde_yaml::Error, budget: usize) -> YamlError {
        if self.exceeded.get() {
            return YamlError::TooLarge { budget };
        }
        let loc = e.location();
        let message = e.to_string();
        // serde_yaml appends the location to the text; it is reported separately.
        let message = match message.rfind(" at line ") {
            Some(i) => message[..i].to_string(),
            None => message,
        };
        YamlError::Syntax {
            message: without_scalars(&message),
            line: loc.as_ref().map(|l| l.line()),
            column: loc.as_ref().map(|l| l.column()),
        }
    }
}

/// serde_yaml's message without the text of the scalar it may quote (`invalid value: string "hunter2",
/// expected an integer` for `!!int hunter2`): the value may be a secret. What was expected stays.
pub fn without_scalars(message: &str) -> String {
    for (prefix, shown) in [
        ("invalid value: string ", "invalid value: a string"),
        ("invalid type: string ", "invalid type: a string"),
    ] {
        if let Some(i) = message.find(prefix) {
            let expected = message[i..]
                .rfind(", expected ")
                .map(|j| &message[i + j..])
                .unwrap_or_default();
            return format!("{}{shown}{expected}", &message[..i]);
        }
    }
    message.to_string()
}

struct Seed<'b>(&'b Budget);

impl<'de> DeserializeSeed<'de> for Seed<'_> {
    type Value = Value;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        d.deserialize_any(ValueVisitor(self.0))
    }
}

/// serde_yaml's own `Value` visitor, charging the budget for every node.
struct ValueVisitor<'b>(&'b Budget);

impl<'de> Visitor<'de> for ValueVisitor<'_> {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any YAML value")
    }

    fn visit_bool<E: de::Error>(self, b: bool) -> Result<Value, E> {
        self.0.charge(NODE_COST)?;
        Ok(Value::Bool(b))
    }

    fn visit_i64<E: de::Error>(self, i: i64) -> Result<Value, E> {
        self.0.charge(NODE_COST)?;
        Ok(Value::Number(i.into()))
    }

    fn visit_u64<E: de::Error>(self, u: u64) -> Result<Value, E> {
        self.0.charge(NODE_COST)?;
        Ok(Value::Number(u.into()))
    }

    /// An integer past 64 bits stays the text it was written as: readers of numbers then refuse it
    /// as out of range at its key and line, and text keys (labels, environment) keep it as written.
    fn visit_i128<E: de::Error>(self, i: i128) -> Result<Value, E> {
        match i64::try_from(i) {
            Ok(n) => self.visit_i64(n),
            Err(_) => self.visit_string(i.to_string()),
        }
    }

    fn visit_u128<E: de::Error>(self, u: u128) -> Result<Value, E> {
        match u64::try_from(u) {
            Ok(n) => self.visit_u64(n),
            Err(_) => self.visit_string(u.to_string()),
        }
    }

    fn visit_f64<E: de::Error>(self, f: f64) -> Result<Value, E> {
        self.0.charge(NODE_COST)?;
        Ok(Value::Number(f.into()))
    }

    fn visit_str<E: de::Error>(self, s: &str) -> Result<Value, E> {
        self.0.charge(NODE_COST.saturating_add(s.len()))?;
        Ok(Value::String(s.to_owned()))
    }

    fn visit_string<E: de::Error>(self, s: String) -> Result<Value, E> {
        self.0.charge(NODE_COST.saturating_add(s.len()))?;
        Ok(Value::String(s))
    }

    fn visit_unit<E: de::Error>(self) -> Result<Value, E> {
        self.0.charge(NODE_COST)?;
        Ok(Value::Null)
    }

    fn visit_none<E: de::Error>(self) -> Result<Value, E> {
        self.0.charge(NODE_COST)?;
        Ok(Value::Null)
    }

    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        Seed(self.0).deserialize(d)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        self.0.charge(NODE_COST)?;
        let mut items = Vec::new();
        while let Some(item) = seq.next_element_seed(Seed(self.0))? {
            items.push(item);
        }
        Ok(Value::Sequence(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        self.0.charge(NODE_COST)?;
        let mut mapping = Mapping::new();
        while let Some(k) = map.next_key_seed(Seed(self.0))? {
            if mapping.contains_key(&k) {
                return Err(de::Error::custom(format_args!(
                    "duplicate entry with key {}",
                    describe_key(&k)
                )));
            }
            let v = map.next_value_seed(Seed(self.0))?;
            mapping.insert(k, v);
        }
        Ok(Value::Mapping(mapping))
    }

    fn visit_enum<A: EnumAccess<'de>>(self, data: A) -> Result<Value, A::Error> {
        self.0.charge(NODE_COST)?;
        let (tag, contents) = data.variant_seed(TagSeed)?;
        let value = de::VariantAccess::newtype_variant_seed(contents, Seed(self.0))?;
        Ok(Value::Tagged(Box::new(TaggedValue { tag, value })))
    }
}

/// A key for a duplicate-key message: text as it is (keys are names, not values), others by type.
fn describe_key(k: &Value) -> String {
    match k {
        Value::String(s) => format!("{s:?}"),
        Value::Number(n) => n.to_string(),
        Value::Bool(b) => b.to_string(),
        Value::Null => "null".into(),
        _ => "that is a collection".into(),
    }
}

/// A tag's name (`!reset`, `!override`); an empty one is an error, as serde_yaml has it.
struct TagSeed;

impl<'de> DeserializeSeed<'de> for TagSeed {
    type Value = Tag;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Tag, D::Error> {
        d.deserialize_string(self)
    }
}

impl<'de> Visitor<'de> for TagSeed {
    type Value = Tag;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a YAML tag string")
    }

    fn visit_str<E: de::Error>(self, s: &str) -> Result<Tag, E> {
        self.visit_string(s.to_owned())
    }

    fn visit_string<E: de::Error>(self, s: String) -> Result<Tag, E> {
        if s.is_empty() {
            return Err(E::custom("empty YAML tag is not allowed"));
        }
        Ok(Tag::new(s))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BUDGET: usize = 32 * 1024 * 1024;

    fn ok(text: &str) -> Value {
        parse(text, BUDGET).unwrap().0
    }

    #[test]
    fn reads_what_serde_yaml_reads() {
        for text in [
            "a: 1\nb: [x, 2.5, true, null, ~]\nc: {d: e}\n",
            "base: &b {x: 1, y: 2}\nuse: {<<: *b, y: 3}\n",
            "v: !reset []\nw: !override {a: 1}\n",
            "s: |\n  two\n  lines\n",
            "n: -9223372036854775808\nu: 18446744073709551615\nf: .inf\n",
        ] {
            let mut want: Value = serde_yaml::from_str(text).unwrap();
            want.apply_merge().unwrap();
            assert_eq!(ok(text), want, "{text}");
        }
    }

    #[test]
    fn integers_past_64_bits_stay_text() {
        let v = ok("a: 99999999999999999999\nb: -99999999999999999999\nc: 18446744073709551615\n");
        assert_eq!(v["a"], Value::String("99999999999999999999".into()));
        assert_eq!(v["b"], Value::String("-99999999999999999999".into()));
        assert_eq!(v["c"], Value::Number(u64::MAX.into()));
    }

    #[test]
    fn errors_keep_their_location() {
        let e = parse("a: 1\nb: [\n", BUDGET).unwrap_err();
        assert!(matches!(e, YamlError::Syntax { .. }), "{e}");
        assert!(e.line().is_some());
        let e = parse("a: 1\na: 2\n", BUDGET).unwrap_err();
        assert!(
            e.to_string().contains("duplicate entry with key \"a\""),
            "{e}"
        );
        assert!(e.line().is_some());
        assert!(parse("a: 1\n---\nb: 2\n", BUDGET).is_err());
        assert!(matches!(
            parse("a: {<<: 1}\n", BUDGET),
            Err(YamlError::Merge(_))
        ));
    }

    #[test]
    fn a_billion_laughs_is_refused_quickly() {
        let mut text = String::from("a0: &a0 [\"lol\", \"lol\", \"lol\", \"lol\", \"lol\", \"lol\", \"lol\", \"lol\", \"lol\", \"lol\"]\n");
        for i in 1..10 {
            let refs = vec![format!("*a{}", i - 1); 10].join(", ");
            text.push_str(&format!("a{i}: &a{i} [{refs}]\n"));
        }
        let start = std::time::Instant::now();
        // serde_yaml's own limit on alias jumps, or this budget: whichever comes first.
        let e = parse(&text, BUDGET).unwrap_err();
        assert!(
            matches!(e, YamlError::TooLarge { .. }) || e.to_string().contains("repetition limit"),
            "{e}"
        );
        assert!(start.elapsed() < std::time::Duration::from_secs(10));
        // Wide enough that the jump limit allows it: the budget stops it.
        let mut text = format!("a0: &a0 [{}]\n", vec!["\"lol\""; 1000].join(", "));
        for i in 1..6 {
            let refs = vec![format!("*a{}", i - 1); 10].join(", ");
            text.push_str(&format!("a{i}: &a{i} [{refs}]\n"));
        }
        let e = parse(&text, BUDGET).unwrap_err();
        assert!(matches!(e, YamlError::TooLarge { .. }), "{e}");
        assert!(start.elapsed() < std::time::Duration::from_secs(10));
    }

    #[test]
    fn one_long_string_aliased_many_times_is_refused() {
        let long = "x".repeat(512 * 1024);
        let text = format!("a: &a \"{long}\"\nb: [{}]\n", vec!["*a"; 100].join(", "));
        assert!(matches!(
            parse(&text, BUDGET),
            Err(YamlError::TooLarge { .. })
        ));
        // Within the budget, aliases are fine, and what is left is reported.
        let (_, left) = parse("a: &a [1, 2]\nb: *a\n", BUDGET).unwrap();
        assert!(left < BUDGET && left > BUDGET - 1024);
    }

    #[test]
    fn errors_never_quote_the_scalar() {
        for (text, expected) in [
            ("PASSWORD: !!int SECRET-MARK-int\n", "expected an integer"),
            ("PASSWORD: !!bool SECRET-MARK-bool\n", "expected a boolean"),
            ("PASSWORD: !!float SECRET-MARK-float\n", "expected a float"),
            ("PASSWORD: !!null SECRET-MARK-null\n", "expected null"),
        ] {
            let e = parse(text, BUDGET).unwrap_err();
            let shown = format!("{e} {e:?}");
            assert!(!shown.contains("SECRET-MARK"), "{shown}");
            assert!(shown.contains(expected), "{shown}");
            assert_eq!(e.line(), Some(1), "{shown}");
        }
        assert_eq!(
            without_scalars("x: invalid type: string \"a, expected b\", expected a map"),
            "x: invalid type: a string, expected a map"
        );
    }

    #[test]
    fn nesting_past_serde_yamls_limit_is_an_error() {
        let deep = format!("{}1{}", "[".repeat(10_000), "]".repeat(10_000));
        assert!(matches!(
            parse(&deep, BUDGET),
            Err(YamlError::Syntax { .. })
        ));
        let dashes = format!("a: {}x\n", "- ".repeat(10_000));
        assert!(parse(&dashes, BUDGET).is_err());
    }
}
