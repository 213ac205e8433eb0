//! Authenticating to GitHub as a GitHub App installation: a JWT signed with the app's private
//! key (RS256, at most 10 minutes long) is exchanged at
//! `POST /app/installations/{id}/access_tokens` for an installation token, which is used as a
//! Bearer token until shortly before its `expires_at` (one hour) and renewed then, or at once
//! when GitHub stops accepting it. One exchange at a time: concurrent calls wait for it.

use std::{path::Path, sync::Arc, time::Duration};

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use bytes::Bytes;
use http::{StatusCode, header};
use http_body_util::Full;
use persys_kit::{config::Secret, http as client};
use ring::{
    rand::SystemRandom,
    signature::{RSA_PKCS1_SHA256, RsaKeyPair},
};
use rustls_pki_types::PrivateKeyDer;
use serde_json::{Value, json};
use tokio::sync::Mutex;

use super::github::GithubError;
use crate::clock::now_ms;

/// An installation token is renewed when less than this is left of it.
const RENEW_BEFORE_MS: i64 = 5 * 60_000;
/// The life assumed for a token whose answer gave no readable `expires_at`.
const ASSUMED_LIFE_MS: i64 = 50 * 60_000;

/// Which app, which installation, and the app's key.
#[derive(Clone)]
pub struct AppCredentials {
    /// The app's ID (or its client ID): the JWT's `iss`.
    pub app_id: String,
    /// The installation whose token is asked for.
    pub installation_id: u64,
    key: Arc<RsaKeyPair>,
}

impl std::fmt::Debug for AppCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppCredentials")
            .field("app_id", &self.app_id)
            .field("installation_id", &self.installation_id)
            .field("key", &"<redacted>")
            .finish()
    }
}

impl AppCredentials {
    /// Credentials from the app's private key in PEM, as GitHub hands it out (PKCS#1,
    /// `BEGIN RSA PRIVATE KEY`) or converted to PKCS#8 (`BEGIN PRIVATE KEY`).
    pub fn from_pem(app_id: &str, installation_id: u64, pem: &[u8]) -> Result<Self, String> {
        if app_id.trim().is_empty() {
            return Err("the GitHub App ID is empty".into());
        }
        let key = rustls_pemfile::private_key(&mut &pem[..])
            .map_err(|e| format!("not a PEM file: {e}"))?
            .ok_or("no private key in it (expected BEGIN RSA PRIVATE KEY or BEGIN PRIVATE KEY)")?;
        let key = match &key {
            PrivateKeyDer::Pkcs1(k) => RsaKeyPair::from_der(k.secret_pkcs1_der()),
            PrivateKeyDer::Pkcs8(k) => RsaKeyPair::from_pkcs8(k.secret_pkcs8_der()),
            _ => return Err("a GitHub App key is an RSA key; this one is not".into()),
        }
        .map_err(|e| format!("not a usable RSA key: {e}"))?;
        Ok(Self { app_id: app_id.trim().to_owned(), installation_id, key: Arc::new(key) })
    }

    /// Credentials from the key file at `path`; errors name the file.
    pub fn from_file(app_id: &str, installation_id: u64, path: &Path) -> Result<Self, String> {
        let pem = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
        Self::from_pem(app_id, installation_id, &pem).map_err(|e| format!("{}: {e}", path.display()))
    }

    /// The app's JWT as of `now_s` (Unix seconds): issued a minute back for clock drift, as
    /// GitHub advises, and valid for nine minutes (GitHub refuses more than ten).
    pub fn jwt(&self, now_s: i64) -> Result<String, String> {
        let header = URL_SAFE_NO_PAD.encode(json!({"alg": "RS256", "typ": "JWT"}).to_string());
        let claims =
            URL_SAFE_NO_PAD.encode(json!({"iat": now_s - 60, "exp": now_s + 540, "iss": self.app_id}).to_string());
        let signed = format!("{header}.{claims}");
        let mut signature = vec![0; self.key.public().modulus_len()];
        self.key
            .sign(&RSA_PKCS1_SHA256, &SystemRandom::new(), signed.as_bytes(), &mut signature)
            .map_err(|_| "signing the GitHub App JWT failed".to_owned())?;
        Ok(format!("{signed}.{}", URL_SAFE_NO_PAD.encode(signature)))
    }

