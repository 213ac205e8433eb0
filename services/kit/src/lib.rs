//! The Persys service kit: what every Persys service and client shares.
//!
//! - [`config`]: clap argument groups for TLS, listening and telemetry, validated at start;
//! - [`telemetry`]: tracing (text or JSON), OTLP export, W3C trace context on every gRPC hop,
//!   Prometheus metrics on an admin port;
//! - [`tls`]: mTLS material that reloads when its files change;
//! - [`identity`]: who is calling (SPIFFE URI SAN of the peer certificate, and the user the
//!   gateway vouches for), and a tower layer that authorizes callers per service;
//! - [`server`]: health, reflection, gRPC-web, limits and graceful shutdown around a router;
//! - [`client`]: mTLS channels with timeouts and reconnect backoff;
//! - [`error`]: the one mapping from errors to `tonic::Status`.
//!
//! Features: `client` (always built: channels, TLS, identity, errors, trace propagation,
//! metric types, config parsing, YAML), `pki` (issuing certificates) and `server` (the
//! default: serving, the admin port, OTLP and logs). The client library (`persys-client`)
//! builds without `server`, so it pulls in no axum, reflection or OTLP.
//!
//! It holds no business logic and no service's state.

pub mod client;
pub mod config;
pub mod error;
#[cfg(feature = "http-client")]
pub mod http;
pub mod identity;
#[cfg(feature = "server")]
mod killable;
pub mod metrics;
#[cfg(feature = "pki")]
pub mod pki;
pub mod select;
#[cfg(feature = "server")]
pub mod server;
#[cfg(feature = "server")]
pub mod shutdown;
#[cfg(feature = "server")]
pub mod telemetry;
pub mod testing;
pub mod tls;
pub mod trace;
pub mod yaml;

pub use error::{ApiError, FieldViolation};
pub use identity::{Caller, Identity, UserClaims};
