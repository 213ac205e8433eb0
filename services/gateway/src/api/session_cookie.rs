//! Browser sessions whose refresh token lives in a cookie the page's script cannot read.
//!
//! A caller opts in with the metadata `x-persys-session: cookie` (the dashboard does, on its
//! own origin). Login and Refresh then answer with an empty `refresh_token` and set the token
//! as an `HttpOnly; SameSite=Strict` cookie whose path is the AuthService only, so the browser
//! presents it to Refresh and Logout and to nothing else (the proxy drops cookies anyway).
//! Refresh and Logout called with an empty `refresh_token` read it from the cookie, and clear
//! it when the session is over. The cookie is `Secure` when the page's origin is `https`.

use tonic::metadata::{MetadataMap, MetadataValue};

/// Name of the cookie.
pub const NAME: &str = "persys_refresh";
/// The only path the browser sends it to.
const PATH: &str = "/persys.gateway.v1.AuthService/";
/// Metadata key a caller opts in with.
const OPT_IN: &str = "x-persys-session";

/// Returns whether the caller asked for a cookie session.
pub fn wanted(metadata: &MetadataMap) -> bool {
    metadata.get(OPT_IN).is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"cookie"))
}

/// Returns the refresh token from the request's `cookie` headers, if there is one.
pub fn token(metadata: &MetadataMap) -> Option<String> {
    metadata
        .get_all("cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|header| header.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, value)| *name == NAME && !value.is_empty())
        .map(|(_, value)| value.to_owned())
}

/// Returns whether the page calling is served over https (then the cookie is `Secure`).
fn secure(metadata: &MetadataMap) -> bool {
    metadata.get("origin").and_then(|v| v.to_str().ok()).is_some_and(|o| o.starts_with("https://"))
}

/// Returns the `Set-Cookie` value that stores `token` for `max_age_secs`, or clears the cookie
/// when `token` is `None`.
pub fn header(token: Option<&str>, max_age_secs: i64, secure: bool) -> String {
    let (value, max_age) = match token {
        Some(t) => (t, max_age_secs.max(0)),
        None => ("", 0),
    };
    let secure = if secure { "; Secure" } else { "" };
    format!("{NAME}={value}; Path={PATH}; Max-Age={max_age}; HttpOnly; SameSite=Strict{secure}")
}

/// Adds the cookie (or its removal) to a response's metadata.
pub fn set(response: &mut MetadataMap, request: &MetadataMap, token: Option<&str>, max_age_secs: i64) {
    // A token is URL-safe base64 and the rest is ASCII, so the value is always valid.
    if let Ok(v) = MetadataValue::try_from(header(token, max_age_secs, secure(request))) {
        response.append("set-cookie", v);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn metadata(pairs: &[(&'static str, &'static str)]) -> MetadataMap {
        let mut m = MetadataMap::new();
        for (k, v) in pairs {
            m.append(*k, v.parse().unwrap());
        }
        m
    }

    #[test]
    fn the_token_is_read_from_any_cookie_header() {
        assert_eq!(token(&metadata(&[("cookie", "a=1; persys_refresh=tok-1; b=2")])).as_deref(), Some("tok-1"));
        assert_eq!(
            token(&metadata(&[("cookie", "a=1"), ("cookie", "persys_refresh=tok-2")])).as_deref(),
            Some("tok-2")
        );
        assert_eq!(token(&metadata(&[("cookie", "persys_refresh=; x=y")])), None);
        assert_eq!(token(&metadata(&[("cookie", "xpersys_refresh=tok")])), None);
        assert_eq!(token(&metadata(&[])), None);
    }

    #[test]
    fn only_callers_that_ask_get_a_cookie_session() {
        assert!(wanted(&metadata(&[("x-persys-session", "cookie")])));
        assert!(wanted(&metadata(&[("x-persys-session", "Cookie")])));
        assert!(!wanted(&metadata(&[("x-persys-session", "body")])));
        assert!(!wanted(&metadata(&[])));
    }

    #[test]
    fn the_cookie_is_http_only_strict_scoped_and_secure_on_https() {
        let mut out = MetadataMap::new();
        set(&mut out, &metadata(&[("origin", "https://persys.example.com")]), Some("tok"), 3600);
        assert_eq!(
            out.get("set-cookie").unwrap(),
            "persys_refresh=tok; Path=/persys.gateway.v1.AuthService/; Max-Age=3600; HttpOnly; SameSite=Strict; Secure"
        );
        assert_eq!(
            header(None, 3600, false),
            "persys_refresh=; Path=/persys.gateway.v1.AuthService/; Max-Age=0; HttpOnly; SameSite=Strict"
        );
        let mut plain = MetadataMap::new();
        set(&mut plain, &metadata(&[("origin", "http://127.0.0.1:8080")]), Some("tok"), -5);
        assert!(plain.get("set-cookie").unwrap().to_str().unwrap().contains("Max-Age=0; HttpOnly"));
        assert!(!plain.get("set-cookie").unwrap().to_str().unwrap().contains("Secure"));
    }
}
