//! Reading APIv3 request bodies, with PARAM_ERROR for what is missing or malformed.

use serde_json::{Map, Value};

use super::error::V3Error;

pub(crate) struct Fields<'a>(pub &'a Map<String, Value>);

/// The body as a JSON object.
pub(crate) fn parse(body: &[u8]) -> Result<Map<String, Value>, V3Error> {
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(fields)) => Ok(fields),
        _ => Err(V3Error::param("请求体格式错误，须为JSON对象")),
    }
}

impl<'a> Fields<'a> {
    pub(crate) fn text(&self, name: &str) -> Result<&'a str, V3Error> {
        match self.0.get(name) {
            Some(Value::String(text)) if !text.is_empty() => Ok(text),
            Some(Value::String(_)) | None | Some(Value::Null) => {
                Err(V3Error::param(format!("缺少参数{name}")))
            }
            Some(_) => Err(V3Error::param(format!("{name}必须为字符串"))),
        }
    }

    pub(crate) fn optional_text(&self, name: &str) -> Result<Option<&'a str>, V3Error> {
        match self.0.get(name) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(text)) => Ok(Some(text)),
            Some(_) => Err(V3Error::param(format!("{name}必须为字符串"))),
        }
    }

    pub(crate) fn object(&self, name: &str) -> Result<Fields<'a>, V3Error> {
        match self.0.get(name) {
            Some(Value::Object(inner)) => Ok(Fields(inner)),
            None | Some(Value::Null) => Err(V3Error::param(format!("缺少参数{name}"))),
            Some(_) => Err(V3Error::param(format!("{name}必须为对象"))),
        }
    }

    /// A JSON integer above 0 (fen): `"100"` or `1.5` is PARAM_ERROR.
    pub(crate) fn positive_integer(&self, name: &str) -> Result<i64, V3Error> {
        match self.0.get(name) {
            Some(Value::Number(number)) => match number.as_i64() {
                Some(value) if value > 0 => Ok(value),
                _ => Err(V3Error::param(format!("{name}必须为大于0的整数"))),
            },
            None | Some(Value::Null) => Err(V3Error::param(format!("缺少参数{name}"))),
            Some(_) => Err(V3Error::param(format!("{name}必须为整数"))),
        }
    }

    /// `currency` "CNY"; absent means CNY when `required` is false.
    pub(crate) fn currency(&self, required: bool) -> Result<(), V3Error> {
        match self.optional_text("currency")? {
            Some("CNY") => Ok(()),
            None if !required => Ok(()),
            None => Err(V3Error::param("缺少参数currency")),
            Some(_) => Err(V3Error::param("currency仅支持CNY")),
        }
    }
}

/// `notify_url`: at most 255 characters, no query string, HTTPS; plain HTTP only under the
/// address the sandbox calls the service at (the test's or the demo's base).
pub(crate) fn check_notify_url(url: &str, http_base: &str) -> Result<(), V3Error> {
    if url.len() > 255 {
        return Err(V3Error::param("notify_url长度不能超过255"));
    }
    if url.contains('?') || url.contains('#') {
        return Err(V3Error::param("notify_url不能携带参数"));
    }
    let host = |rest: &str| !rest.is_empty() && !rest.starts_with('/');
    if let Some(rest) = url.strip_prefix("https://") {
        if host(rest) {
            return Ok(());
        }
    }
    let base = http_base.trim_end_matches('/');
    if url.starts_with("http://") && !base.is_empty() && url.starts_with(base) {
        return Ok(());
    }
    Err(V3Error::param("notify_url须为https地址"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn notify_urls_are_https_without_a_query_or_under_the_service_base() {
        let base = "http://127.0.0.1:3000";
        assert!(check_notify_url("https://pay.example.com/payment/notify", base).is_ok());
        assert!(check_notify_url("http://127.0.0.1:3000/payment/notify", base).is_ok());
        assert!(check_notify_url("http://evil.example.com/payment/notify", base).is_err());
        assert!(check_notify_url("https://pay.example.com/notify?order=1", base).is_err());
        assert!(check_notify_url("https:///notify", base).is_err());
        assert!(check_notify_url("ftp://pay.example.com/notify", base).is_err());
    }
}
