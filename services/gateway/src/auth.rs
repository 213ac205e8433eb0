//! Credentials: argon2id password hashes, HS256 access tokens (JWT), opaque refresh tokens and
//! API keys. Only hashes of refresh tokens and API keys are ever stored.

use argon2::{
    Argon2, PasswordHash, PasswordHasher, PasswordVerifier,
    password_hash::{SaltString, rand_core::OsRng},
};
use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD as B64};
use hmac::{Hmac, Mac};
use persys_kit::identity::{Role, UserClaims};
use rand::RngCore;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// Issuer of every access token.
pub const ISSUER: &str = "persys-gateway";
/// Audience of access tokens for the platform API.
pub const AUDIENCE: &str = "persys";
/// Prefix of every API key, so leaked keys are easy to recognise and scan for.
pub const API_KEY_PREFIX: &str = "psk_";

/// Hashes a password with argon2id and a random salt.
pub fn hash_password(password: &str) -> Result<String, argon2::password_hash::Error> {
    let salt = SaltString::generate(&mut OsRng);
    Ok(Argon2::default().hash_password(password.as_bytes(), &salt)?.to_string())
}

/// Returns whether `password` matches the PHC string `hash`. A malformed hash never matches.
pub fn verify_password(password: &str, hash: &str) -> bool {
    PasswordHash::new(hash).is_ok_and(|parsed| Argon2::default().verify_password(password.as_bytes(), &parsed).is_ok())
}

/// A hash of a password nobody knows, verified against when a user does not exist so that
/// unknown users take as long to reject as wrong passwords.
pub fn decoy_hash() -> &'static str {
    static DECOY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    DECOY.get_or_init(|| hash_password(&hex::encode(random_bytes::<16>())).expect("hashing a random password"))
}

/// Returns `N` random bytes from the OS generator.
pub fn random_bytes<const N: usize>() -> [u8; N] {
    let mut b = [0u8; N];
    rand::rng().fill_bytes(&mut b);
    b
}

/// Returns the SHA-256 of `s`, hex encoded.
pub fn sha256_hex(s: &str) -> String {
    hex::encode(Sha256::digest(s.as_bytes()))
}

/// Returns a new opaque refresh token (256 random bits).
pub fn new_refresh_token() -> String {
    format!("prt_{}", B64.encode(random_bytes::<32>()))
}

/// A freshly minted API key: the full secret (shown once) and its parts.
pub struct NewApiKey {
    /// `psk_<prefix>_<secret>`; shown to the user once, never stored.
    pub secret: String,
    /// The public part that identifies the key.
    pub prefix: String,
    /// SHA-256 of `secret`.
    pub hash: String,
}

/// Mints an API key.
pub fn new_api_key() -> NewApiKey {
    let prefix = hex::encode(random_bytes::<6>());
    let secret = format!("{API_KEY_PREFIX}{prefix}_{}", B64.encode(random_bytes::<32>()));
    let hash = sha256_hex(&secret);
    NewApiKey { secret, prefix, hash }
}

/// Splits a presented API key into its prefix, or `None` when it is not shaped like one.
pub fn api_key_prefix(key: &str) -> Option<&str> {
    let rest = key.strip_prefix(API_KEY_PREFIX)?;
    let (prefix, secret) = rest.split_once('_')?;
    (prefix.len() == 12 && prefix.bytes().all(|b| b.is_ascii_hexdigit()) && !secret.is_empty()).then_some(prefix)
}

/// Returns whether two equal-length hex digests are equal, in constant time.
pub fn digest_eq(a: &str, b: &str) -> bool {
    a.len() == b.len() && a.bytes().zip(b.bytes()).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Claims of an access token.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct Claims {
    /// Issuer.
    pub iss: String,
    /// Audience.
    pub aud: String,
    /// User id.
    pub sub: String,
    /// User name.
    pub name: String,
    /// Role name.
    pub role: String,
    /// Issued at, unix seconds.
    pub iat: i64,
    /// Expires at, unix seconds.
    pub exp: i64,
    /// Token id.
    pub jti: String,
    /// The user's token version when it was issued; see [`crate::store::UserRow::token_version`].
    pub ver: i64,
}

/// Why a token was refused. Callers get one message for all of them.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TokenError {
    /// Not three base64url parts, or not JSON.
    #[error("malformed token")]
    Malformed,
    /// Not HS256.
    #[error("unsupported algorithm")]
    Algorithm,
    /// The signature does not verify.
    #[error("bad signature")]
    Signature,
    /// `exp` has passed.
    #[error("expired")]
    Expired,
    /// Wrong `iss` or `aud`.
    #[error("wrong issuer or audience")]
    Audience,
}

/// Signs and verifies access tokens with one HMAC-SHA256 key.
#[derive(Clone)]
pub struct TokenKeys {
    key: Vec<u8>,
}

impl std::fmt::Debug for TokenKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TokenKeys(..)")
    }
}

#[derive(Serialize, Deserialize)]
struct Header {
    alg: String,
    typ: String,
}

impl TokenKeys {
    /// Returns keys from a secret of at least 32 bytes.
    pub fn new(secret: &[u8]) -> Self {
        Self { key: secret.to_vec() }
    }

