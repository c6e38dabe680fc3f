//! What the admin routes take from a person: who acts, and the note they leave.

use super::error::ApiError;

/// The name of the person acting through an admin route, as they give it (default
/// `admin`), for the order's history ([`shared::history::Actor::Admin`]).
pub fn person(given: Option<&str>, field: &str) -> Result<String, ApiError> {
    let who = given
        .map(str::trim)
        .filter(|w| !w.is_empty())
        .unwrap_or("admin");
    if who.chars().count() > 100 {
        return Err(ApiError::BadRequest(format!(
            "{field} must be at most 100 characters"
        )));
    }
    Ok(who.to_owned())
}

/// A required free-text field, trimmed, of at most `max_chars` characters.
pub fn required_text<'a>(
    text: &'a str,
    field: &str,
    max_chars: usize,
) -> Result<&'a str, ApiError> {
    let text = text.trim();
    if text.is_empty() || text.chars().count() > max_chars {
        return Err(ApiError::BadRequest(format!(
            "{field} must be 1 to {max_chars} characters"
        )));
    }
    Ok(text)
}
