//! Messages on the wire: reading one input line into a [`Message`] and writing outgoing lines.
//!
//! A line is parsed once: the envelope and the body's header fields (`type`, `msg_id`,
//! `in_reply_to`) are read without building a JSON tree, and the body's raw text is kept for
//! the handler's own deserialiser (spec R6.4).

use crate::Error;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use serde_json::{Map, Value};
use std::borrow::Cow;
use std::fmt::Write;
use std::sync::OnceLock;

/// One message received by the node: envelope, header fields and the raw body.
///
/// ```
/// let m = maelnode::Message::parse(br#"{"id":4,"src":"c1","dest":"n1","body":{"type":"echo","msg_id":7,"echo":"hi"}}"#).unwrap();
/// assert_eq!((m.src(), m.dest(), m.msg_type(), m.msg_id()), ("c1", "n1", "echo", Some(7)));
/// assert_eq!(m.body_json()["echo"], "hi");
/// ```
#[derive(Debug)]
pub struct Message {
    src: String,
    dest: String,
    msg_type: String,
    msg_id: Option<u64>,
    in_reply_to: Option<u64>,
    body: Box<RawValue>,
    json: OnceLock<Map<String, Value>>,
}

#[derive(Deserialize)]
struct Envelope<'a> {
    src: String,
    dest: String,
    #[serde(borrow)]
    body: &'a RawValue,
}

#[derive(Deserialize)]
struct Header<'a> {
    #[serde(rename = "type", borrow, default)]
    msg_type: Option<Cow<'a, str>>,
    #[serde(default)]
    msg_id: Option<u64>,
    #[serde(default)]
    in_reply_to: Option<u64>,
}

impl Message {
    /// Parses one input line (without its newline). Extra top-level keys, such as the `id` the
    /// runner adds, are ignored. The error names what is wrong with the line.
    ///
    /// ```
    /// assert!(maelnode::Message::parse(b"not json").is_err());
    /// assert!(maelnode::Message::parse(br#"{"src":"c1","dest":"n1","body":[1]}"#).is_err());
    /// ```
    pub fn parse(line: &[u8]) -> Result<Message, String> {
        let env: Envelope = serde_json::from_slice(line).map_err(|e| e.to_string())?;
        if !env.body.get().starts_with('{') {
            return Err("body is not a JSON object".into());
        }
        let header: Header = serde_json::from_str(env.body.get())
            .map_err(|e| format!("body header (type, msg_id, in_reply_to): {e}"))?;
        Ok(Message {
            msg_type: header.msg_type.map(Cow::into_owned).unwrap_or_default(),
            msg_id: header.msg_id,
            in_reply_to: header.in_reply_to,
            src: env.src,
            dest: env.dest,
            body: env.body.to_owned(),
            json: OnceLock::new(),
        })
    }

    /// The sender's id.
    ///
    /// ```
    /// # let m = maelnode::Message::parse(br#"{"src":"n2","dest":"n1","body":{}}"#).unwrap();
    /// assert_eq!(m.src(), "n2");
    /// ```
    pub fn src(&self) -> &str {
        &self.src
    }

    /// The destination's id.
    ///
    /// ```
    /// # let m = maelnode::Message::parse(br#"{"src":"n2","dest":"n1","body":{}}"#).unwrap();
    /// assert_eq!(m.dest(), "n1");
    /// ```
    pub fn dest(&self) -> &str {
        &self.dest
    }

    /// The body's `type`, or `""` when it has none.
    ///
    /// ```
    /// # let m = maelnode::Message::parse(br#"{"src":"n2","dest":"n1","body":{}}"#).unwrap();
    /// assert_eq!(m.msg_type(), "");
    /// ```
    pub fn msg_type(&self) -> &str {
        &self.msg_type
    }

    /// The body's `msg_id`, if any.
    ///
    /// ```
    /// # let m = maelnode::Message::parse(br#"{"src":"n2","dest":"n1","body":{"msg_id":3}}"#).unwrap();
    /// assert_eq!(m.msg_id(), Some(3));
    /// ```
    pub fn msg_id(&self) -> Option<u64> {
        self.msg_id
    }

    /// The body's `in_reply_to`, if any: a message that has one is a reply.
    ///
    /// ```
    /// # let m = maelnode::Message::parse(br#"{"src":"n2","dest":"n1","body":{"in_reply_to":0}}"#).unwrap();
    /// assert_eq!(m.in_reply_to(), Some(0));
    /// ```
    pub fn in_reply_to(&self) -> Option<u64> {
        self.in_reply_to
    }

