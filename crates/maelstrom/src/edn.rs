//! EDN values and their printing: `results.edn` and `history.edn` are read by people and by
//! their scripts (`grep ':msgs-per-op' results.edn`), so the layout follows the original's.
//!
//! Hand-written because the only output needed is a small pretty-printer with the original's
//! line-breaking rules and a JSON mirror (spec §2.g), which EDN crates do not offer.

use std::fmt::Write;

/// An EDN value. Maps keep insertion order, which is the order results are printed in.
#[derive(Clone, Debug, PartialEq)]
pub enum Edn {
    /// `nil`
    Nil,
    /// `true` / `false`
    Bool(bool),
    /// An integer.
    Int(i64),
    /// An unsigned integer too large for `Int` (seeds).
    UInt(u64),
    /// A float, printed in shortest round-trip form.
    Float(f64),
    /// A string.
    Str(String),
    /// A keyword, stored without its colon.
    Keyword(String),
    /// `[…]`
    Vector(Vec<Edn>),
    /// `#{…}`
    Set(Vec<Edn>),
    /// `{…}` in insertion order.
    Map(Vec<(Edn, Edn)>),
}

/// A total order for sorting results: numbers by value, then everything else by its text.
pub fn order(a: &Edn, b: &Edn) -> std::cmp::Ordering {
    let num = |e: &Edn| match e {
        Edn::Int(i) => Some(*i as f64),
        Edn::UInt(u) => Some(*u as f64),
        Edn::Float(f) => Some(*f),
        _ => None,
    };
    match (num(a), num(b)) {
        (Some(x), Some(y)) => x
            .total_cmp(&y)
            .then_with(|| a.to_string().cmp(&b.to_string())),
        (Some(_), None) => std::cmp::Ordering::Less,
        (None, Some(_)) => std::cmp::Ordering::Greater,
        (None, None) => a.to_string().cmp(&b.to_string()),
    }
}

/// Builds a keyword.
pub fn kw(name: &str) -> Edn {
    Edn::Keyword(name.to_string())
}

/// Builds a map with keyword keys, in the given order.
pub fn map<const N: usize>(entries: [(&str, Edn); N]) -> Edn {
    Edn::Map(entries.into_iter().map(|(k, v)| (kw(k), v)).collect())
}

/// Widest line the printer aims for.
const WIDTH: usize = 100;

impl Edn {
    /// Appends an entry with a keyword key (no-op on non-maps).
    pub fn push(&mut self, key: &str, value: Edn) {
        if let Edn::Map(entries) = self {
            entries.push((kw(key), value));
        }
    }

    /// Looks up a keyword key in a map.
    pub fn get(&self, key: &str) -> Option<&Edn> {
        match self {
            Edn::Map(entries) => entries
                .iter()
                .find(|(k, _)| matches!(k, Edn::Keyword(n) if n == key))
                .map(|(_, v)| v),
            _ => None,
        }
    }

    /// Converts JSON received from a node: objects become maps with keyword keys.
    pub fn from_json(v: &serde_json::Value) -> Edn {
        use serde_json::Value;
        match v {
            Value::Null => Edn::Nil,
            Value::Bool(b) => Edn::Bool(*b),
            Value::Number(n) => match n.as_i64() {
                Some(i) => Edn::Int(i),
                None => n
                    .as_f64()
                    .map_or_else(|| Edn::Str(n.to_string()), Edn::Float),
            },
            Value::String(s) => Edn::Str(s.clone()),
            Value::Array(a) => Edn::Vector(a.iter().map(Edn::from_json).collect()),
            Value::Object(o) => Edn::Map(
                o.iter()
                    .map(|(k, v)| (keyword_or_string(k), Edn::from_json(v)))
                    .collect(),
            ),
        }
    }

    /// The JSON mirror (spec §2.g): keywords become strings without the colon, non-string map
    /// keys their EDN text, sets sorted arrays, `nil` null.
    pub fn to_json(&self) -> serde_json::Value {
        use serde_json::Value;
        match self {
            Edn::Nil => Value::Null,
            Edn::Bool(b) => Value::Bool(*b),
            Edn::Int(i) => Value::from(*i),
            Edn::UInt(u) => Value::from(*u),
            Edn::Float(f) => serde_json::Number::from_f64(*f).map_or(Value::Null, Value::Number),
            Edn::Str(s) | Edn::Keyword(s) => Value::String(s.clone()),
            Edn::Vector(v) => Value::Array(v.iter().map(Edn::to_json).collect()),
            Edn::Set(v) => {
                let mut items: Vec<Value> = v.iter().map(Edn::to_json).collect();
                items.sort_by_key(|a| a.to_string());
                Value::Array(items)
            }
            Edn::Map(entries) => {
                let mut m = serde_json::Map::new();
                for (k, v) in entries {
                    let key = match k {
                        Edn::Str(s) | Edn::Keyword(s) => s.clone(),
                        other => other.to_string(),
                    };
                    m.insert(key, v.to_json());
                }
                Value::Object(m)
            }
        }
    }

