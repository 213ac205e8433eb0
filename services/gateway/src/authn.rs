//! A tower layer that authenticates every public call except the ones that create credentials
//! (login, refresh, logout) and the discovery services, and attaches the [`Principal`].

use std::{
    future::Future,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
};

use http::{Request, Response};
use persys_kit::identity::strip_user_headers;
use tonic::Status;
use tower::{Layer, Service};

use crate::{
    accounts::{Accounts, Principal},
    store::Store,
};

const OPEN: [&str; 5] = [
    "/persys.gateway.v1.AuthService/Login",
    "/persys.gateway.v1.AuthService/Refresh",
    "/persys.gateway.v1.AuthService/Logout",
    "/grpc.health.v1.Health/",
    "/grpc.reflection.",
];

fn is_open(path: &str) -> bool {
    OPEN.iter().any(|p| path.starts_with(p))
}

/// Authenticates callers with the gateway's accounts.
pub struct AuthnLayer<S> {
    accounts: Arc<Accounts<S>>,
}

impl<S> Clone for AuthnLayer<S> {
    fn clone(&self) -> Self {
        Self { accounts: self.accounts.clone() }
    }
}

impl<S> AuthnLayer<S> {
    /// Returns the layer.
    pub fn new(accounts: Arc<Accounts<S>>) -> Self {
        Self { accounts }
    }
}

impl<S, I> Layer<I> for AuthnLayer<S> {
    type Service = Authn<S, I>;

    fn layer(&self, inner: I) -> Self::Service {
        Authn { accounts: self.accounts.clone(), inner }
    }
}

/// The service made by [`AuthnLayer`].
pub struct Authn<S, I> {
    accounts: Arc<Accounts<S>>,
    inner: I,
}

impl<S, I: Clone> Clone for Authn<S, I> {
    fn clone(&self) -> Self {
        Self { accounts: self.accounts.clone(), inner: self.inner.clone() }
    }
}

impl<S, I, B, RB> Service<Request<B>> for Authn<S, I>
where
    S: Store,
    I: Service<Request<B>, Response = Response<RB>> + Clone + Send + 'static,
    I::Future: Send + 'static,
    B: Send + 'static,
    RB: Default + Send + 'static,
{
    type Response = Response<RB>;
    type Error = I::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Response<RB>, I::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request<B>) -> Self::Future {
        // Identity metadata is the gateway's to write; whatever a client sent is discarded.
        strip_user_headers(request.headers_mut());
        request.extensions_mut().remove::<Principal>();
        if is_open(request.uri().path()) {
            return Box::pin(self.inner.call(request));
        }
        let accounts = self.accounts.clone();
        // Take the service that was driven to readiness and leave a fresh clone behind.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        Box::pin(async move {
            let header = request.headers().get(http::header::AUTHORIZATION).and_then(|v| v.to_str().ok());
            match accounts.authenticate(header).await {
                Ok(principal) => {
                    tracing::Span::current().record("user", principal.user.name.as_str());
                    request.extensions_mut().insert(principal);
                    inner.call(request).await
                }
                Err(error) => Ok(Status::from(error).into_http()),
            }
        })
    }
}
