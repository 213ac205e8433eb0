//! Service, Ingress and the deny-by-default NetworkPolicy.

use std::collections::BTreeMap;

use k8s_openapi::{
    api::{
        core::v1::{Service, ServicePort, ServiceSpec},
        networking::v1::{
            HTTPIngressPath, HTTPIngressRuleValue, Ingress, IngressBackend, IngressRule, IngressServiceBackend,
            IngressSpec, IngressTLS, NetworkPolicy, NetworkPolicyEgressRule, NetworkPolicyIngressRule,
            NetworkPolicyPeer, NetworkPolicyPort, NetworkPolicySpec, ServiceBackendPort,
        },
    },
    apimachinery::pkg::{apis::meta::v1::LabelSelector, util::intstr::IntOrString},
};

use super::{Manifest, Object, meta, selector, to_yaml};
use crate::{analysis::Analysis, model::App};

/// The ClusterIP Service, when the app has ports.
pub fn service(app: &App, ns: &str, env: &str) -> Option<Manifest> {
    if app.ports.is_empty() {
        return None;
    }
    let ports = app
        .ports
        .iter()
        .map(|p| ServicePort {
            name: Some(p.name.clone()),
            port: i32::from(p.port),
            target_port: Some(IntOrString::String(p.name.clone())),
            protocol: Some(if p.udp { "UDP" } else { "TCP" }.into()),
            app_protocol: crate::analysis::ports::app_protocol(p),
            ..ServicePort::default()
        })
        .collect();
    let svc = Service {
        metadata: meta(app, &app.name, ns, env),
        spec: Some(ServiceSpec {
            type_: Some("ClusterIP".into()),
            selector: Some(selector(app)),
            ports: Some(ports),
            ..ServiceSpec::default()
        }),
        ..Service::default()
    };
    Some(Manifest {
        path: "service.yaml".into(),
        content: to_yaml(&svc),
        kind: "Service".into(),
        object: Some(Object::Service(Box::new(svc))),
    })
}

fn http_port(app: &App) -> Option<&crate::model::AppPort> {
    app.ports.iter().find(|p| !p.udp && (p.purpose == "http" || p.purpose == "https"))
}

/// The Ingress, when the app has a host and an HTTP port.
pub fn ingress(analysis: &Analysis, app: &App) -> Option<Manifest> {
    let host = app.host.as_ref()?;
    let port = http_port(app)?;
    let o = &analysis.options;
    let tls_config = analysis.config.ingress.as_ref().and_then(|i| i.tls.as_ref()).filter(|t| t.enabled);
    let tls_enabled = o.tls_enabled || tls_config.is_some();
    let secret = tls_config
        .map(|t| t.secret_name.clone())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| format!("{}-tls", app.name));
    let mut metadata = meta(app, &app.name, &o.namespace, &o.environment);
    if tls_enabled && !o.cluster_issuer.is_empty() {
        metadata.annotations =
            Some(BTreeMap::from([("cert-manager.io/cluster-issuer".to_owned(), o.cluster_issuer.clone())]));
    }
    let paths = app
        .ingress_paths
        .iter()
        .map(|(path, kind)| HTTPIngressPath {
            path: Some(path.clone()),
            path_type: kind.clone(),
            backend: IngressBackend {
                service: Some(IngressServiceBackend {
                    name: app.name.clone(),
                    port: Some(ServiceBackendPort { name: Some(port.name.clone()), number: None }),
                }),
                ..IngressBackend::default()
            },
        })
        .collect();
    let ing = Ingress {
        metadata,
        spec: Some(IngressSpec {
            ingress_class_name: Some(o.ingress_class.clone()),
            rules: Some(vec![IngressRule { host: Some(host.clone()), http: Some(HTTPIngressRuleValue { paths }) }]),
            tls: tls_enabled.then(|| vec![IngressTLS { hosts: Some(vec![host.clone()]), secret_name: Some(secret) }]),
            ..IngressSpec::default()
        }),
        ..Ingress::default()
    };
    Some(Manifest {
        path: "ingress.yaml".into(),
        content: to_yaml(&ing),
        kind: "Ingress".into(),
        object: Some(Object::Ingress(Box::new(ing))),
    })
}

/// Returns the namespace an ingress controller of `class` usually runs in.
pub fn controller_namespace(class: &str) -> String {
    match class {
        "nginx" => "ingress-nginx".into(),
        "haproxy" => "haproxy-controller".into(),
        other => other.into(),
    }
}