    fn is_scalar(&self) -> bool {
        !matches!(self, Edn::Vector(_) | Edn::Set(_) | Edn::Map(_))
    }

    /// Pretty-prints with the original's layout: a collection that fits in the remaining width
    /// stays on one line; otherwise a map breaks one entry per line, and a key and its scalar
    /// value never split.
    pub fn pretty(&self) -> String {
        let mut out = String::new();
        self.pretty_into(&mut out, 0);
        out
    }

    fn pretty_into(&self, out: &mut String, indent: usize) {
        let flat = self.to_string();
        if self.is_scalar() || indent + flat.len() <= WIDTH {
            out.push_str(&flat);
            return;
        }
        match self {
            Edn::Map(entries) => {
                out.push('{');
                for (i, (k, v)) in entries.iter().enumerate() {
                    if i > 0 {
                        out.push_str(",\n");
                        out.push_str(&" ".repeat(indent + 1));
                    }
                    let key = k.to_string();
                    out.push_str(&key);
                    out.push(' ');
                    v.pretty_into(out, indent + 1 + key.len() + 1);
                }
                out.push('}');
            }
            Edn::Vector(items) | Edn::Set(items) => {
                let open = if matches!(self, Edn::Set(_)) {
                    "#{"
                } else {
                    "["
                };
                let close = if matches!(self, Edn::Set(_)) {
                    '}'
                } else {
                    ']'
                };
                // Scalars fill each line; a collection starts a line of its own.
                out.push_str(open);
                let inner = indent + open.len();
                let mut col = inner;
                for (i, item) in items.iter().enumerate() {
                    let text = item.to_string();
                    if i > 0 {
                        if item.is_scalar() && col + 1 + text.len() <= WIDTH {
                            out.push(' ');
                            col += 1;
                        } else {
                            out.push('\n');
                            out.push_str(&" ".repeat(inner));
                            col = inner;
                        }
                    }
                    let before = out.len();
                    item.pretty_into(out, col);
                    let written = &out[before..];
                    col = match written.rfind('\n') {
                        Some(nl) => written.len() - nl - 1,
                        None => col + written.len(),
                    };
                }
                out.push(close);
            }
            _ => out.push_str(&flat),
        }
    }
}

/// A JSON object key as an EDN keyword when it is a plain identifier, else as a string.
fn keyword_or_string(k: &str) -> Edn {
    let plain = !k.is_empty()
        && !k.starts_with(|c: char| c.is_ascii_digit())
        && k.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_?!*+.<>=".contains(c));
    if plain {
        kw(k)
    } else {
        Edn::Str(k.to_string())
    }
}

fn write_float(f: &mut std::fmt::Formatter<'_>, x: f64) -> std::fmt::Result {
    if x.is_nan() {
        write!(f, "##NaN")
    } else if x.is_infinite() {
        write!(f, "{}", if x > 0.0 { "##Inf" } else { "##-Inf" })
    } else if x.fract() == 0.0 && x.abs() < 1e16 {
        write!(f, "{x:.1}")
    } else {
        write!(f, "{x}")
    }
}

impl std::fmt::Display for Edn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Edn::Nil => write!(f, "nil"),
            Edn::Bool(b) => write!(f, "{b}"),
            Edn::Int(i) => write!(f, "{i}"),
            Edn::UInt(u) => write!(f, "{u}"),
            Edn::Float(x) => write_float(f, *x),
            Edn::Str(s) => {
                let mut out = String::with_capacity(s.len() + 2);
                out.push('"');
                for c in s.chars() {
                    match c {
                        '"' => out.push_str("\\\""),
                        '\\' => out.push_str("\\\\"),
                        '\n' => out.push_str("\\n"),
                        '\t' => out.push_str("\\t"),
                        '\r' => out.push_str("\\r"),
                        c => out.push(c),
                    }
                }
                out.push('"');
                f.write_str(&out)
            }
            Edn::Keyword(k) => write!(f, ":{k}"),
            Edn::Vector(v) => write_seq(f, "[", "]", v, " "),
            Edn::Set(v) => write_seq(f, "#{", "}", v, " "),
            Edn::Map(entries) => {
                f.write_char('{')?;
                for (i, (k, v)) in entries.iter().enumerate() {
                    if i > 0 {
                        f.write_str(", ")?;
                    }
                    write!(f, "{k} {v}")?;
                }
                f.write_char('}')
            }
        }
    }
}

