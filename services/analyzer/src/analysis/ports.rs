//! Port roles: what each port of an application serves, the name that says so, and which port
//! is the main one.
//!
//! A port is `http` only on evidence: an HTTP health check on it, a web framework listening on
//! it (a port in the code, the framework's default, or the only TCP port of a framework app), the
//! compose `app_protocol`, or a port that conventionally serves HTTP (80, 8080, 3000, ...). UDP is
//! never HTTP. Everything else keeps a name that says only what is known: `dns`, `metrics`, the
//! backing service (`postgresql`), or `tcp-7000` / `udp-5353`.

use std::collections::{BTreeMap, BTreeSet};

use crate::model::AppPort;

/// TCP ports that conventionally serve plain HTTP.
const HTTP_PORTS: &[u16] = &[80, 3000, 5000, 8000, 8008, 8080, 8081, 8888];
/// TCP ports that conventionally serve HTTPS.
const HTTPS_PORTS: &[u16] = &[443, 8443];
/// Ports an application's own Prometheus exporter conventionally uses.
const METRICS_PORTS: &[u16] = &[9090, 9100];
/// The conventional gRPC port.
const GRPC_PORT: u16 = 50051;

/// A port as found (compose, EXPOSE, a variable, the code), before its role is decided.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Found {
    /// Container port.
    pub port: u16,
    /// UDP rather than TCP.
    pub udp: bool,
    /// Published on the host.
    pub published: bool,
    /// The compose long syntax's `app_protocol`.
    pub app_protocol: Option<String>,
    /// The compose long syntax's `name`.
    pub name: Option<String>,
    /// Where it was found, for the notes.
    pub source: String,
}

