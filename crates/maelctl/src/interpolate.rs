//! `${...}` interpolation of a project file with maelctl's environment (spec §5.1).
//!
//! | Syntax | Result |
//! |---|---|
//! | `${VAR}` | the value, or empty when unset |
//! | `${VAR:default}` | `default` when VAR is unset |
//! | `${VAR:-default}` | `default` when VAR is unset or empty |
//! | `$${...}` | the literal text `${...}` |
//!
//! Hand-written: the syntax is the original's own (a `:` default without `-`, `$$` escapes),
//! which no template crate reproduces exactly.

/// Interpolates `text`, looking variables up with `get`.
///
/// ```
/// use maelctl::interpolate::interpolate;
/// let env = |k: &str| (k == "TAG").then(|| "v2".to_string());
/// assert_eq!(interpolate("image: app:${TAG}", env), "image: app:v2");
/// assert_eq!(interpolate("${PORT:8080} ${EMPTY:-x} $${KEEP}", env), "8080 x ${KEEP}");
/// ```
pub fn interpolate(text: &str, get: impl Fn(&str) -> Option<String>) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(pos) = rest.find('$') {
        out.push_str(&rest[..pos]);
        let tail = &rest[pos..];
        if let Some(after) = tail.strip_prefix("$${") {
            // Escaped: keep `${...}` literally.
            match after.find('}') {
                Some(end) => {
                    out.push_str("${");
                    out.push_str(&after[..=end]);
                    rest = &after[end + 1..];
                }
                None => {
                    out.push_str("$${");
                    rest = after;
                }
            }
            continue;
        }
        if let Some(after) = tail.strip_prefix("${")
            && let Some(end) = after.find('}')
        {
            out.push_str(&expand(&after[..end], &get));
            rest = &after[end + 1..];
            continue;
        }
        out.push('$');
        rest = &tail[1..];
    }
    out.push_str(rest);
    out
}

fn expand(expr: &str, get: &impl Fn(&str) -> Option<String>) -> String {
    if let Some((name, default)) = expr.split_once(":-") {
        return match get(name.trim()) {
            Some(v) if !v.is_empty() => v,
            _ => default.to_string(),
        };
    }
    if let Some((name, default)) = expr.split_once(':') {
        return get(name.trim()).unwrap_or_else(|| default.to_string());
    }
    get(expr.trim()).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn env(k: &str) -> Option<String> {
        match k {
            "SET" => Some("value".into()),
            "EMPTY" => Some(String::new()),
            _ => None,
        }
    }

    #[test]
    fn the_three_forms_and_the_escape() {
        assert_eq!(interpolate("${SET}/${UNSET}/${EMPTY}", env), "value//");
        assert_eq!(
            interpolate("${UNSET:d}/${EMPTY:d}/${SET:d}", env),
            "d//value"
        );
        assert_eq!(
            interpolate("${UNSET:-d}/${EMPTY:-d}/${SET:-d}", env),
            "d/d/value"
        );
        assert_eq!(
            interpolate("$${SET} costs $5 ${SET", env),
            "${SET} costs $5 ${SET"
        );
        assert_eq!(interpolate("${URL:http://x:80}", env), "http://x:80");
    }

    proptest! {
        /// Text without `$` is unchanged, and an escaped reference always comes out literally.
        #[test]
        fn plain_text_is_kept(s in "[^$]{0,40}", name in "[A-Z]{1,8}") {
            prop_assert_eq!(interpolate(&s, env), s.clone());
            let escaped = format!("{s}$${{{name}}}{s}");
            prop_assert_eq!(interpolate(&escaped, env), format!("{s}${{{name}}}{s}"));
        }
    }
}
