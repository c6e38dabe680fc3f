//! The session token: 32 random bytes from the operating system's generator, base64url
//! without padding (43 characters). Only its SHA-256 is stored; the text exists in the
//! login's answer and in the customer's `Authorization` header, nowhere else.

use std::fmt;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use sha2::{Digest, Sha256};

const TOKEN_BYTES: usize = 32;
/// Base64 of 32 bytes without padding.
const TOKEN_CHARS: usize = 43;

/// A token just issued, to be handed to the customer once. `Debug` prints nothing of it.
pub struct SessionToken(String);

/// What is stored and looked up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenHash(pub [u8; 32]);

impl SessionToken {
    pub fn generate() -> Result<Self, aws_lc_rs::error::Unspecified> {
        let mut bytes = [0u8; TOKEN_BYTES];
        aws_lc_rs::rand::fill(&mut bytes)?;
        Ok(SessionToken(URL_SAFE_NO_PAD.encode(bytes)))
    }

    pub fn expose(&self) -> &str {
        &self.0
    }

    pub fn hash(&self) -> TokenHash {
        TokenHash(Sha256::digest(self.0.as_bytes()).into())
    }
}

impl fmt::Debug for SessionToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SessionToken([redacted])")
    }
}

impl TokenHash {
    /// The hash of what a client presented, if it has the form of a token we issue
    /// (anything else was never issued, and is not worth a query).
    pub fn of_presented(presented: &str) -> Option<TokenHash> {
        let well_formed = presented.len() == TOKEN_CHARS
            && presented
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        well_formed.then(|| TokenHash(Sha256::digest(presented.as_bytes()).into()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_is_43_url_safe_characters_whose_hash_finds_it_and_whose_debug_hides_it() {
        let token = SessionToken::generate().unwrap();
        assert_eq!(token.expose().len(), TOKEN_CHARS);
        assert_eq!(TokenHash::of_presented(token.expose()), Some(token.hash()));
        assert!(!format!("{token:?}").contains(token.expose()));
        assert_ne!(token.expose(), SessionToken::generate().unwrap().expose());
        assert_eq!(TokenHash::of_presented("short"), None);
        assert_eq!(TokenHash::of_presented(&"+".repeat(TOKEN_CHARS)), None);
    }
}