/// What is known about the protocols the ports speak.
#[derive(Clone, Debug, Default)]
pub struct Evidence {
    /// TCP ports an HTTP health check targets, with what says so.
    pub http_checks: BTreeMap<u16, String>,
    /// The web framework the code uses; empty when none.
    pub framework: String,
    /// Ports the framework's server listens on: the code's main port or the framework's
    /// default, and a `PORT` variable. Other listen addresses in the code may be anything.
    pub code_ports: Vec<u16>,
    /// The known third-party image's service and port.
    pub known: Option<(&'static str, u16)>,
    /// Built from this source, so a 9090 or 9100 is the app's own metrics port.
    pub built: bool,
}

/// Returns the role of a port and why it was chosen; `only_tcp` says it is the app's one TCP port.
fn role(f: &Found, ev: &Evidence, only_tcp: bool) -> (String, String) {
    let explicit = f.app_protocol.as_deref().map(|p| p.trim().to_ascii_lowercase()).filter(|p| !p.is_empty());
    if let Some(p) = explicit {
        let http_family = matches!(p.as_str(), "http" | "https");
        if !(f.udp && http_family) && (http_family || p == "grpc" || is_valid_name(&p)) {
            return (p, "compose app_protocol".into());
        }
    }
    let port = f.port;
    if f.udp {
        return if port == 53 {
            ("dns".into(), "the DNS port".into())
        } else {
            ("udp".into(), "a UDP port of no known role".into())
        };
    }
    if let Some((service, known_port)) = ev.known
        && port == known_port
    {
        return (service.into(), format!("what the {service} image serves"));
    }
    if port == 53 {
        return ("dns".into(), "the DNS port".into());
    }
    if let Some(why) = ev.http_checks.get(&port) {
        return ("http".into(), why.clone());
    }
    let framework = ev.framework.as_str();
    if !framework.is_empty() && ev.code_ports.contains(&port) {
        return ("http".into(), format!("the {framework} server listens on it"));
    }
    if ev.built && METRICS_PORTS.contains(&port) {
        return ("metrics".into(), "the usual port of a Prometheus exporter".into());
    }
    if HTTPS_PORTS.contains(&port) {
        return ("https".into(), "a well-known HTTPS port".into());
    }
    if !framework.is_empty() && only_tcp {
        return ("http".into(), format!("the only TCP port of a {framework} app"));
    }
    if HTTP_PORTS.contains(&port) {
        return ("http".into(), "a well-known HTTP port".into());
    }
    if port == GRPC_PORT {
        return ("grpc".into(), "the well-known gRPC port".into());
    }
    ("tcp".into(), "no evidence of its protocol".into())
}

/// Decides the role and the name of every port, in the order found, and says why for each.
pub fn assign(found: &[Found], ev: &Evidence) -> (Vec<AppPort>, Vec<String>) {
    let tcp = found.iter().filter(|f| !f.udp).count();
    let mut notes = Vec::new();
    let mut ports: Vec<AppPort> = found
        .iter()
        .map(|f| {
            let (purpose, why) = role(f, ev, tcp == 1);
            let proto = if f.udp { "udp" } else { "tcp" };
            notes.push(format!("port {}/{proto} ({}): {purpose}, {why}", f.port, f.source));
            AppPort { port: f.port, udp: f.udp, name: String::new(), purpose, published: f.published }
        })
        .collect();
    let explicit: Vec<Option<String>> = found.iter().map(|f| f.name.clone()).collect();
    name_ports(&mut ports, &explicit);
    (ports, notes)
}

/// Names every port after its role, unique within the app; a valid compose `name` wins.
pub fn name_ports(ports: &mut [AppPort], explicit: &[Option<String>]) {
    let mut taken = BTreeSet::new();
    let numbers: Vec<(u16, bool)> = ports.iter().map(|p| (p.port, p.udp)).collect();
    for (i, port) in ports.iter_mut().enumerate() {
        let proto = if port.udp { "udp" } else { "tcp" };
        let generic = format!("{proto}-{}", port.port);
        let base = match explicit.get(i).cloned().flatten().filter(|n| is_valid_name(n)) {
            Some(n) => n,
            None if matches!(port.purpose.as_str(), "tcp" | "udp") => generic.clone(),
            None if is_valid_name(&port.purpose) => port.purpose.clone(),
            None => generic.clone(),
        };
        let twin = numbers.iter().any(|&(n, udp)| n == port.port && udp != port.udp);
        let mut candidates = vec![base.clone()];
        if twin {
            candidates.push(with_suffix(&base, proto));
        }
        candidates.push(with_suffix(&base, &port.port.to_string()));
        candidates.push(generic);
        let name = candidates
            .into_iter()
            .find(|c| is_valid_name(c) && !taken.contains(c))
            .unwrap_or_else(|| (i..).map(|n| format!("port-{n}")).find(|c| !taken.contains(c)).expect("unbounded"));
        taken.insert(name.clone());
        port.name = name;
    }
}

/// Returns `base-suffix`, shortening `base` so the whole fits in 15 characters.
fn with_suffix(base: &str, suffix: &str) -> String {
    let keep = 15usize.saturating_sub(suffix.len() + 1);
    let head: String = base.chars().take(keep).collect();
    format!("{}-{suffix}", head.trim_end_matches('-'))
}

/// Returns whether `name` is a valid port name (an IANA service name, as Kubernetes checks it):
/// 1 to 15 characters of lower-case letters, digits and `-`, at least one letter, no `-` at
/// either end and no `--`.
pub fn is_valid_name(name: &str) -> bool {
    (1..=15).contains(&name.len())
        && name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && name.bytes().any(|b| b.is_ascii_lowercase())
        && !name.starts_with('-')
        && !name.ends_with('-')
        && !name.contains("--")
}

/// Returns the port the application serves: the first HTTP port, else HTTPS, else gRPC, else
/// the first other TCP port, else a metrics port; never a UDP port (no TCP or HTTP check can
/// reach one).
pub fn main_port(ports: &[AppPort]) -> Option<&AppPort> {
    ports.iter().filter(|p| !p.udp).min_by_key(|p| match p.purpose.as_str() {
        "http" => 0,
        "https" => 1,
        "grpc" => 2,
        "metrics" => 4,
        _ => 3,
    })
}

/// Returns whether a port speaks plain HTTP, so an HTTP probe and `appProtocol: http` fit it.
pub fn is_http(port: &AppPort) -> bool {
    !port.udp && port.purpose == "http"
}

/// Returns the Service's `appProtocol` for a role, when it is one Kubernetes knows.
pub fn app_protocol(port: &AppPort) -> Option<String> {
    match port.purpose.as_str() {
        "http" | "https" if !port.udp => Some(port.purpose.clone()),
        "grpc" | "h2c" if !port.udp => Some("kubernetes.io/h2c".into()),
        _ => None,
    }
}

#[cfg(test)]
mod tests;
