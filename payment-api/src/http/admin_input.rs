//! What the admin routes take from a person: who acts, and the note they leave.

use serde::Deserialize;
use utoipa::ToSchema;

use super::error::ApiError;

/// Longest note a person can leave with a decision.
const MAX_NOTE_CHARS: usize = 1000;

/// A person's decision as every admin route that records one takes it: why, kept in the
/// history, and who.
#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct PersonsNote {
    /// Why: what was checked or done, and with whom. Kept in the history.
    #[schema(
        example = "Unitel support confirmed seq 1760754386127 on 2026-11-24",
        pattern = r"\S",
        max_length = 1000
    )]
    note: String,
    /// Who decided (default `admin`). `resolvedBy` and `retriedBy` are read as well.
    #[serde(default, alias = "resolvedBy", alias = "retriedBy")]
    #[schema(max_length = 100)]
    decided_by: Option<String>,
}

impl PersonsNote {
    /// The note, trimmed, and the person's name, or why they are refused.
    pub fn read(&self) -> Result<(&str, String), ApiError> {
        Ok((
            required_text(&self.note, "note", MAX_NOTE_CHARS)?,
            person(self.decided_by.as_deref(), "decidedBy")?,
        ))
    }
}

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

#[cfg(test)]
mod tests {
    use super::PersonsNote;

    fn read(body: serde_json::Value) -> Result<(String, String), String> {
        let decision: PersonsNote = serde_json::from_value(body).map_err(|e| e.to_string())?;
        decision
            .read()
            .map(|(note, who)| (note.to_owned(), who))
            .map_err(|e| e.to_string())
    }

    #[test]
    fn every_route_reads_the_decider_under_its_old_name_too() {
        for field in ["decidedBy", "resolvedBy", "retriedBy"] {
            let body = serde_json::json!({"note": " checked with Unitel ", field: "ops li"});
            assert_eq!(
                read(body).unwrap(),
                ("checked with Unitel".to_owned(), "ops li".to_owned())
            );
        }
        let unnamed = read(serde_json::json!({"note": "n"})).unwrap();
        assert_eq!(unnamed.1, "admin");
        assert!(read(serde_json::json!({"note": "  "})).is_err());
        assert!(read(serde_json::json!({"note": "x".repeat(1001)})).is_err());
        assert!(read(serde_json::json!({"note": "n", "decidedBy": "x".repeat(101)})).is_err());
    }
}
