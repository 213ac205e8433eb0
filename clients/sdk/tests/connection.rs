//! Connections and their errors, against real sockets.

use persys_client::{Client, Connection, Credential, Error, store::Store};
use persys_proto::gateway::v1::WhoAmIRequest;

#[tokio::test]
async fn addresses_that_are_not_urls_are_refused_up_front() {
    for bad in ["127.0.0.1:8080", "ftp://gw", "gw"] {
        assert!(matches!(Connection::new(bad, None), Err(Error::Address(_))), "{bad}");
    }
    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("ca.pem");
    std::fs::write(&ca, "not a certificate").unwrap();
    match Connection::new("https://gw.example.com", Some(&ca)) {
        Err(Error::Certificate { path, .. }) => assert_eq!(path, ca),
        other => panic!("expected a certificate error, got {other:?}"),
    }
}

#[tokio::test]
async fn no_server_listening_is_unreachable_not_a_server_answer() {
    // A port that was just free: nothing answers there.
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let connection = Connection::new(&format!("http://127.0.0.1:{port}"), None).unwrap();
    let client = Client::with_token(connection, "psk_test");
    let e = client.call(|c| async move { c.auth().who_am_i(WhoAmIRequest {}).await }).await.unwrap_err();
    let Error::Call(call) = e else { panic!("expected a failed call, got {e:?}") };
    assert!(call.unreachable(), "{call:?}");
    assert_eq!(call.service(), None);
    assert!(call.to_string().starts_with(&format!("cannot reach http://127.0.0.1:{port}")), "{call}");
}

#[tokio::test]
async fn a_session_needs_a_stored_login() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::at(dir.path().join("credentials.json"));
    let connection = Connection::new("http://127.0.0.1:9", None).unwrap();
    match Client::new(connection, Credential::Session(store)) {
        Err(Error::NotLoggedIn { server }) => assert_eq!(server, "http://127.0.0.1:9"),
        other => panic!("expected NotLoggedIn, got {other:?}"),
    }
}