fn write_seq(
    f: &mut std::fmt::Formatter<'_>,
    open: &str,
    close: &str,
    items: &[Edn],
    sep: &str,
) -> std::fmt::Result {
    f.write_str(open)?;
    for (i, item) in items.iter().enumerate() {
        if i > 0 {
            f.write_str(sep)?;
        }
        write!(f, "{item}")?;
    }
    f.write_str(close)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scalars_and_collections_print_as_edn() {
        let v = map([
            ("valid?", Edn::Bool(true)),
            ("ok-fraction", Edn::Float(0.9995)),
            ("count", Edn::Int(3)),
            (
                "by-node",
                Edn::Map(vec![(Edn::Str("n1".into()), Edn::Set(vec![kw("killed")]))]),
            ),
            (
                "q",
                Edn::Map(vec![
                    (Edn::Float(0.5), Edn::Int(310)),
                    (Edn::Int(1), Edn::Nil),
                ]),
            ),
            ("s", Edn::Str("a \"b\"\n".into())),
        ]);
        assert_eq!(
            v.to_string(),
            r#"{:valid? true, :ok-fraction 0.9995, :count 3, :by-node {"n1" #{:killed}}, :q {0.5 310, 1 nil}, :s "a \"b\"\n"}"#
        );
        assert_eq!(Edn::Float(2.0).to_string(), "2.0");
    }

    #[test]
    fn wide_maps_break_one_entry_per_line_keeping_scalars_on_their_key_line() {
        let inner: Vec<(Edn, Edn)> = (0..12)
            .map(|i| (kw(&format!("key-number-{i}")), Edn::Int(i)))
            .collect();
        let v = map([("workload", Edn::Map(inner)), ("valid?", Edn::Bool(true))]);
        let text = v.pretty();
        assert!(
            text.lines()
                .any(|l| l.trim_start().starts_with(":key-number-5 5")),
            "{text}"
        );
        assert!(text.lines().any(|l| l == " :valid? true}"), "{text}");
        assert!(text.lines().all(|l| l.len() <= 100), "{text}");
    }

    #[test]
    fn json_mirror_follows_the_spec() {
        let v = map([
            ("valid?", kw("unknown")),
            ("q", Edn::Map(vec![(Edn::Float(0.5), Edn::Int(1))])),
            ("s", Edn::Set(vec![Edn::Int(3), Edn::Int(1)])),
            ("n", Edn::Nil),
        ]);
        assert_eq!(
            v.to_json(),
            serde_json::json!({"valid?": "unknown", "q": {"0.5": 1}, "s": [1, 3], "n": null})
        );
    }

    #[test]
    fn json_objects_get_keyword_keys_when_they_can() {
        let e =
            Edn::from_json(&serde_json::json!({"type": "echo_ok", "in_reply_to": 1, "a b": 1.5}));
        assert_eq!(
            e.to_string(),
            r#"{"a b" 1.5, :in_reply_to 1, :type "echo_ok"}"#
        );
    }
}

/// Parses every top-level form of an EDN text. Errors name the line.
///
/// Reads what Jepsen writes: `nil`, booleans, integers (`N` suffix allowed), floats (`M`
/// suffix allowed), ratios (as floats), strings, characters (as strings), keywords, symbols
/// (as strings), vectors, lists (as vectors), maps, sets, `;` comments, `#_` discards, and
/// tagged literals such as `#jepsen.history.Op{…}` (the tag is dropped).
pub fn parse_all(text: &str) -> Result<Vec<Edn>, String> {
    parse_with_lines(text).map(|(forms, _)| forms)
}

/// Like [`parse_all`], also giving the line on which each history operation starts: each
/// top-level form's, or, when the text is one vector, each of its items' (the two layouts
/// Jepsen writes), so that a bad operation can be named by its line.
pub fn parse_with_lines(text: &str) -> Result<(Vec<Edn>, Vec<usize>), String> {
    let mut r = Reader {
        s: text.as_bytes(),
        i: 0,
        line: 1,
        depth: 0,
        item_lines: Vec::new(),
        item_lines_wanted: true,
    };
    let mut out = Vec::new();
    let mut top_lines = Vec::new();
    loop {
        r.skip_ws();
        if r.i >= r.s.len() {
            let lines = match out.as_slice() {
                [Edn::Vector(items)] if items.iter().all(|i| matches!(i, Edn::Map(_))) => {
                    r.item_lines
                }
                _ => top_lines,
            };
            return Ok((out, lines));
        }
        let line = r.line;
        if let Some(v) = r.form()? {
            out.push(v);
            top_lines.push(line);
            // Item lines matter only when the first form is the whole history.
            r.item_lines_wanted = false;
        }
    }
}