    /// The body's JSON text, exactly as received.
    ///
    /// ```
    /// # let m = maelnode::Message::parse(br#"{"src":"n2","dest":"n1","body":{"a":1.0}}"#).unwrap();
    /// assert_eq!(m.body_raw(), r#"{"a":1.0}"#);
    /// ```
    pub fn body_raw(&self) -> &str {
        self.body.get()
    }

    /// The body as a JSON map, parsed on first use.
    ///
    /// ```
    /// # let m = maelnode::Message::parse(br#"{"src":"n2","dest":"n1","body":{"a":1}}"#).unwrap();
    /// assert_eq!(m.body_json()["a"], 1);
    /// ```
    pub fn body_json(&self) -> &Map<String, Value> {
        self.json
            .get_or_init(|| serde_json::from_str(self.body.get()).unwrap_or_default())
    }

    /// Deserialises the body into `T`. Failure is a malformed-request error (code 12) carrying
    /// serde's message. Reserved keys (`type`, `msg_id`, `in_reply_to`) are ignored by structs
    /// that do not name them.
    ///
    /// ```
    /// #[derive(serde::Deserialize)]
    /// struct ReadOk { value: u64 }
    /// let m = maelnode::Message::parse(br#"{"src":"n2","dest":"n1","body":{"type":"read_ok","value":5}}"#).unwrap();
    /// assert_eq!(m.body_as::<ReadOk>().unwrap().value, 5);
    /// ```
    pub fn body_as<T: DeserializeOwned>(&self) -> Result<T, Error> {
        serde_json::from_str(self.body.get())
            .map_err(|e| Error::malformed(format!("cannot decode {:?} body: {e}", self.msg_type)))
    }
}

/// Serialises an outgoing body, which must be a JSON object.
pub(crate) fn body_text(body: impl Serialize) -> Result<String, Error> {
    match serde_json::to_string(&body) {
        Ok(text) if text.starts_with('{') => Ok(text),
        Ok(other) => Err(Error::crash(format!(
            "an outgoing message body must serialise to a JSON object, not {other}"
        ))),
        Err(e) => Err(Error::crash(format!("cannot serialise outgoing body: {e}"))),
    }
}

/// A JSON object's members as raw text, in order.
struct RawMembers(Vec<(String, Box<RawValue>)>);

impl<'de> Deserialize<'de> for RawMembers {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Members;
        impl<'de> serde::de::Visitor<'de> for Members {
            type Value = RawMembers;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut map: A,
            ) -> Result<RawMembers, A::Error> {
                let mut out = Vec::new();
                while let Some((k, v)) = map.next_entry::<String, Box<RawValue>>()? {
                    out.push((k, v));
                }
                Ok(RawMembers(out))
            }
        }
        d.deserialize_map(Members)
    }
}

