use proptest::prelude::*;

use super::*;

fn tcp(port: u16) -> Found {
    Found { port, source: "test".into(), ..Found::default() }
}

fn udp(port: u16) -> Found {
    Found { udp: true, ..tcp(port) }
}

fn framework(name: &str, code_ports: &[u16]) -> Evidence {
    Evidence { framework: name.into(), code_ports: code_ports.to_vec(), built: true, ..Evidence::default() }
}

/// (name, purpose, appProtocol) of each port.
fn roles(found: &[Found], ev: &Evidence) -> Vec<(String, String, Option<String>)> {
    let (ports, notes) = assign(found, ev);
    assert_eq!(notes.len(), found.len(), "one note per port: {notes:?}");
    ports.iter().map(|p| (p.name.clone(), p.purpose.clone(), app_protocol(p))).collect()
}

fn role_of(name: &str, purpose: &str, app_protocol: Option<&str>) -> (String, String, Option<String>) {
    (name.into(), purpose.into(), app_protocol.map(String::from))
}

#[test]
fn a_udp_only_dns_server_has_no_http_and_no_main_port() {
    let found = [udp(53), udp(5353)];
    let ev = Evidence { built: true, ..Evidence::default() };
    assert_eq!(roles(&found, &ev), [role_of("dns", "dns", None), role_of("udp-5353", "udp", None)]);
    let (ports, _) = assign(&found, &ev);
    assert_eq!(main_port(&ports), None, "a UDP port can be neither probed nor the main port");
}

#[test]
fn http_metrics_and_a_raw_tcp_port_each_say_their_role() {
    let found = [tcp(8080), tcp(9090), tcp(7000), udp(7001)];
    let ev = framework("gin", &[8080]);
    assert_eq!(
        roles(&found, &ev),
        [
            role_of("http", "http", Some("http")),
            role_of("metrics", "metrics", None),
            role_of("tcp-7000", "tcp", None),
            role_of("udp-7001", "udp", None),
        ]
    );
    let (ports, _) = assign(&found, &ev);
    assert_eq!(main_port(&ports).map(|p| p.port), Some(8080));
}

#[test]
fn udp_is_never_http_nor_the_main_port() {
    // Even a well-known HTTP number, a framework app, or an explicit app_protocol.
    let mut explicit = udp(8080);
    explicit.app_protocol = Some("http".into());
    let found = [udp(3000), explicit, tcp(7000)];
    let ev = framework("express", &[3000]);
    let (ports, _) = assign(&found, &ev);
    assert!(ports.iter().filter(|p| p.udp).all(|p| !is_http(p) && app_protocol(p).is_none()), "{ports:?}");
    assert_eq!(ports.iter().map(|p| p.name.as_str()).collect::<Vec<_>>(), ["udp-3000", "udp-8080", "http"]);
    assert_eq!(main_port(&ports).map(|p| (p.port, p.udp)), Some((7000, false)));
}

#[test]
fn without_evidence_a_port_stays_generic() {
    // The old analyzer called both of these `http` because the image was built from source.
    let found = [tcp(7070), udp(7071)];
    let ev = Evidence { built: true, ..Evidence::default() };
    assert_eq!(roles(&found, &ev), [role_of("tcp-7070", "tcp", None), role_of("udp-7071", "udp", None)]);
}

#[test]
fn each_kind_of_evidence_makes_a_port_http() {
    let mut checks = Evidence::default();
    checks.http_checks.insert(7000, "the HEALTHCHECK requests HTTP on it".into());
    let cases: [(&[Found], Evidence, &str); 5] = [
        (&[tcp(7000)], checks, "a health check"),
        (&[tcp(4000), tcp(4001)], framework("express", &[4001]), "a port in the code"),
        (&[tcp(7000)], framework("flask", &[5000]), "the only TCP port of a framework app"),
        (&[tcp(8000)], Evidence::default(), "a well-known port"),
        (&[tcp(6000)], Evidence { known: None, ..framework("gin", &[6000]) }, "the framework's default"),
    ];
    for (found, ev, what) in cases {
        let (ports, _) = assign(found, &ev);
        assert_eq!(ports.iter().filter(|p| is_http(p)).count(), 1, "{what}: {ports:?}");
    }
    // Two TCP ports and neither in the code: no guess.
    let (ports, _) = assign(&[tcp(7000), tcp(7001)], &framework("flask", &[5000]));
    assert!(ports.iter().all(|p| !is_http(p)), "{ports:?}");
}

#[test]
fn the_code_port_beats_the_metrics_convention() {
    let (ports, _) = assign(&[tcp(9090)], &framework("gin", &[9090]));
    assert_eq!(ports[0].purpose, "http");
}

