//! Reading the mini-program's requests the way the system we replace read them
//! (class-validator with `whitelist` and `forbidNonWhitelisted`): a field it does not know
//! is refused, and every problem is reported at once, in that system's words — unknown
//! fields first, then each field's problems — joined with ", ", in one 400.

use serde_json::{Map, Value};

use super::error::ApiError;

pub struct LegacyBody {
    fields: Map<String, Value>,
    known: Vec<&'static str>,
    problems: Vec<String>,
}

impl LegacyBody {
    pub fn new(body: Value) -> Result<Self, ApiError> {
        match body {
            Value::Object(fields) => Ok(LegacyBody {
                fields,
                known: Vec::new(),
                problems: Vec::new(),
            }),
            _ => Err(ApiError::BadRequest("请求体必须是 JSON 对象".into())),
        }
    }

    fn take(&mut self, key: &'static str) -> Option<&Value> {
        self.known.push(key);
        self.fields.get(key).filter(|v| !v.is_null())
    }

    /// A required string: `not_a_string` when it is missing or not text, `empty` when it
    /// is missing or "".
    pub fn string(&mut self, key: &'static str, not_a_string: &str, empty: &str) -> Option<String> {
        match self.take(key).cloned() {
            Some(Value::String(text)) if !text.is_empty() => Some(text),
            Some(Value::String(_)) => {
                self.problems.push(empty.to_owned());
                None
            }
            Some(_) => {
                self.problems.push(not_a_string.to_owned());
                None
            }
            None => {
                self.problems.push(not_a_string.to_owned());
                self.problems.push(empty.to_owned());
                None
            }
        }
    }

    /// A required string whose rules the replaced system checked the other way round:
    /// `empty` before `not_a_string` when it is missing.
    pub fn string_empty_first(
        &mut self,
        key: &'static str,
        empty: &str,
        not_a_string: &str,
    ) -> Option<String> {
        let found = self.string(key, not_a_string, empty);
        if found.is_none() && self.fields.get(key).is_none_or(Value::is_null) {
            let n = self.problems.len();
            self.problems.swap(n - 2, n - 1);
        }
        found
    }

    /// An optional string: `not_a_string` when present and not text.
    pub fn optional_string(&mut self, key: &'static str, not_a_string: &str) -> Option<String> {
        match self.take(key).cloned() {
            Some(Value::String(text)) => Some(text),
            Some(_) => {
                self.problems.push(not_a_string.to_owned());
                None
            }
            None => None,
        }
    }

    /// A required value out of `allowed` (compared ignoring case when `any_case`): `invalid`
    /// when it is not one of them, and `empty` too when it is missing.
    pub fn one_of(
        &mut self,
        key: &'static str,
        allowed: &[&str],
        any_case: bool,
        invalid: &str,
        empty: Option<&str>,
    ) -> Option<String> {
        let value = self.take(key).cloned();
        let matches = |text: &str| {
            allowed
                .iter()
                .any(|a| *a == text || (any_case && a.eq_ignore_ascii_case(text)))
        };
        match value {
            Some(Value::String(text)) if matches(&text) => Some(text),
            Some(Value::String(text)) if text.is_empty() => {
                self.problems.push(invalid.to_owned());
                self.problems.extend(empty.map(str::to_owned));
                None
            }
            Some(_) => {
                self.problems.push(invalid.to_owned());
                None
            }
            None => {
                self.problems.push(invalid.to_owned());
                self.problems.extend(empty.map(str::to_owned));
                None
            }
        }
    }

    /// 400 with every problem, unknown fields first; Ok when there is none.
    pub fn finish(self) -> Result<(), ApiError> {
        let mut problems: Vec<String> = self
            .fields
            .keys()
            .filter(|key| !self.known.contains(&key.as_str()))
            .map(|key| format!("property {key} should not exist"))
            .collect();
        problems.extend(self.problems);
        if problems.is_empty() {
            Ok(())
        } else {
            Err(ApiError::BadRequest(problems.join(", ")))
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn problems(body: Value) -> String {
        let mut body = LegacyBody::new(body).unwrap();
        body.string("msisdn", "手机号码必须是字符串", "手机号码不能为空");
        body.one_of(
            "info",
            &["0", "1"],
            false,
            "资费详情参数必须是 0 或 1",
            None,
        );
        match body.finish() {
            Err(ApiError::BadRequest(message)) => message,
            other => format!("{other:?}"),
        }
    }

    #[test]
    fn every_problem_is_reported_in_the_replaced_systems_words_and_order() {
        assert_eq!(
            problems(json!({})),
            "手机号码必须是字符串, 手机号码不能为空, 资费详情参数必须是 0 或 1"
        );
        assert_eq!(
            problems(json!({"foo": 1, "msisdn": 88616609, "info": 1})),
            "property foo should not exist, 手机号码必须是字符串, 资费详情参数必须是 0 或 1"
        );
        assert_eq!(
            problems(json!({"msisdn": "", "info": "1"})),
            "手机号码不能为空"
        );
        assert_eq!(
            problems(json!({"msisdn": "88616609", "info": "1"})),
            "Ok(())"
        );
    }

    fn order_number_problems(body: Value) -> String {
        let mut body = LegacyBody::new(body).unwrap();
        body.string_empty_first("orderNumber", "订单号不能为空", "订单号必须是字符串");
        match body.finish() {
            Err(ApiError::BadRequest(message)) => message,
            other => format!("{other:?}"),
        }
    }

    #[test]
    fn reversed_rules_are_reported_in_their_order() {
        assert_eq!(
            order_number_problems(json!({})),
            "订单号不能为空, 订单号必须是字符串"
        );
        assert_eq!(
            order_number_problems(json!({"orderNumber": 5})),
            "订单号必须是字符串"
        );
        assert_eq!(
            order_number_problems(json!({"orderNumber": ""})),
            "订单号不能为空"
        );
    }
}