/// One outgoing protocol line: compact JSON with only `src`, `dest` and `body`, plus `\n`.
/// `body` is a serialised JSON object; the library's fields are set on it: `msg_id`,
/// `in_reply_to` (removed when `None`), and `type` when the body has none.
///
/// The common case — a body that mentions none of those keys — is spliced as text, which
/// avoids building and re-serialising a JSON tree for every message.
pub(crate) fn encode_line(
    src: &str,
    dest: &str,
    body: &str,
    msg_id: u64,
    in_reply_to: Option<u64>,
    default_type: Option<&str>,
) -> String {
    let reserved = ["\"type\"", "\"msg_id\"", "\"in_reply_to\""];
    if reserved.iter().any(|k| body.contains(k)) {
        // Re-assemble from the body's raw members, so numbers, nesting and key order stay
        // exactly as serialised (a `Value` round trip would turn huge integers into floats).
        let members = serde_json::from_str::<RawMembers>(body)
            .map(|m| m.0)
            .unwrap_or_default();
        let mut out = String::with_capacity(body.len() + 64);
        out.push('{');
        let has_type = members.iter().any(|(k, _)| k == "type");
        if let (Some(t), false) = (default_type, has_type) {
            let _ = write!(
                out,
                "\"type\":{},",
                serde_json::to_string(t).expect("string")
            );
        }
        let _ = write!(out, "\"msg_id\":{msg_id}");
        if let Some(r) = in_reply_to {
            let _ = write!(out, ",\"in_reply_to\":{r}");
        }
        for (k, v) in members
            .iter()
            .filter(|(k, _)| k != "msg_id" && k != "in_reply_to")
        {
            let _ = write!(
                out,
                ",{}:{}",
                serde_json::to_string(k).expect("string"),
                v.get()
            );
        }
        out.push('}');
        let mut line = String::with_capacity(out.len() + src.len() + dest.len() + 32);
        let _ = writeln!(
            line,
            "{{\"src\":{},\"dest\":{},\"body\":{out}}}",
            serde_json::to_string(src).expect("string"),
            serde_json::to_string(dest).expect("string")
        );
        return line;
    }
    let mut line = String::with_capacity(body.len() + src.len() + dest.len() + 96);
    let push_str = |line: &mut String, s: &str| {
        line.push_str(&serde_json::to_string(s).expect("a string always serialises"));
    };
    line.push_str("{\"src\":");
    push_str(&mut line, src);
    line.push_str(",\"dest\":");
    push_str(&mut line, dest);
    line.push_str(",\"body\":{");
    if let Some(t) = default_type {
        line.push_str("\"type\":");
        push_str(&mut line, t);
        line.push(',');
    }
    let _ = write!(line, "\"msg_id\":{msg_id}");
    if let Some(r) = in_reply_to {
        let _ = write!(line, ",\"in_reply_to\":{r}");
    }
    let rest = &body[1..];
    if rest.trim_start() != "}" {
        line.push(',');
    }
    line.push_str(rest);
    line.push_str("}\n");
    line
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn integers_and_floats_survive_a_round_trip() {
        let m = Message::parse(
            br#"{"src":"a","dest":"b","body":{"x":1,"y":1.0,"z":18446744073709551615}}"#,
        )
        .unwrap();
        let line = encode_line("b", "a", m.body_raw(), 4, None, None);
        assert_eq!(
            line,
            "{\"src\":\"b\",\"dest\":\"a\",\"body\":{\"msg_id\":4,\"x\":1,\"y\":1.0,\"z\":18446744073709551615}}\n"
        );
    }

    fn parsed(line: &str) -> Value {
        serde_json::from_str(line).unwrap()
    }

    #[test]
    fn encoding_sets_the_library_fields_on_both_paths() {
        // Fast path: no reserved key in the body.
        let l = encode_line(
            "n1",
            "c\"2",
            r#"{"echo":"hi"}"#,
            7,
            Some(3),
            Some("echo_ok"),
        );
        assert_eq!(
            parsed(&l),
            serde_json::json!({"src":"n1","dest":"c\"2","body":{"type":"echo_ok","msg_id":7,"in_reply_to":3,"echo":"hi"}})
        );
        assert!(l.ends_with("}\n") && !l[..l.len() - 1].contains('\n'));
        let l = encode_line("n1", "c2", "{}", 8, Some(0), Some("broadcast_ok"));
        assert_eq!(
            parsed(&l)["body"],
            serde_json::json!({"type":"broadcast_ok","msg_id":8,"in_reply_to":0})
        );
        // Slow path: the body sets type and stale ids, which are overwritten or removed.
        let l = encode_line(
            "n1",
            "n2",
            r#"{"type":"gossip","msg_id":99,"in_reply_to":5,"v":[1]}"#,
            9,
            None,
            None,
        );
        assert_eq!(
            parsed(&l)["body"],
            serde_json::json!({"type":"gossip","msg_id":9,"v":[1]})
        );
        let l = encode_line(
            "n1",
            "c1",
            r#"{"type":"custom"}"#,
            10,
            Some(2),
            Some("read_ok"),
        );
        assert_eq!(parsed(&l)["body"]["type"], "custom");
        // Huge integers and key order survive the slow path.
        let l = encode_line(
            "n1",
            "c1",
            r#"{"type":"t","big":123456789012345678901234567890,"a":1.0}"#,
            12,
            None,
            None,
        );
        assert!(
            l.contains(r#""type":"t","big":123456789012345678901234567890,"a":1.0"#),
            "{l}"
        );
        // A reserved word inside a value only takes the slow path; the result is the same.
        let l = encode_line(
            "n1",
            "c1",
            r#"{"note":"\"type\""}"#,
            11,
            Some(1),
            Some("x_ok"),
        );
        assert_eq!(
            parsed(&l)["body"],
            serde_json::json!({"note":"\"type\"","type":"x_ok","msg_id":11,"in_reply_to":1})
        );
    }

    #[test]
    fn malformed_lines_say_what_is_wrong() {
        assert!(Message::parse(b"[1,2]").is_err());
        assert!(
            Message::parse(br#"{"src":"a","body":{}}"#)
                .unwrap_err()
                .contains("dest")
        );
        assert!(Message::parse(br#"{"src":"a","dest":"b","body":{"msg_id":"x"}}"#).is_err());
        assert!(
            Message::parse(br#"{"src":"a","dest":"b","body":"hi"}"#)
                .unwrap_err()
                .contains("object")
        );
    }
}
