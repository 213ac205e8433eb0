//! `persys-client`: how Rust programs talk to Persys.
//!
//! - [`Connection`]: a channel to a server address (`http://` for loopback development,
//!   `https://` verified with a CA file or the system's roots), or to an internal service
//!   with a service identity from a certificates directory;
//! - [`Client`]: a connection with credentials (an API key or a stored login session that is
//!   refreshed when it expires), and typed clients for every public service through the
//!   gateway ([`Conn::scheduler`], [`Conn::auth`], [`Conn::analyzer`]);
//! - [`store`]: the file-locked credentials file the CLIs share;
//! - [`watch`]: watches that resume from the last revision when a stream breaks, and
//!   [`watch::wait_until`] for one workload;
//! - [`Error`] and [`CallError`]: a failed call with its field violations and the service
//!   that failed, read from the details the servers attach.
//!
//! With the `test-util` feature, [`testing`] acts as a given user towards an internal service,
//! as the gateway does; only tests need that.

mod client;
mod connection;
mod error;
pub mod store;
#[cfg(feature = "test-util")]
pub mod testing;
pub mod watch;

pub use client::{AuthChannel, Bearer, Client, Conn, Credential, login};
pub use connection::Connection;
pub use error::{CallError, Error};
pub use persys_kit::{client::ClientOptions, tls::CertsDir};