    /// The public half, as DER `RSAPublicKey` (what a verifier needs).
    pub fn public_key_der(&self) -> Vec<u8> {
        self.key.public().as_ref().to_vec()
    }
}

/// An app's installation tokens, minted when needed and kept until shortly before they expire.
pub struct AppAuth {
    credentials: AppCredentials,
    /// The current token and when it expires (Unix ms).
    current: Mutex<Option<(Secret, i64)>>,
}

impl AppAuth {
    /// Tokens of the installation `credentials` name, none minted yet.
    pub fn new(credentials: AppCredentials) -> Self {
        Self { credentials, current: Mutex::new(None) }
    }

    /// A token valid for at least a few minutes more, minted from `base` when needed.
    pub async fn token(&self, http: &client::Client, base: &str, timeout: Duration) -> Result<Secret, GithubError> {
        let mut current = self.current.lock().await;
        if let Some((token, expires_ms)) = current.as_ref()
            && *expires_ms - RENEW_BEFORE_MS > now_ms()
        {
            return Ok(token.clone());
        }
        let minted = self.mint(http, base, timeout).await?;
        *current = Some(minted.clone());
        Ok(minted.0)
    }

    /// Drops `token` when it is still the current one (GitHub refused it): the next call mints.
    pub async fn forget(&self, token: &Secret) {
        let mut current = self.current.lock().await;
        if current.as_ref().is_some_and(|(t, _)| t.expose() == token.expose()) {
            *current = None;
        }
    }

    async fn mint(&self, http: &client::Client, base: &str, timeout: Duration) -> Result<(Secret, i64), GithubError> {
        let c = &self.credentials;
        let path = format!("/app/installations/{}/access_tokens", c.installation_id);
        let jwt = c.jwt(now_ms() / 1000).map_err(GithubError::Refused)?;
        let request = super::github::api_request(http::Method::POST, &format!("{base}{path}"))
            .header(header::AUTHORIZATION, format!("Bearer {jwt}"))
            .body(Full::new(Bytes::new()))
            .map_err(|e| GithubError::Refused(format!("{path}: {e}")))?;
        let response = client::send(http, request, timeout)
            .await
            .map_err(|e| GithubError::Retry(format!("GitHub {path}: {e}")))?;
        let status = response.status;
        let text = || String::from_utf8_lossy(&response.body).chars().take(200).collect::<String>();
        if status.is_server_error() || status == StatusCode::TOO_MANY_REQUESTS {
            return Err(GithubError::Retry(format!("GitHub {path} answered {status}: {}", text())));
        }
        if status == StatusCode::NOT_FOUND {
            return Err(GithubError::Refused(format!(
                "GitHub App {} has no installation {} (GitHub answered 404): check --github-app-installation-id \
                 and that the app is installed",
                c.app_id, c.installation_id
            )));
        }
        if status == StatusCode::UNAUTHORIZED {
            return Err(GithubError::Refused(format!(
                "GitHub refused the JWT of app {} (401: {}): check --github-app-id and the private key",
                c.app_id,
                text()
            )));
        }
        if !status.is_success() {
            return Err(GithubError::Refused(format!("GitHub {path} answered {status}: {}", text())));
        }
        let json: Value = serde_json::from_slice(&response.body)
            .map_err(|e| GithubError::Retry(format!("GitHub {path} answered something that is not JSON: {e}")))?;
        let token = json
            .get("token")
            .and_then(Value::as_str)
            .filter(|t| !t.is_empty())
            .ok_or_else(|| GithubError::Retry(format!("GitHub {path}: no token in the answer")))?;
        let expires_ms = json
            .get("expires_at")
            .and_then(Value::as_str)
            .and_then(|d| time::OffsetDateTime::parse(d, &time::format_description::well_known::Rfc3339).ok())
            .map_or_else(|| now_ms() + ASSUMED_LIFE_MS, |t| (t.unix_timestamp_nanos() / 1_000_000) as i64);
        tracing::info!(app = %c.app_id, installation = c.installation_id, expires_ms, "GitHub App installation token minted");
        Ok((Secret::from(token.to_owned()), expires_ms))
    }
}