struct Reader<'a> {
    s: &'a [u8],
    i: usize,
    line: usize,
    /// Nesting depth, bounded so hostile input cannot overflow the stack.
    depth: usize,
    /// Start lines of the items of the first top-level collection.
    item_lines: Vec<usize>,
    item_lines_wanted: bool,
}

/// The deepest nesting read.
const MAX_DEPTH: usize = 256;

impl Reader<'_> {
    fn err<T>(&self, what: impl std::fmt::Display) -> Result<T, String> {
        Err(format!("line {}: {what}", self.line))
    }

    fn peek(&self) -> Option<u8> {
        self.s.get(self.i).copied()
    }

    fn skip_ws(&mut self) {
        while let Some(c) = self.peek() {
            match c {
                b'\n' => {
                    self.line += 1;
                    self.i += 1;
                }
                b' ' | b'\t' | b'\r' | b',' => self.i += 1,
                b';' => {
                    while self.peek().is_some_and(|c| c != b'\n') {
                        self.i += 1;
                    }
                }
                _ => break,
            }
        }
    }

    /// One form; `None` for a discarded (`#_`) form.
    fn form(&mut self) -> Result<Option<Edn>, String> {
        self.skip_ws();
        let Some(c) = self.peek() else {
            return self.err("unexpected end of input");
        };
        Ok(Some(match c {
            b'[' => Edn::Vector(self.seq(b']')?),
            b'(' => Edn::Vector(self.seq(b')')?),
            b'{' => {
                let items = self.seq(b'}')?;
                if items.len() % 2 == 1 {
                    return self.err("a map needs an even number of forms");
                }
                let mut it = items.into_iter();
                let mut m = Vec::new();
                while let (Some(k), Some(v)) = (it.next(), it.next()) {
                    m.push((k, v));
                }
                Edn::Map(m)
            }
            b'#' => {
                self.i += 1;
                match self.peek() {
                    Some(b'{') => Edn::Set(self.seq(b'}')?),
                    Some(b'_') => {
                        self.i += 1;
                        self.form()?;
                        return Ok(None);
                    }
                    Some(b'#') => {
                        let sym = self.token();
                        match sym.as_str() {
                            "#Inf" => Edn::Float(f64::INFINITY),
                            "#-Inf" => Edn::Float(f64::NEG_INFINITY),
                            _ => Edn::Float(f64::NAN),
                        }
                    }
                    _ => {
                        let _tag = self.token();
                        match self.form()? {
                            Some(v) => v,
                            None => return self.err("a tag needs a value"),
                        }
                    }
                }
            }
            b'"' => self.string()?,
            b')' | b']' | b'}' => return self.err(format!("unexpected '{}'", c as char)),
            b'\\' => {
                self.i += 1;
                let t = self.token();
                Edn::Str(match t.as_str() {
                    "newline" => "\n".into(),
                    "space" => " ".into(),
                    "tab" => "\t".into(),
                    other => other.to_string(),
                })
            }
            b':' => {
                self.i += 1;
                let t = self.token();
                if t.is_empty() {
                    return self.err("a keyword needs a name");
                }
                Edn::Keyword(t)
            }
            _ => {
                let t = self.token();
                if t.is_empty() {
                    return self.err(format!("unexpected character {:?}", c as char));
                }
                atom(&t).map_or_else(|| self.err(format!("cannot read {t:?}")), Ok)?
            }
        }))
    }

    fn token(&mut self) -> String {
        let start = self.i;
        while let Some(c) = self.peek() {
            if c.is_ascii_whitespace() || b",;()[]{}\"".contains(&c) {
                break;
            }
            self.i += 1;
        }
        String::from_utf8_lossy(&self.s[start..self.i]).into_owned()
    }

    fn seq(&mut self, close: u8) -> Result<Vec<Edn>, String> {
        let open_line = self.line;
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return self.err(format!("collections nested more than {MAX_DEPTH} deep"));
        }
        self.i += 1;
        let mut items = Vec::new();
        loop {
            self.skip_ws();
            match self.peek() {
                None => {
                    return Err(format!(
                        "line {open_line}: '{}' opened here is never closed",
                        match close {
                            b']' => '[',
                            b')' => '(',
                            _ => '{',
                        }
                    ));
                }
                Some(c) if c == close => {
                    self.i += 1;
                    self.depth -= 1;
                    return Ok(items);
                }
                _ => {
                    let line = self.line;
                    if let Some(v) = self.form()? {
                        items.push(v);
                        if self.depth == 1 && self.item_lines_wanted {
                            self.item_lines.push(line);
                        }
                    }
                }
            }
        }
    }

    fn string(&mut self) -> Result<Edn, String> {
        let start_line = self.line;
        self.i += 1;
        let mut out = Vec::new();
        loop {
            let Some(c) = self.peek() else {
                return Err(format!("line {start_line}: unterminated string"));
            };
            self.i += 1;
            match c {
                b'"' => return Ok(Edn::Str(String::from_utf8_lossy(&out).into_owned())),
                b'\\' => {
                    let e = self.peek().unwrap_or(b'\\');
                    self.i += 1;
                    out.push(match e {
                        b'n' => b'\n',
                        b't' => b'\t',
                        b'r' => b'\r',
                        other => other,
                    });
                }
                b'\n' => {
                    self.line += 1;
                    out.push(c);
                }
                _ => out.push(c),
            }
        }
    }
}

