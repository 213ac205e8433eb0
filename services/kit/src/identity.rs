//! Who is calling.
//!
//! Inside the platform every hop is mTLS and the peer certificate's URI SAN names the caller:
//! `spiffe://persys/<service>` for services and `spiffe://persys/agent/<node>` for agents.
//! Users authenticate at the gateway only; the gateway forwards the user it verified in
//! `x-persys-user-*` metadata, which [`AuthorizeLayer`] honours from the gateway's certificate
//! alone and strips from anyone else.

use std::{
    fmt,
    sync::Arc,
    task::{Context, Poll},
};

use http::{HeaderMap, HeaderValue, Request, Response};
use tonic::{
    body::Body,
    transport::server::{TcpConnectInfo, TlsConnectInfo},
};
use tower::{Layer, Service};

/// Prefix of the subject OU that names a node certificate's join.
pub const JOIN_OU_PREFIX: &str = "join:";

/// The SPIFFE trust domain of every Persys identity.
pub const TRUST_DOMAIN: &str = "persys";

/// Metadata key: the id of the user the gateway verified.
pub const USER_ID_HEADER: &str = "x-persys-user-id";
/// Metadata key: the user name the gateway verified.
pub const USER_NAME_HEADER: &str = "x-persys-user-name";
/// Metadata key: the role of that user (`admin`, `member`, `viewer`).
pub const USER_ROLE_HEADER: &str = "x-persys-user-role";

/// A workload identity read from a certificate.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Identity {
    /// A platform service, e.g. `gateway`.
    Service(String),
    /// The agent of one node.
    Agent(String),
}

impl Identity {
    /// Parses `spiffe://persys/<service>` or `spiffe://persys/agent/<node>`.
    pub fn from_uri(uri: &str) -> Option<Self> {
        let rest = uri.strip_prefix("spiffe://")?.strip_prefix(TRUST_DOMAIN)?.strip_prefix('/')?;
        let valid =
            |s: &str| !s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_'));
        match rest.split_once('/') {
            Some(("agent", node)) if valid(node) => Some(Self::Agent(node.to_owned())),
            None if valid(rest) => Some(Self::Service(rest.to_owned())),
            _ => None,
        }
    }

    /// Returns the SPIFFE URI of this identity.
    pub fn uri(&self) -> String {
        match self {
            Self::Service(name) => format!("spiffe://{TRUST_DOMAIN}/{name}"),
            Self::Agent(node) => format!("spiffe://{TRUST_DOMAIN}/agent/{node}"),
        }
    }

    /// Returns the identity named in a DER certificate's URI SANs, if any.
    pub fn from_der(der: &[u8]) -> Option<Self> {
        let (_, cert) = x509_parser::parse_x509_certificate(der).ok()?;
        let san = cert.subject_alternative_name().ok()??;
        san.value.general_names.iter().find_map(|name| match name {
            x509_parser::extensions::GeneralName::URI(uri) => Self::from_uri(uri),
            _ => None,
        })
    }
}

impl fmt::Display for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.uri())
    }
}

/// A platform role.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Role {
    /// Reads only.
    Viewer,
    /// Manages what it owns.
    Member,
    /// Manages everything and everyone.
    Admin,
}

impl Role {
    /// Returns the lowercase name used in metadata and tokens.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Viewer => "viewer",
            Self::Member => "member",
            Self::Admin => "admin",
        }
    }

    /// Parses a lowercase role name.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "viewer" => Some(Self::Viewer),
            "member" => Some(Self::Member),
            "admin" => Some(Self::Admin),
            _ => None,
        }
    }
}

/// The user a request acts for, as verified by the gateway.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UserClaims {
    /// The user's id.
    pub id: String,
    /// The user's name.
    pub name: String,
    /// The user's role.
    pub role: Role,
}

impl UserClaims {
    /// Writes these claims as `x-persys-user-*` headers, replacing any present.
    pub fn write_headers(&self, headers: &mut HeaderMap) {
        strip_user_headers(headers);
        if let (Ok(id), Ok(name)) = (HeaderValue::from_str(&self.id), HeaderValue::from_str(&self.name)) {
            headers.insert(USER_ID_HEADER, id);
            headers.insert(USER_NAME_HEADER, name);
            headers.insert(USER_ROLE_HEADER, HeaderValue::from_static(self.role.as_str()));
        }
    }

