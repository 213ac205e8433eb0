//! The dashboard's static files on the public port: plain `GET`/`HEAD` requests that are not
//! gRPC are answered from `--web-root`, outside user authentication (the files hold no data;
//! every call the dashboard then makes is a gRPC-web call with the user's token). Paths that
//! are not files and have no extension get `index.html`, so the single-page app's own routes
//! survive a reload; nothing outside the root is ever read.

use std::path::{Component, Path, PathBuf};

use http::{HeaderValue, Method, Request, Response, StatusCode, header};
use tonic::body::Body;

/// The directory the dashboard is served from.
#[derive(Clone, Debug)]
pub struct WebRoot {
    root: PathBuf,
}

/// Returns the content type of a file by its extension.
fn content_type(path: &Path) -> &'static str {
    match path.extension().and_then(|e| e.to_str()).unwrap_or_default() {
        "html" => "text/html; charset=utf-8",
        "js" | "mjs" => "text/javascript; charset=utf-8",
        "css" => "text/css; charset=utf-8",
        "json" | "map" => "application/json",
        "svg" => "image/svg+xml",
        "png" => "image/png",
        "ico" => "image/x-icon",
        "woff2" => "font/woff2",
        "txt" => "text/plain; charset=utf-8",
        "wasm" => "application/wasm",
        _ => "application/octet-stream",
    }
}

/// Returns the relative path a request path names, or `None` when it tries to leave the root
/// (`..`, absolute parts, backslashes, NUL) or is not valid UTF-8 after decoding.
fn relative(request_path: &str) -> Option<PathBuf> {
    let decoded = percent_decode(request_path)?;
    if decoded.contains('\0') || decoded.contains('\\') {
        return None;
    }
    let mut out = PathBuf::new();
    for part in Path::new(decoded.trim_start_matches('/')).components() {
        match part {
            Component::Normal(p) => out.push(p),
            Component::CurDir => {}
            _ => return None,
        }
    }
    Some(out)
}

fn percent_decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = std::str::from_utf8(bytes.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

fn plain(status: StatusCode, text: &'static str) -> Response<Body> {
    let mut response = Response::new(Body::new(http_body_util::Full::new(bytes::Bytes::from_static(text.as_bytes()))));
    *response.status_mut() = status;
    response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain; charset=utf-8"));
    response
}

impl WebRoot {
    /// Serves files from `dir`, which must be a readable directory holding `index.html`.
    pub fn new(dir: &Path) -> Result<Self, String> {
        let root = dir.canonicalize().map_err(|e| format!("--web-root {}: {e}", dir.display()))?;
        if !root.join("index.html").is_file() {
            return Err(format!("--web-root {}: no index.html in it", dir.display()));
        }
        Ok(Self { root })
    }

    /// Returns the file a request path names: the file itself, `index.html` for the root, a
    /// directory or an extension-less path that is not a file; `None` for anything else.
    async fn resolve(&self, request_path: &str) -> Option<PathBuf> {
        let rel = relative(request_path)?;
        let candidate = self.root.join(&rel);
        // Symlinks inside the root may not lead out of it.
        if let Ok(real) = tokio::fs::canonicalize(&candidate).await {
            if !real.starts_with(&self.root) {
                return None;
            }
            if tokio::fs::metadata(&real).await.is_ok_and(|m| m.is_file()) {
                return Some(real);
            }
        }
        let is_route = rel.extension().is_none();
        is_route.then(|| self.root.join("index.html"))
    }

    /// Returns the service the kit's server answers plain `GET`s with
    /// ([`persys_kit::server::ServerOptions::plain_http`]).
    pub fn service(self) -> persys_kit::server::HttpService {
        tower::util::BoxCloneService::new(tower::service_fn(move |request: Request<Body>| {
            let web = self.clone();
            let (path, head) = (request.uri().path().to_owned(), request.method() == Method::HEAD);
            async move { Ok::<_, std::convert::Infallible>(web.respond(&path, head).await) }
        }))
    }

    /// Answers a `GET` or `HEAD` (`head`) of `request_path`.
    pub async fn respond(&self, request_path: &str, head: bool) -> Response<Body> {
        let Some(path) = self.resolve(request_path).await else {
            return plain(StatusCode::NOT_FOUND, "not found\n");
        };
        let bytes = match tokio::fs::read(&path).await {
            Ok(b) => b,
            Err(e) => {
                tracing::warn!(path = %path.display(), error = %e, "reading a static file failed");
                return plain(StatusCode::NOT_FOUND, "not found\n");
            }
        };
        let length = bytes.len();
        let body = if head { Vec::new() } else { bytes };
        let mut response = Response::new(Body::new(http_body_util::Full::new(bytes::Bytes::from(body))));
        let headers = response.headers_mut();
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type(&path)));
        headers.insert(header::CONTENT_LENGTH, HeaderValue::from(length));
        headers.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
        headers.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
        headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
        headers.insert(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static("default-src 'self'; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'"),
        );
        // Hashed assets never change; the page itself is checked every time.
        let immutable = path.strip_prefix(&self.root).is_ok_and(|p| p.starts_with("assets"));
        headers.insert(
            header::CACHE_CONTROL,
            HeaderValue::from_static(if immutable { "public, max-age=31536000, immutable" } else { "no-cache" }),
        );
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_never_leave_the_root() {
        assert_eq!(relative("/assets/app.js"), Some(PathBuf::from("assets/app.js")));
        assert_eq!(relative("/"), Some(PathBuf::new()));
        assert_eq!(relative("/a/./b"), Some(PathBuf::from("a/b")));
        assert_eq!(relative("/nodes%20list"), Some(PathBuf::from("nodes list")));
        for bad in ["/../etc/passwd", "/assets/../../x", "/%2e%2e/etc/passwd", "/a\\..\\b", "/x%00y", "/%zz", "/%ff"] {
            assert_eq!(relative(bad), None, "{bad}");
        }
    }

    #[tokio::test]
    async fn files_routes_and_refusals() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("web");
        std::fs::create_dir_all(root.join("assets")).unwrap();
        std::fs::write(root.join("index.html"), "<!doctype html><title>Persys</title>").unwrap();
        std::fs::write(root.join("assets/app-1a2b.js"), "console.log(1)").unwrap();
        std::fs::write(dir.path().join("secret.txt"), "outside").unwrap();
        std::os::unix::fs::symlink(dir.path().join("secret.txt"), root.join("leak.txt")).unwrap();
        let web = WebRoot::new(&root).unwrap();

        let page = web.respond("/", false).await;
        assert_eq!(page.status(), StatusCode::OK);
        assert_eq!(page.headers()[header::CACHE_CONTROL], "no-cache");
        let js = web.respond("/assets/app-1a2b.js", false).await;
        assert_eq!(js.headers()[header::CONTENT_TYPE], "text/javascript; charset=utf-8");
        assert!(js.headers()[header::CACHE_CONTROL].to_str().unwrap().contains("immutable"));
        // The app's own routes get the page; missing assets do not.
        assert_eq!(
            web.respond("/workloads/web-1", false).await.headers()[header::CONTENT_TYPE],
            "text/html; charset=utf-8"
        );
        assert_eq!(web.respond("/assets/missing.js", true).await.status(), StatusCode::NOT_FOUND);
        // Nothing outside the root, by `..` or by symlink.
        assert_eq!(web.respond("/../secret.txt", false).await.status(), StatusCode::NOT_FOUND);
        assert_eq!(web.respond("/leak.txt", false).await.status(), StatusCode::NOT_FOUND);
        assert!(WebRoot::new(dir.path()).is_err(), "a root without index.html is refused at start");
    }
}