#[cfg(test)]
mod tests {
    use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
    use ring::signature::{RSA_PKCS1_2048_8192_SHA256, UnparsedPublicKey};
    use serde_json::Value;

    use super::AppCredentials;

    const KEY: &[u8] = include_bytes!("../../tests/fixtures/github-app-test-key.pem");

    #[test]
    fn the_jwt_is_rs256_signed_by_the_app_key_and_short_lived() {
        let c = AppCredentials::from_pem("12345", 7, KEY).unwrap();
        let jwt = c.jwt(1_700_000_000).unwrap();
        let parts: Vec<&str> = jwt.split('.').collect();
        assert_eq!(parts.len(), 3);
        let decode = |p: &str| serde_json::from_slice::<Value>(&URL_SAFE_NO_PAD.decode(p).unwrap()).unwrap();
        assert_eq!(decode(parts[0])["alg"], "RS256");
        let claims = decode(parts[1]);
        assert_eq!(claims["iss"], "12345");
        assert_eq!(claims["iat"], 1_700_000_000 - 60);
        let life = claims["exp"].as_i64().unwrap() - claims["iat"].as_i64().unwrap();
        assert!(life <= 600, "GitHub refuses JWTs longer than 10 minutes: {life}");
        let public = c.public_key_der();
        let signature = URL_SAFE_NO_PAD.decode(parts[2]).unwrap();
        UnparsedPublicKey::new(&RSA_PKCS1_2048_8192_SHA256, &public)
            .verify(format!("{}.{}", parts[0], parts[1]).as_bytes(), &signature)
            .expect("the signature verifies with the app's public key");
        let tampered = format!("{}.{}x", parts[0], parts[1]);
        assert!(
            UnparsedPublicKey::new(&RSA_PKCS1_2048_8192_SHA256, &public)
                .verify(tampered.as_bytes(), &signature)
                .is_err()
        );
    }

    #[test]
    fn keys_that_are_not_rsa_private_keys_are_refused_with_a_reason() {
        let err = |pem: &[u8]| AppCredentials::from_pem("1", 1, pem).unwrap_err();
        assert!(err(b"hello").contains("no private key"), "{}", err(b"hello"));
        let cert = b"-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n";
        assert!(err(cert).contains("no private key"), "{}", err(cert));
        let ec = ec_key();
        assert!(err(ec.as_bytes()).contains("RSA"), "{}", err(ec.as_bytes()));
        assert!(AppCredentials::from_pem(" ", 1, KEY).unwrap_err().contains("App ID"));
        let missing = AppCredentials::from_file("1", 1, std::path::Path::new("/nonexistent/key.pem")).unwrap_err();
        assert!(missing.contains("/nonexistent/key.pem"), "{missing}");
    }

    /// A P-256 key in SEC1 PEM, made for this test (not an RSA key).
    fn ec_key() -> String {
        "-----BEGIN EC PRIVATE KEY-----\n\
         MHcCAQEEIGHyv2HeHHhAqSfAi2chimAQ/DZfphcRyORakE3YQl3/oAoGCCqGSM49\n\
         AwEHoUQDQgAEsHwCRmGxqNIwJWH/iz+9GYGVKC+MEfnZ5epgc9PU1WG69ScG9yEv\n\
         DC0DMN4T8hu558Bs09MqVZrbld6R+C3mYg==\n\
         -----END EC PRIVATE KEY-----\n"
            .to_owned()
    }
}
