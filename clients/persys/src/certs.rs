//! `persys certs`: the cluster CA, service certificates and the agent join token.

use std::{
    net::IpAddr,
    path::{Path, PathBuf},
    time::Duration,
};

use anyhow::{Context, bail};
use clap::{Args, Subcommand};
use persys_kit::{
    identity::Identity,
    pki::{Ca, LeafRequest, service_dns_names, write_private, write_public},
};
use rand::RngCore;

/// The services that get a certificate from `certs init`.
pub const SERVICES: [&str; 6] = ["gateway", "scheduler", "analyzer", "reconciler", "metrics", "stack"];

#[derive(Subcommand, Debug)]
pub enum CertsCommand {
    /// Create a cluster CA, a certificate for every service and an agent join token in DIR.
    ///
    /// Layout: DIR/ca.pem, DIR/ca-key.pem, DIR/<service>/{cert.pem,key.pem}, DIR/join-token.
    /// Keys and the token are written 0600.
    Init(InitArgs),
    /// Issue one more certificate signed by the CA in DIR.
    Issue(IssueArgs),
}

#[derive(Args, Debug)]
pub struct InitArgs {
    /// Directory to write to (created if missing).
    #[arg(long, env = "PERSYS_CERTS_DIR", default_value = "./certs")]
    dir: PathBuf,
    /// Kubernetes namespace used in the services' DNS names.
    #[arg(long, default_value = "persys")]
    namespace: String,
    /// Extra DNS name or IP for every service certificate (repeatable).
    #[arg(long = "san")]
    extra_sans: Vec<String>,
    /// Validity of the CA.
    #[arg(long, default_value = "3650d", value_parser = persys_kit::config::parse_duration)]
    ca_validity: Duration,
    /// Validity of service certificates.
    #[arg(long, default_value = "365d", value_parser = persys_kit::config::parse_duration)]
    validity: Duration,
    /// Replace an existing CA in DIR (every certificate it signed stops being trusted).
    #[arg(long)]
    force: bool,
}

#[derive(Args, Debug)]
pub struct IssueArgs {
    /// Directory holding ca.pem and ca-key.pem.
    #[arg(long, env = "PERSYS_CERTS_DIR", default_value = "./certs")]
    dir: PathBuf,
    /// Service name (identity spiffe://persys/NAME); the files go to DIR/NAME/.
    #[arg(long, conflicts_with = "agent", required_unless_present = "agent")]
    service: Option<String>,
    /// Node name of an agent (identity spiffe://persys/agent/NODE); files go to DIR/agent-NODE/.
    #[arg(long)]
    agent: Option<String>,
    /// DNS name or IP the certificate is valid for (repeatable); services get their usual names too.
    #[arg(long = "san")]
    sans: Vec<String>,
    /// Kubernetes namespace used in service DNS names.
    #[arg(long, default_value = "persys")]
    namespace: String,
    /// Validity.
    #[arg(long, default_value = "365d", value_parser = persys_kit::config::parse_duration)]
    validity: Duration,
    /// Write the files to this directory instead.
    #[arg(long)]
    out: Option<PathBuf>,
}

pub fn run(command: CertsCommand) -> anyhow::Result<()> {
    match command {
        CertsCommand::Init(args) => init(&args),
        CertsCommand::Issue(args) => issue(&args),
    }
}

fn split_sans(sans: &[String]) -> (Vec<String>, Vec<IpAddr>) {
    let mut dns = Vec::new();
    let mut ips = Vec::new();
    for s in sans {
        match s.parse::<IpAddr>() {
            Ok(ip) => ips.push(ip),
            Err(_) => dns.push(s.clone()),
        }
    }
    (dns, ips)
}

fn loopback() -> Vec<IpAddr> {
    vec![IpAddr::from([127, 0, 0, 1]), IpAddr::from([0u16, 0, 0, 0, 0, 0, 0, 1])]
}

fn write_leaf(dir: &Path, cert: &str, key: &str) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    write_public(&dir.join("cert.pem"), cert.as_bytes())?;
    write_private(&dir.join("key.pem"), key.as_bytes())?;
    Ok(())
}

/// Returns a join token shaped like kubeadm's: `<6 hex id>.<16 hex secret>`.
pub fn new_join_token() -> String {
    let mut b = [0u8; 11];
    rand::rng().fill_bytes(&mut b);
    format!("{}.{}", hex::encode(&b[..3]), hex::encode(&b[3..]))
}

fn init(args: &InitArgs) -> anyhow::Result<()> {
    let ca_path = args.dir.join("ca.pem");
    if ca_path.exists() && !args.force {
        bail!(
            "{} already exists; pass --force to replace the CA (certificates it signed stop being trusted), \
             or use `persys certs issue` to add certificates",
            ca_path.display()
        );
    }
    std::fs::create_dir_all(&args.dir).with_context(|| format!("creating {}", args.dir.display()))?;
    let ca = Ca::generate("Persys cluster CA", args.ca_validity)?;
    write_public(&ca_path, ca.cert_pem().as_bytes())?;
    write_private(&args.dir.join("ca-key.pem"), ca.key_pem().as_bytes())?;
    let (extra_dns, extra_ips) = split_sans(&args.extra_sans);
    for service in SERVICES {
        let mut dns_names = service_dns_names(service, &args.namespace);
        dns_names.extend(extra_dns.iter().cloned());
        let mut ips = loopback();
        ips.extend(extra_ips.iter().copied());
        let issued = ca.issue(&LeafRequest {
            identity: Identity::Service(service.into()),
            dns_names,
            ips,
            validity: args.validity,
        })?;
        write_leaf(&args.dir.join(service), &issued.cert_pem, &issued.key_pem)?;
    }
    let token = new_join_token();
    write_private(&args.dir.join("join-token"), format!("{token}\n").as_bytes())?;
    println!("wrote a cluster CA and certificates for {} to {}", SERVICES.join(", "), args.dir.display());
    println!("agent join token: {}/join-token (keep it secret)", args.dir.display());
    Ok(())
}

fn issue(args: &IssueArgs) -> anyhow::Result<()> {
    let ca = Ca::load_dir(&args.dir).with_context(|| {
        format!(
            "loading the CA from {} (run `persys certs init --dir {}` first)",
            args.dir.display(),
            args.dir.display()
        )
    })?;
    let (mut dns_names, mut ips) = split_sans(&args.sans);
    let (identity, default_dir) = match (&args.service, &args.agent) {
        (Some(service), None) => {
            let identity = Identity::from_uri(&format!("spiffe://persys/{service}"))
                .with_context(|| format!("`{service}` is not a valid service name (letters, digits, '-', '.', '_')"))?;
            dns_names.extend(service_dns_names(service, &args.namespace));
            ips.extend(loopback());
            (identity, args.dir.join(service))
        }
        (None, Some(node)) => {
            let identity = Identity::from_uri(&format!("spiffe://persys/agent/{node}"))
                .with_context(|| format!("`{node}` is not a valid node name (letters, digits, '-', '.', '_')"))?;
            (identity, args.dir.join(format!("agent-{node}")))
        }
        _ => bail!("pass exactly one of --service NAME or --agent NODE"),
    };
    let issued = ca.issue(&LeafRequest { identity: identity.clone(), dns_names, ips, validity: args.validity })?;
    let out = args.out.clone().unwrap_or(default_dir);
    write_leaf(&out, &issued.cert_pem, &issued.key_pem)?;
    println!("issued {identity}: {}/cert.pem, {}/key.pem", out.display(), out.display());
    Ok(())
}