    fn read_headers(headers: &HeaderMap) -> Option<Self> {
        let get = |k| headers.get(k).and_then(|v: &HeaderValue| v.to_str().ok());
        Some(Self {
            id: get(USER_ID_HEADER)?.to_owned(),
            name: get(USER_NAME_HEADER)?.to_owned(),
            role: Role::parse(get(USER_ROLE_HEADER)?)?,
        })
    }
}

/// Removes every `x-persys-user-*` header.
pub fn strip_user_headers(headers: &mut HeaderMap) {
    headers.remove(USER_ID_HEADER);
    headers.remove(USER_NAME_HEADER);
    headers.remove(USER_ROLE_HEADER);
}

/// The verified caller of one request, put in the request's extensions by [`AuthorizeLayer`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Caller {
    /// The peer's workload identity.
    pub identity: Identity,
    /// The user, when the peer is the gateway and it named one.
    pub user: Option<UserClaims>,
}

impl Caller {
    /// Returns the caller of a tonic request, if the authorize layer ran.
    pub fn of<T>(request: &tonic::Request<T>) -> Option<&Self> {
        request.extensions().get::<Self>()
    }

    /// Returns the user or `UNAUTHENTICATED` when the call carries none.
    pub fn user(&self) -> Result<&UserClaims, crate::ApiError> {
        self.user.as_ref().ok_or_else(|| {
            crate::ApiError::Unauthenticated("this call needs a user; call it through the gateway".into())
        })
    }
}

/// Returns the identity in the peer certificate of a request served over mTLS.
pub fn peer_identity<B>(request: &Request<B>) -> Option<Identity> {
    let info = request.extensions().get::<TlsConnectInfo<TcpConnectInfo>>()?;
    let certs = info.peer_certs()?;
    Identity::from_der(certs.first()?.as_ref())
}

/// Returns the join a node certificate (DER) belongs to: its subject's OU `join:<id>`.
pub fn join_id_from_der(der: &[u8]) -> Option<String> {
    let (_, cert) = x509_parser::parse_x509_certificate(der).ok()?;
    cert.subject()
        .iter_organizational_unit()
        .filter_map(|ou| ou.as_str().ok())
        .find_map(|ou| ou.strip_prefix(JOIN_OU_PREFIX).map(str::to_owned))
}

/// Returns the join named in the peer certificate of a gRPC request served over mTLS.
pub fn peer_join_id<T>(request: &tonic::Request<T>) -> Option<String> {
    let info = request.extensions().get::<TlsConnectInfo<TcpConnectInfo>>()?;
    join_id_from_der(info.peer_certs()?.first()?.as_ref())
}

/// Which identities may call which gRPC paths of a server.
#[derive(Clone, Debug, Default)]
pub struct Policy {
    rules: Vec<(String, Vec<Matcher>)>,
}

/// Matches identities.
#[derive(Clone, Debug)]
pub enum Matcher {
    /// Any valid certificate from the CA with a Persys identity.
    Any,
    /// One service.
    Service(String),
    /// Any agent.
    AnyAgent,
}

impl Matcher {
    fn matches(&self, id: &Identity) -> bool {
        match (self, id) {
            (Self::Any, _) => true,
            (Self::Service(want), Identity::Service(have)) => want == have,
            (Self::AnyAgent, Identity::Agent(_)) => true,
            _ => false,
        }
    }
}

impl Policy {
    /// Returns a policy that admits nobody; add rules with [`Policy::allow`].
    pub fn new() -> Self {
        Self::default()
    }

    /// Allows `who` to call every path starting with `prefix` (e.g. `/persys.scheduler.v1.`).
    /// Health and reflection are always open to any identity from the CA.
    pub fn allow(mut self, prefix: impl Into<String>, who: impl IntoIterator<Item = Matcher>) -> Self {
        self.rules.push((prefix.into(), who.into_iter().collect()));
        self
    }

    fn permits(&self, path: &str, id: &Identity) -> bool {
        if path.starts_with("/grpc.health.v1.") || path.starts_with("/grpc.reflection.") {
            return true;
        }
        self.rules.iter().any(|(prefix, who)| path.starts_with(prefix.as_str()) && who.iter().any(|m| m.matches(id)))
    }
}

/// A tower layer that checks the peer's identity against a [`Policy`] and records the
/// [`Caller`] in the request extensions. Requests without a Persys identity get
/// `UNAUTHENTICATED`; identities the policy does not admit get `PERMISSION_DENIED`.
#[derive(Clone, Debug)]
pub struct AuthorizeLayer {
    policy: Arc<Policy>,
    trusted_gateway: Identity,
}