fn atom(t: &str) -> Option<Edn> {
    Some(match t {
        "nil" => Edn::Nil,
        "true" => Edn::Bool(true),
        "false" => Edn::Bool(false),
        _ => {
            let first = t.as_bytes()[0];
            if first.is_ascii_digit()
                || ((first == b'-' || first == b'+')
                    && t.len() > 1
                    && t.as_bytes()[1].is_ascii_digit())
            {
                let n = t.trim_end_matches(['N', 'M']);
                if let Ok(i) = n.parse::<i64>() {
                    Edn::Int(i)
                } else if let Ok(u) = n.parse::<u64>() {
                    Edn::UInt(u)
                } else if let Some((a, b)) = n.split_once('/') {
                    Edn::Float(a.parse::<f64>().ok()? / b.parse::<f64>().ok()?)
                } else {
                    Edn::Float(n.parse::<f64>().ok()?)
                }
            } else {
                Edn::Str(t.to_string())
            }
        }
    })
}

#[cfg(test)]
mod parse_tests {
    use super::*;

    #[test]
    fn reads_jepsen_histories() {
        let text = "; a comment\n[{:type :invoke, :f :read, :value nil, :process 0}\n {:type :ok :f :read :value #{1 2} :process 0 :x 1.5M :y 7N}]\n#jepsen.history.Op{:index 3, :f :cas, :value [1 2]}\n#_ {:ignored true}\n(1 \"a\\\"b\" \\c :ns/kw sym)";
        let forms = parse_all(text).unwrap();
        assert_eq!(forms.len(), 3);
        assert_eq!(
            forms[0].to_string(),
            r#"[{:type :invoke, :f :read, :value nil, :process 0} {:type :ok, :f :read, :value #{1 2}, :process 0, :x 1.5, :y 7}]"#
        );
        assert_eq!(
            forms[1].get("value"),
            Some(&Edn::Vector(vec![Edn::Int(1), Edn::Int(2)]))
        );
        assert_eq!(
            forms[2],
            Edn::Vector(vec![
                Edn::Int(1),
                Edn::Str("a\"b".into()),
                Edn::Str("c".into()),
                kw("ns/kw"),
                Edn::Str("sym".into())
            ])
        );
    }

    #[test]
    fn op_lines_in_both_history_layouts() {
        let (_, lines) = parse_with_lines("{:a 1}\n; note\n{:a 2\n :b 3}\n\n{:a 4}").unwrap();
        assert_eq!(lines, [1, 3, 6]);
        let (_, lines) = parse_with_lines("; h\n[{:a 1}\n {:a 2}\n\n {:a [3\n 4]}]").unwrap();
        assert_eq!(lines, [2, 3, 5]);
    }

    #[test]
    fn errors_name_the_line() {
        assert_eq!(
            parse_all("[1 2\n3").unwrap_err(),
            "line 1: '[' opened here is never closed"
        );
        assert_eq!(
            parse_all("{:a 1}\n{:b}").unwrap_err(),
            "line 2: a map needs an even number of forms"
        );
        assert_eq!(parse_all("\n\n]").unwrap_err(), "line 3: unexpected ']'");
        assert!(
            parse_all("\"abc")
                .unwrap_err()
                .contains("unterminated string")
        );
    }
}