fn tcp_ports(ports: impl IntoIterator<Item = (u16, bool)>) -> Vec<NetworkPolicyPort> {
    ports
        .into_iter()
        .map(|(port, udp)| NetworkPolicyPort {
            port: Some(IntOrString::Int(i32::from(port))),
            protocol: Some(if udp { "UDP" } else { "TCP" }.into()),
            end_port: None,
        })
        .collect()
}

fn namespace_peer(ns: &str) -> NetworkPolicyPeer {
    NetworkPolicyPeer {
        namespace_selector: Some(LabelSelector {
            match_labels: Some(BTreeMap::from([("kubernetes.io/metadata.name".to_owned(), ns.to_owned())])),
            ..LabelSelector::default()
        }),
        ..NetworkPolicyPeer::default()
    }
}

fn app_peer(name: &str) -> NetworkPolicyPeer {
    NetworkPolicyPeer {
        pod_selector: Some(LabelSelector {
            match_labels: Some(BTreeMap::from([("app.kubernetes.io/name".to_owned(), name.to_owned())])),
            ..LabelSelector::default()
        }),
        ..NetworkPolicyPeer::default()
    }
}

/// The NetworkPolicy: everything denied except what the app needs. Ingress: from the apps that
/// depend on it, from the ingress controller when it has an Ingress, and from its own namespace
/// when it serves clients the analysis cannot see (a standalone API). Egress: DNS, the apps and
/// backing services it uses.
pub fn network_policy(analysis: &Analysis, app: &App) -> Manifest {
    let o = &analysis.options;
    let all_ports: Vec<(u16, bool)> = app.ports.iter().map(|p| (p.port, p.udp)).collect();
    let mut ingress = Vec::new();
    if !all_ports.is_empty() {
        let mut peers: Vec<NetworkPolicyPeer> = app.dependents.iter().map(|d| app_peer(d)).collect();
        let unknown_clients = app.dependents.is_empty() && !analysis.is_multi();
        if unknown_clients || (app.external && app.host.is_none()) {
            // Clients the analysis cannot see: anything in the same namespace.
            peers = vec![NetworkPolicyPeer {
                pod_selector: Some(LabelSelector::default()),
                ..NetworkPolicyPeer::default()
            }];
        }
        if !peers.is_empty() {
            ingress.push(NetworkPolicyIngressRule { from: Some(peers), ports: Some(tcp_ports(all_ports.clone())) });
        }
        if app.host.is_some()
            && let Some(p) = http_port(app)
        {
            ingress.push(NetworkPolicyIngressRule {
                from: Some(vec![namespace_peer(&controller_namespace(&o.ingress_class))]),
                ports: Some(tcp_ports([(p.port, false)])),
            });
        }
    }
    let mut egress = vec![NetworkPolicyEgressRule {
        to: Some(vec![NetworkPolicyPeer {
            namespace_selector: Some(LabelSelector {
                match_labels: Some(BTreeMap::from([(
                    "kubernetes.io/metadata.name".to_owned(),
                    "kube-system".to_owned(),
                )])),
                ..LabelSelector::default()
            }),
            pod_selector: Some(LabelSelector {
                match_labels: Some(BTreeMap::from([("k8s-app".to_owned(), "kube-dns".to_owned())])),
                ..LabelSelector::default()
            }),
            ..NetworkPolicyPeer::default()
        }]),
        ports: Some(tcp_ports([(53, true), (53, false)])),
    }];
    for b in &app.backing {
        if b.ports.is_empty() {
            continue;
        }
        let to = b.in_analysis.then(|| vec![app_peer(&b.name)]);
        egress.push(NetworkPolicyEgressRule { to, ports: Some(tcp_ports(b.ports.iter().map(|p| (*p, false)))) });
    }
    let np = NetworkPolicy {
        metadata: meta(app, &app.name, &o.namespace, &o.environment),
        spec: Some(NetworkPolicySpec {
            pod_selector: Some(LabelSelector { match_labels: Some(selector(app)), ..LabelSelector::default() }),
            policy_types: Some(vec!["Ingress".into(), "Egress".into()]),
            ingress: Some(ingress),
            egress: Some(egress),
        }),
    };
    Manifest { path: "networkpolicy.yaml".into(), content: to_yaml(&np), kind: "NetworkPolicy".into(), object: None }
}