impl AuthorizeLayer {
    /// Returns a layer enforcing `policy`; user metadata is trusted from the `gateway` service.
    pub fn new(policy: Policy) -> Self {
        Self { policy: Arc::new(policy), trusted_gateway: Identity::Service("gateway".into()) }
    }
}

impl<S> Layer<S> for AuthorizeLayer {
    type Service = Authorize<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Authorize { inner, layer: self.clone() }
    }
}

/// The service made by [`AuthorizeLayer`].
#[derive(Clone, Debug)]
pub struct Authorize<S> {
    inner: S,
    layer: AuthorizeLayer,
}

impl<S, B> Service<Request<B>> for Authorize<S>
where
    S: Service<Request<B>, Response = Response<Body>>,
    S::Future: Send + 'static,
{
    type Response = Response<Body>;
    type Error = S::Error;
    type Future = futures::future::Either<S::Future, std::future::Ready<Result<Response<Body>, S::Error>>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request<B>) -> Self::Future {
        use futures::future::Either;
        let deny = |status: tonic::Status| Either::Right(std::future::ready(Ok(status.into_http())));
        let Some(identity) = peer_identity(&request) else {
            return deny(tonic::Status::unauthenticated(
                "no Persys client certificate: present a certificate from the cluster CA (see `persys certs issue`)",
            ));
        };
        let path = request.uri().path();
        if !self.layer.policy.permits(path, &identity) {
            tracing::warn!(caller = %identity, path, "caller not allowed");
            return deny(tonic::Status::permission_denied(format!("{identity} may not call {path}")));
        }
        let user = if identity == self.layer.trusted_gateway {
            UserClaims::read_headers(request.headers())
        } else {
            strip_user_headers(request.headers_mut());
            None
        };
        request.extensions_mut().insert(Caller { identity, user });
        Either::Left(self.inner.call(request))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_service_and_agent_uris() {
        assert_eq!(Identity::from_uri("spiffe://persys/gateway"), Some(Identity::Service("gateway".into())));
        assert_eq!(Identity::from_uri("spiffe://persys/agent/node-1"), Some(Identity::Agent("node-1".into())));
        assert_eq!(Identity::from_uri("spiffe://other/gateway"), None);
        assert_eq!(Identity::from_uri("spiffe://persys/"), None);
        assert_eq!(Identity::from_uri("spiffe://persys/agent/"), None);
        assert_eq!(Identity::from_uri("spiffe://persys/a/b"), None);
        assert_eq!(Identity::from_uri("https://persys/gateway"), None);
    }

    #[test]
    fn reads_identity_from_certificate_san() {
        let mut params = rcgen::CertificateParams::new(vec!["localhost".into()]).unwrap();
        params.subject_alt_names.push(rcgen::SanType::URI("spiffe://persys/agent/n7".try_into().unwrap()));
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = params.self_signed(&key).unwrap();
        assert_eq!(Identity::from_der(cert.der()), Some(Identity::Agent("n7".into())));
    }

    #[test]
    fn policy_matches_prefixes_and_identities() {
        let policy = Policy::new()
            .allow("/persys.scheduler.v1.AgentService/", [Matcher::AnyAgent])
            .allow("/persys.scheduler.v1.", [Matcher::Service("gateway".into())]);
        let agent = Identity::Agent("n1".into());
        let gateway = Identity::Service("gateway".into());
        let analyzer = Identity::Service("analyzer".into());
        assert!(policy.permits("/persys.scheduler.v1.AgentService/Connect", &agent));
        assert!(!policy.permits("/persys.scheduler.v1.SchedulerService/GetNode", &agent));
        assert!(policy.permits("/persys.scheduler.v1.SchedulerService/GetNode", &gateway));
        assert!(!policy.permits("/persys.scheduler.v1.SchedulerService/GetNode", &analyzer));
        assert!(policy.permits("/grpc.health.v1.Health/Check", &analyzer));
    }

    #[test]
    fn user_headers_round_trip_and_strip() {
        let claims = UserClaims { id: "u1".into(), name: "ada".into(), role: Role::Member };
        let mut headers = HeaderMap::new();
        headers.insert(USER_ROLE_HEADER, HeaderValue::from_static("admin"));
        claims.write_headers(&mut headers);
        assert_eq!(UserClaims::read_headers(&headers), Some(claims));
        strip_user_headers(&mut headers);
        assert_eq!(UserClaims::read_headers(&headers), None);
    }
}