#[test]
fn known_images_grpc_https_and_explicit_protocols() {
    let ev = Evidence { known: Some(("postgresql", 5432)), ..Evidence::default() };
    assert_eq!(roles(&[tcp(5432)], &ev), [role_of("postgresql", "postgresql", None)]);
    let mut grpc = tcp(9000);
    grpc.app_protocol = Some("GRPC".into());
    assert_eq!(
        roles(&[grpc, tcp(50051), tcp(8443)], &Evidence::default()),
        [
            role_of("grpc", "grpc", Some("kubernetes.io/h2c")),
            role_of("grpc-50051", "grpc", Some("kubernetes.io/h2c")),
            role_of("https", "https", Some("https")),
        ]
    );
}

#[test]
fn names_stay_unique_when_roles_collide() {
    // Two HTTP ports, DNS on TCP and UDP, a compose name and an invalid one.
    let mut named = tcp(9443);
    named.name = Some("admin".into());
    let mut invalid = tcp(9444);
    invalid.name = Some("Admin_Port".into());
    let found = [tcp(8080), tcp(8081), udp(53), tcp(53), named, invalid];
    let (ports, _) = assign(&found, &framework("gin", &[8080]));
    let names: Vec<&str> = ports.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(names, ["http", "http-8081", "dns", "dns-tcp", "admin", "tcp-9444"]);

    // A long role shortened to fit 15 characters with its port.
    let long = |port| Found { app_protocol: Some("elasticsearch".into()), ..tcp(port) };
    let (ports, _) = assign(&[long(9200), long(9300)], &Evidence::default());
    assert_eq!(ports.iter().map(|p| p.name.as_str()).collect::<Vec<_>>(), ["elasticsearch", "elasticsea-9300"]);

    // A compose name that takes what a role would have chosen.
    let mut squatter = tcp(7000);
    squatter.name = Some("http".into());
    let (ports, _) = assign(&[squatter, tcp(8080)], &Evidence::default());
    assert_eq!(ports.iter().map(|p| p.name.as_str()).collect::<Vec<_>>(), ["http", "http-8080"]);
}

#[test]
fn port_names_follow_the_iana_rules() {
    for ok in ["http", "tcp-7000", "udp-5353", "a", "h2c", "metrics-9090", "abcdefghijklmno"] {
        assert!(is_valid_name(ok), "{ok}");
    }
    for bad in ["", "7000", "-http", "http-", "ht--tp", "HTTP", "http_admin", "abcdefghijklmnop", "http.x"] {
        assert!(!is_valid_name(bad), "{bad}");
    }
}

fn any_found() -> impl Strategy<Value = Found> {
    let protocol = prop_oneof![
        Just(None),
        Just(Some("http".to_owned())),
        Just(Some("grpc".to_owned())),
        Just(Some("elasticsearch".to_owned())),
        "[a-zA-Z0-9_-]{0,20}".prop_map(Some),
    ];
    let name = prop_oneof![Just(None), Just(Some("http".to_owned())), "[a-z0-9-]{0,18}".prop_map(Some)];
    let port = prop_oneof![Just(53u16), Just(80), Just(8080), Just(9090), Just(50051), 1u16..=65535];
    (port, any::<bool>(), protocol, name).prop_map(|(port, udp, app_protocol, name)| Found {
        port,
        udp,
        app_protocol,
        name,
        source: "test".into(),
        published: false,
    })
}

proptest! {
    #[test]
    fn names_are_always_valid_unique_and_udp_never_serves_http(
        found in prop::collection::vec(any_found(), 0..12),
        code_port in prop_oneof![Just(8080u16), 1u16..=65535],
        with_framework in any::<bool>(),
    ) {
        // Ports are unique by number and protocol, as the analysis collects them.
        let mut seen = BTreeSet::new();
        let found: Vec<Found> = found.into_iter().filter(|f| seen.insert((f.port, f.udp))).collect();
        let ev = if with_framework { framework("axum", &[code_port]) } else { Evidence::default() };
        let (ports, _) = assign(&found, &ev);
        let names: BTreeSet<&str> = ports.iter().map(|p| p.name.as_str()).collect();
        prop_assert_eq!(names.len(), ports.len(), "duplicate names: {:?}", ports);
        for p in &ports {
            prop_assert!(is_valid_name(&p.name), "invalid name {:?}", p.name);
            if p.udp {
                prop_assert!(!is_http(p) && app_protocol(p).as_deref() != Some("http"), "{:?}", p);
            }
        }
        prop_assert!(main_port(&ports).is_none_or(|p| !p.udp));
    }
}
