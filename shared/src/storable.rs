//! Text from outside (Unitel's answers above all) in a form PostgreSQL stores. Its `text`
//! type refuses the NUL character and `jsonb` refuses the `\u0000` escape; a Rust string
//! holds nothing else that UTF-8 `text` refuses. Recording what Unitel said must never
//! fail because of what it said, so a NUL is kept, visibly, as the six characters `\u0000`.

use std::borrow::Cow;

use serde_json::Value;

/// What stands for a NUL character in stored text.
pub const NUL_ESCAPE: &str = "\\u0000";

/// `text` with every NUL replaced by [`NUL_ESCAPE`]; borrowed when there is none.
pub fn text(text: &str) -> Cow<'_, str> {
    if text.contains('\0') {
        Cow::Owned(text.replace('\0', NUL_ESCAPE))
    } else {
        Cow::Borrowed(text)
    }
}

/// `value` with [`text`] applied to every string and every key in it.
pub fn json(value: Value) -> Value {
    match value {
        Value::String(s) => Value::String(owned(s)),
        Value::Array(items) => Value::Array(items.into_iter().map(json).collect()),
        Value::Object(map) => {
            Value::Object(map.into_iter().map(|(k, v)| (owned(k), json(v))).collect())
        }
        other => other,
    }
}

fn owned(s: String) -> String {
    match text(&s) {
        Cow::Borrowed(_) => s,
        Cow::Owned(escaped) => escaped,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_nul_is_kept_visible_and_everything_else_unchanged() {
        assert_eq!(text("ok\0done"), "ok\\u0000done");
        assert!(matches!(text("Амжилттай"), Cow::Borrowed("Амжилттай")));
        assert_eq!(
            json(json!({"bill\0": ["a\0", 1, null, {"n": "\0"}]})),
            json!({"bill\\u0000": ["a\\u0000", 1, null, {"n": "\\u0000"}]})
        );
    }
}