    fn mac(&self) -> Hmac<Sha256> {
        Hmac::<Sha256>::new_from_slice(&self.key).expect("hmac accepts any key length")
    }

    /// Signs `claims` as a compact JWT.
    pub fn sign(&self, claims: &Claims) -> String {
        let header =
            B64.encode(serde_json::to_vec(&Header { alg: "HS256".into(), typ: "JWT".into() }).expect("header"));
        let payload = B64.encode(serde_json::to_vec(claims).expect("claims"));
        let signing_input = format!("{header}.{payload}");
        let mut mac = self.mac();
        mac.update(signing_input.as_bytes());
        format!("{signing_input}.{}", B64.encode(mac.finalize().into_bytes()))
    }

    /// Verifies signature, algorithm, issuer, audience and expiry at `now` (unix seconds).
    pub fn verify(&self, token: &str, now: i64) -> Result<Claims, TokenError> {
        let mut parts = token.split('.');
        let (Some(h), Some(p), Some(s), None) = (parts.next(), parts.next(), parts.next(), parts.next()) else {
            return Err(TokenError::Malformed);
        };
        let header: Header = serde_json::from_slice(&B64.decode(h).map_err(|_| TokenError::Malformed)?)
            .map_err(|_| TokenError::Malformed)?;
        if header.alg != "HS256" {
            return Err(TokenError::Algorithm);
        }
        let signature = B64.decode(s).map_err(|_| TokenError::Malformed)?;
        let mut mac = self.mac();
        mac.update(h.as_bytes());
        mac.update(b".");
        mac.update(p.as_bytes());
        mac.verify_slice(&signature).map_err(|_| TokenError::Signature)?;
        let claims: Claims = serde_json::from_slice(&B64.decode(p).map_err(|_| TokenError::Malformed)?)
            .map_err(|_| TokenError::Malformed)?;
        if claims.iss != ISSUER || claims.aud != AUDIENCE {
            return Err(TokenError::Audience);
        }
        if claims.exp <= now {
            return Err(TokenError::Expired);
        }
        Ok(claims)
    }
}

impl Claims {
    /// Returns the user these claims name, if the role is known.
    pub fn user(&self) -> Option<UserClaims> {
        Some(UserClaims { id: self.sub.clone(), name: self.name.clone(), role: Role::parse(&self.role)? })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claims(exp: i64) -> Claims {
        Claims {
            iss: ISSUER.into(),
            aud: AUDIENCE.into(),
            sub: "u1".into(),
            name: "ada".into(),
            role: "admin".into(),
            iat: 0,
            exp,
            jti: "j".into(),
            ver: 0,
        }
    }

    #[test]
    fn tokens_round_trip_and_reject_tampering() {
        let keys = TokenKeys::new(&[7; 32]);
        let token = keys.sign(&claims(100));
        assert_eq!(keys.verify(&token, 50).unwrap().sub, "u1");
        assert_eq!(keys.verify(&token, 100), Err(TokenError::Expired));
        assert_eq!(TokenKeys::new(&[8; 32]).verify(&token, 50), Err(TokenError::Signature));

        // Elevating the role in the payload breaks the signature.
        let mut parts: Vec<String> = token.split('.').map(str::to_owned).collect();
        let mut forged = claims(100);
        forged.role = "admin".into();
        forged.sub = "someone-else".into();
        parts[1] = B64.encode(serde_json::to_vec(&forged).unwrap());
        assert_eq!(keys.verify(&parts.join("."), 50), Err(TokenError::Signature));

        // alg=none is refused before any signature logic.
        let none = format!("{}.{}.", B64.encode(br#"{"alg":"none","typ":"JWT"}"#), parts[1]);
        assert_eq!(keys.verify(&none, 50), Err(TokenError::Algorithm));
        assert_eq!(keys.verify("garbage", 50), Err(TokenError::Malformed));
    }

    #[test]
    fn wrong_audience_is_refused() {
        let keys = TokenKeys::new(&[7; 32]);
        let mut c = claims(100);
        c.aud = "another-app".into();
        assert_eq!(keys.verify(&keys.sign(&c), 50), Err(TokenError::Audience));
    }

    #[test]
    fn passwords_verify_only_themselves() {
        let hash = hash_password("correct horse battery").unwrap();
        assert!(hash.starts_with("$argon2id$"));
        assert!(verify_password("correct horse battery", &hash));
        assert!(!verify_password("correct horse batterY", &hash));
        assert!(!verify_password("anything", "not a phc string"));
        assert!(!verify_password("anything", decoy_hash()));
    }

    #[test]
    fn api_keys_have_a_recognisable_shape() {
        let key = new_api_key();
        assert_eq!(api_key_prefix(&key.secret), Some(key.prefix.as_str()));
        assert_eq!(sha256_hex(&key.secret), key.hash);
        assert_eq!(api_key_prefix("psk_short_x"), None);
        assert_eq!(api_key_prefix("eyJhbGciOi.x.y"), None);
        assert!(digest_eq(&key.hash, &key.hash.clone()));
        assert!(!digest_eq(&key.hash, &sha256_hex("other")));
    }
}
