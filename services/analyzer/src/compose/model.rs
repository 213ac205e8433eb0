//! The compose model and how each part is read.

use std::{collections::BTreeMap, fmt};

use serde::{
    Deserialize, Deserializer,
    de::{self, IgnoredAny, MapAccess, Visitor},
};
use serde_saphyr::Spanned;

use super::de::{
    CommandLine, Count, Entries, Entry, ListOrMap, NamesOrMap, NullableText, OneOrMany, Reject, Seconds, ShortOrLong,
    Switch, Text,
};

/// A compose file.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ComposeFile {
    /// Path relative to the application root.
    pub path: String,
    /// Project name (`name:`), if set.
    pub name: Option<String>,
    /// Services by name.
    pub services: BTreeMap<String, Service>,
    /// Top-level named volumes.
    pub volumes: BTreeMap<String, TopVolume>,
}

/// A top-level volume.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
pub struct TopVolume {
    /// Managed outside the project (`external: true`, or the legacy `external: {name: ...}`).
    #[serde(default)]
    pub external: Switch,
    /// Volume driver.
    #[serde(default)]
    pub driver: Option<Text>,
}

/// How a service is built.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Build {
    /// Build context, relative to the compose file.
    pub context: String,
    /// Dockerfile, relative to the context.
    pub dockerfile: Option<String>,
    /// Build target stage.
    pub target: Option<String>,
    /// Build arguments.
    pub args: BTreeMap<String, Option<String>>,
}

#[derive(Deserialize)]
struct LongBuild {
    #[serde(default)]
    context: Option<Text>,
    #[serde(default)]
    dockerfile: Option<Text>,
    #[serde(default)]
    target: Option<Text>,
    #[serde(default)]
    args: ListOrMap,
}

impl<'de> Deserialize<'de> for Build {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Build;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a build context path or a map with `context`")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Build, E> {
                let context = super::interpolate::interpolate(v).map_err(E::custom)?;
                Ok(Build { context, ..Build::default() })
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Build, A::Error> {
                let long = LongBuild::deserialize(de::value::MapAccessDeserializer::new(map))?;
                Ok(Build {
                    context: long.context.map_or_else(|| ".".to_owned(), |t| t.0),
                    dockerfile: long.dockerfile.map(|t| t.0),
                    target: long.target.map(|t| t.0),
                    args: long.args.0,
                })
            }
        }
        d.deserialize_any(V)
    }
}

/// A container port.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Port {
    /// Container port.
    pub target: u16,
    /// Host port or range, when published.
    pub published: Option<String>,
    /// Host IP the port is published on.
    pub host_ip: Option<String>,
    /// `true` for UDP.
    pub udp: bool,
    /// Port name (long syntax).
    pub name: Option<String>,
    /// Application protocol (long syntax), e.g. `http`, `grpc`.
    pub app_protocol: Option<String>,
}

#[derive(Deserialize)]
pub(crate) struct LongPort {
    target: Text,
    #[serde(default)]
    published: Option<Text>,
    #[serde(default)]
    host_ip: Option<Text>,
    #[serde(default)]
    protocol: Option<Text>,
    #[serde(default)]
    name: Option<Text>,
    #[serde(default)]
    app_protocol: Option<Text>,
    #[serde(default)]
    #[allow(dead_code)]
    mode: Option<Text>,
}

fn port_number(s: &str, what: &str) -> Result<u16, String> {
    match s.trim().parse::<u16>() {
        Ok(p) if p > 0 => Ok(p),
        _ => Err(format!("`{s}` is not a valid {what} port (1-65535)")),
    }
}

fn port_range(s: &str, what: &str) -> Result<(u16, u16), String> {
    match s.split_once('-') {
        Some((a, b)) => {
            let (lo, hi) = (port_number(a, what)?, port_number(b, what)?);
            if hi < lo || hi - lo > 100 {
                return Err(format!("`{s}` is not a valid {what} port range"));
            }
            Ok((lo, hi))
        }
        None => {
            let p = port_number(s, what)?;
            Ok((p, p))
        }
    }
}

fn protocol_is_udp(p: &str) -> Result<bool, String> {
    match p.to_ascii_lowercase().as_str() {
        "tcp" | "" => Ok(false),
        "udp" => Ok(true),
        other => Err(format!("unknown protocol `{other}`; use tcp or udp")),
    }
}

impl ShortOrLong for Port {
    const WHAT: &'static str = "port";
    type Long = LongPort;

    /// `[[IP:](HOST|RANGE):](CONTAINER|RANGE)[/PROTOCOL]`; IPv6 addresses in brackets.
    fn short(text: &str) -> Result<Vec<Self>, String> {
        let (spec, proto) = text.split_once('/').unwrap_or((text, "tcp"));
        let udp = protocol_is_udp(proto)?;
        let (host_ip, rest) = if let Some(rest) = spec.strip_prefix('[') {
            let (ip, after) =
                rest.split_once("]:").ok_or_else(|| format!("`{text}`: unclosed `[` in an IPv6 address"))?;
            (Some(ip.to_owned()), after.to_owned())
        } else {
            (None, spec.to_owned())
        };
        let parts: Vec<&str> = rest.split(':').collect();
        let (host_ip, published, container) = match parts.as_slice() {
            [c] => (host_ip, None, *c),
            [p, c] if host_ip.is_some() => (host_ip, Some(*p), *c),
            [p, c] => (None, Some(*p), *c),
            [ip, p, c] if host_ip.is_none() => (Some((*ip).to_owned()), Some(*p), *c),
            _ => return Err(format!("`{text}` is not HOST:CONTAINER[/PROTOCOL]")),
        };
        let (lo, hi) = port_range(container, "container")?;
        let published = published.filter(|p| !p.is_empty());
        let host_range = published.map(|p| port_range(p, "published")).transpose()?;
        if let Some((hlo, hhi)) = host_range
            && hhi - hlo != hi - lo
            && hlo != hhi
        {
            return Err(format!("`{text}`: the host and container ranges differ in size"));
        }
        Ok((lo..=hi)
            .enumerate()
            .map(|(i, target)| Port {
                target,
                published: host_range.map(|(hlo, hhi)| if hlo == hhi { hlo } else { hlo + i as u16 }.to_string()),
                host_ip: host_ip.clone(),
                udp,
                name: None,
                app_protocol: None,
            })
            .collect())
    }

    fn long(l: LongPort) -> Result<Vec<Self>, String> {
        Ok(vec![Port {
            target: port_number(&l.target.0, "target")?,
            published: l.published.map(|p| p.0).filter(|p| !p.is_empty()),
            host_ip: l.host_ip.map(|t| t.0),
            udp: protocol_is_udp(&l.protocol.map(|t| t.0).unwrap_or_default())?,
            name: l.name.map(|t| t.0),
            app_protocol: l.app_protocol.map(|t| t.0),
        }])
    }
}

/// What a volume mount mounts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum VolumeKind {
    /// A named volume (`data:/var/lib/x`), or an anonymous one when the name is empty.
    Volume,
    /// A host path (`./conf:/etc/x`).
    Bind,
    /// A tmpfs.
    Tmpfs,
}

/// A service volume mount.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VolumeMount {
    /// Kind of mount.
    pub kind: VolumeKind,
    /// Volume name or host path; empty for anonymous volumes and tmpfs.
    pub source: String,
    /// Path in the container.
    pub target: String,
    /// Mounted read-only.
    pub read_only: bool,
}

#[derive(Deserialize)]
pub(crate) struct LongVolume {
    #[serde(rename = "type")]
    kind: Text,
    #[serde(default)]
    source: Option<Text>,
    target: Text,
    #[serde(default)]
    read_only: bool,
}

impl ShortOrLong for VolumeMount {
    const WHAT: &'static str = "volume";
    type Long = LongVolume;

    /// `[SOURCE:]TARGET[:MODE]`.
    fn short(text: &str) -> Result<Vec<Self>, String> {
        let parts: Vec<&str> = text.split(':').collect();
        let (source, target, mode) = match parts.as_slice() {
            [t] => ("", *t, ""),
            [s, t] => (*s, *t, ""),
            [s, t, m] => (*s, *t, *m),
            _ => return Err(format!("`{text}` is not SOURCE:TARGET[:MODE]")),
        };
        if !target.starts_with('/') {
            return Err(format!("`{text}`: the container path `{target}` must be absolute"));
        }
        let read_only = mode.split(',').any(|m| m == "ro");
        let kind = if source.starts_with(['.', '/', '~']) { VolumeKind::Bind } else { VolumeKind::Volume };
        Ok(vec![VolumeMount { kind, source: source.to_owned(), target: target.to_owned(), read_only }])
    }

    fn long(l: LongVolume) -> Result<Vec<Self>, String> {
        let kind = match l.kind.0.as_str() {
            "volume" => VolumeKind::Volume,
            "bind" => VolumeKind::Bind,
            "tmpfs" => VolumeKind::Tmpfs,
            other => return Err(format!("volume type `{other}` is not supported; use volume, bind or tmpfs")),
        };
        if !l.target.0.starts_with('/') {
            return Err(format!("the container path `{}` must be absolute", l.target.0));
        }
        Ok(vec![VolumeMount {
            kind,
            source: l.source.map(|s| s.0).unwrap_or_default(),
            target: l.target.0,
            read_only: l.read_only,
        }])
    }
}

/// An env_file entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EnvFile {
    /// Path relative to the compose file.
    pub path: String,
    /// Whether a missing file is an error (compose's default) or ignored.
    pub required: bool,
}

#[derive(Deserialize)]
pub(crate) struct LongEnvFile {
    path: Text,
    #[serde(default = "yes")]
    required: bool,
}

fn yes() -> bool {
    true
}

impl ShortOrLong for EnvFile {
    const WHAT: &'static str = "env_file";
    type Long = LongEnvFile;
    fn short(text: &str) -> Result<Vec<Self>, String> {
        Ok(vec![EnvFile { path: text.to_owned(), required: true }])
    }
    fn long(l: LongEnvFile) -> Result<Vec<Self>, String> {
        Ok(vec![EnvFile { path: l.path.0, required: l.required }])
    }
}

/// A depends_on entry.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
pub struct DependsOn {
    /// `service_started`, `service_healthy` or `service_completed_successfully`.
    #[serde(default = "started")]
    pub condition: String,
    /// Whether the dependency must exist.
    #[serde(default = "yes")]
    pub required: bool,
}

fn started() -> String {
    "service_started".into()
}

impl Default for DependsOn {
    fn default() -> Self {
        Self { condition: started(), required: true }
    }
}

/// The test of a healthcheck.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HealthTest {
    /// `["CMD", args...]`: run directly.
    Exec(Vec<String>),
    /// `["CMD-SHELL", "..."]` or a plain string: run by a shell.
    Shell(String),
    /// `["NONE"]`: disabled.
    None,
}

/// A service healthcheck.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Healthcheck {
    /// The test.
    pub test: HealthTest,
    /// Interval in seconds.
    pub interval_secs: Option<u64>,
    /// Timeout in seconds.
    pub timeout_secs: Option<u64>,
    /// Consecutive failures before unhealthy.
    pub retries: Option<u32>,
    /// Start period in seconds.
    pub start_period_secs: Option<u64>,
}

#[derive(Deserialize)]
struct RawHealthcheck {
    #[serde(default)]
    test: Option<HealthTest>,
    #[serde(default)]
    interval: Option<Seconds>,
    #[serde(default)]
    timeout: Option<Seconds>,
    #[serde(default)]
    retries: Option<Count>,
    #[serde(default)]
    start_period: Option<Seconds>,
    #[serde(default)]
    disable: bool,
}

impl<'de> Deserialize<'de> for HealthTest {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = HealthTest;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a command string or a list starting with CMD, CMD-SHELL or NONE")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<HealthTest, E> {
                Ok(HealthTest::Shell(super::interpolate::interpolate(v).map_err(E::custom)?))
            }
            fn visit_seq<A: de::SeqAccess<'de>>(self, mut seq: A) -> Result<HealthTest, A::Error> {
                let mut list = Vec::new();
                while let Some(Text(t)) = seq.next_element()? {
                    list.push(t);
                }
                match list.split_first() {
                    Some((k, rest)) if k == "CMD" && !rest.is_empty() => Ok(HealthTest::Exec(rest.to_vec())),
                    Some((k, rest)) if k == "CMD-SHELL" && !rest.is_empty() => Ok(HealthTest::Shell(rest.join(" "))),
                    Some((k, _)) if k == "NONE" => Ok(HealthTest::None),
                    _ => Err(de::Error::custom(
                        "healthcheck.test must start with CMD, CMD-SHELL or NONE and name a command",
                    )),
                }
            }
        }
        d.deserialize_any(V)
    }
}

impl<'de> Deserialize<'de> for Healthcheck {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let raw = RawHealthcheck::deserialize(d)?;
        let test = if raw.disable { HealthTest::None } else { raw.test.unwrap_or(HealthTest::None) };
        Ok(Healthcheck {
            test,
            interval_secs: raw.interval.map(|s| s.0),
            timeout_secs: raw.timeout.map(|s| s.0),
            retries: raw.retries.map(|c| c.0),
            start_period_secs: raw.start_period.map(|s| s.0),
        })
    }
}

/// CPU and memory amounts of `deploy.resources`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
pub struct Resources {
    /// CPUs, e.g. `0.5`.
    #[serde(default)]
    pub cpus: Option<Text>,
    /// Memory, e.g. `512M`.
    #[serde(default)]
    pub memory: Option<Text>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
struct RawResources {
    #[serde(default)]
    limits: Option<Resources>,
    #[serde(default)]
    reservations: Option<Resources>,
}

/// The `deploy` section.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Deploy {
    /// Replica count.
    pub replicas: Option<u32>,
    /// Limits.
    pub limits: Option<Resources>,
    /// Reservations (requests).
    pub reservations: Option<Resources>,
}

#[derive(Deserialize)]
struct RawDeploy {
    #[serde(default)]
    replicas: Option<Count>,
    #[serde(default)]
    resources: Option<RawResources>,
}

impl<'de> Deserialize<'de> for Deploy {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let raw = RawDeploy::deserialize(d)?;
        let replicas = raw.replicas.map(|c| c.0);
        let resources = raw.resources.unwrap_or_default();
        Ok(Deploy { replicas, limits: resources.limits, reservations: resources.reservations })
    }
}

/// One service.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Service {
    /// Image to run (or to tag the build with).
    pub image: Option<String>,
    /// Build settings.
    pub build: Option<Build>,
    /// Command override.
    pub command: Option<CommandLine>,
    /// Entrypoint override.
    pub entrypoint: Option<CommandLine>,
    /// Ports (published or not).
    pub ports: Vec<Port>,
    /// Ports exposed to other services only.
    pub expose: Vec<Port>,
    /// Environment; `None` values come from the shell (unknown here).
    pub environment: BTreeMap<String, Option<String>>,
    /// Environment files.
    pub env_files: Vec<EnvFile>,
    /// Services this one depends on.
    pub depends_on: BTreeMap<String, DependsOn>,
    /// Healthcheck.
    pub healthcheck: Option<Healthcheck>,
    /// Volume mounts.
    pub volumes: Vec<VolumeMount>,
    /// tmpfs mount paths.
    pub tmpfs: Vec<String>,
    /// Deploy settings.
    pub deploy: Option<Deploy>,
    /// Profiles that enable the service; empty means always enabled.
    pub profiles: Vec<String>,
    /// User override.
    pub user: Option<String>,
    /// Working directory override.
    pub working_dir: Option<String>,
    /// Service-level `cpus` (legacy form of a CPU limit).
    pub cpus: Option<String>,
    /// Service-level `mem_limit`.
    pub mem_limit: Option<String>,
    /// Service-level `scale` (legacy form of replicas).
    pub scale: Option<u32>,
    /// Labels.
    pub labels: BTreeMap<String, Option<String>>,
    /// Attributes read but not carried over to Kubernetes (e.g. `privileged`), for warnings.
    pub ignored: Vec<String>,
    /// Where the service and its keys are written, for the notes.
    pub origin: Origin,
}

/// Where a key is written: its 1-based line and byte offset, as the YAML reader reports them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Mark {
    pub(crate) line: usize,
    pub(crate) offset: usize,
}

impl Mark {
    /// The mark of a key; none when the key is written elsewhere than where it applies (brought
    /// in by a merge key or an alias) or the reader gave no position.
    fn of(key: &Spanned<String>) -> Option<Mark> {
        if key.referenced != key.defined {
            return None;
        }
        let line = usize::try_from(key.referenced.line()).ok().filter(|l| *l > 0)?;
        let offset = usize::try_from(key.referenced.span().byte_offset()?).ok()?;
        Some(Mark { line, offset })
    }

    /// Whether `text` holds `key` (plain or quoted) at this mark, on its line; `lines` holds the
    /// byte offset where each line of `text` starts.
    fn holds(self, text: &str, lines: &[usize], key: &str) -> bool {
        let Some(at) = text.get(self.offset..) else { return false };
        let at = at.strip_prefix(['"', '\'']).unwrap_or(at);
        let on_line = lines.get(self.line - 1).is_some_and(|start| *start <= self.offset)
            && lines.get(self.line).is_none_or(|next| self.offset < *next);
        on_line && at.starts_with(key)
    }
}

/// Where a service is written: the compose file, the service's key under `services` and the
/// keys of its settings, each with its line when it is known for sure.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Origin {
    /// The compose file, relative to the application root.
    pub file: String,
    /// The service's name.
    pub name: String,
    /// The service's key.
    pub(crate) mark: Option<Mark>,
    /// The service's keys (`ports`, `healthcheck`, ...).
    pub(crate) keys: BTreeMap<String, Mark>,
}

impl Origin {
    /// The 1-based line of the service's key, when known.
    pub fn line(&self) -> Option<usize> {
        self.mark.map(|m| m.line)
    }

    /// The 1-based line of one of the service's keys (`expose`), when known.
    pub fn key_line(&self, key: &str) -> Option<usize> {
        self.keys.get(key).map(|m| m.line)
    }

    /// The service's keys whose line is known, with it.
    pub fn key_lines(&self) -> impl Iterator<Item = (&str, usize)> {
        self.keys.iter().map(|(k, m)| (k.as_str(), m.line))
    }

    /// Names a key of the service and where it is: `services.api.expose at compose.yaml:12`, or
    /// `services.api.expose in compose.yaml` when the line is not known.
    pub fn at(&self, key: &str) -> String {
        let file = &self.file;
        match self.key_line(key) {
            Some(line) => format!("services.{}.{key} at {file}:{line}", self.name),
            None => format!("services.{}.{key} in {file}", self.name),
        }
    }

    /// Names the service and where it is: `services.api at compose.yaml:3`.
    pub fn service_at(&self) -> String {
        let file = &self.file;
        match self.line() {
            Some(line) => format!("services.{} at {file}:{line}", self.name),
            None => format!("services.{} in {file}", self.name),
        }
    }

    /// Keeps only the marks that hold their key in `text`, so no note names a wrong line;
    /// `lines` holds the byte offset where each line of `text` starts.
    pub(crate) fn verify(&mut self, text: &str, lines: &[usize]) {
        self.mark = self.mark.filter(|m| m.holds(text, lines, &self.name));
        self.keys.retain(|k, m| m.holds(text, lines, k));
    }
}

/// Service attributes of the compose spec this analyzer does not translate; they are accepted
/// (a valid compose file must parse) and reported when they change behaviour.
const OTHER_SERVICE_KEYS: &[&str] = &[
    "annotations",
    "attach",
    "blkio_config",
    "cap_add",
    "cap_drop",
    "cgroup",
    "cgroup_parent",
    "configs",
    "container_name",
    "cpu_count",
    "cpu_percent",
    "cpu_period",
    "cpu_quota",
    "cpu_rt_period",
    "cpu_rt_runtime",
    "cpu_shares",
    "cpuset",
    "credential_spec",
    "develop",
    "device_cgroup_rules",
    "devices",
    "dns",
    "dns_opt",
    "dns_search",
    "domainname",
    "driver_opts",
    "extends",
    "external_links",
    "extra_hosts",
    "gpus",
    "group_add",
    "hostname",
    "init",
    "ipc",
    "isolation",
    "label_file",
    "links",
    "logging",
    "mac_address",
    "mem_reservation",
    "mem_swappiness",
    "memswap_limit",
    "models",
    "network_mode",
    "networks",
    "oom_kill_disable",
    "oom_score_adj",
    "pid",
    "pids_limit",
    "platform",
    "post_start",
    "pre_stop",
    "privileged",
    "provider",
    "pull_policy",
    "read_only",
    "restart",
    "runtime",
    "secrets",
    "security_opt",
    "shm_size",
    "stdin_open",
    "stop_grace_period",
    "stop_signal",
    "storage_opt",
    "sysctls",
    "tty",
    "ulimits",
    "use_api_socket",
    "userns_mode",
    "uts",
    "volumes_from",
];

/// Ignored attributes worth a warning: they change security or behaviour.
const NOTABLE: &[&str] =
    &["cap_add", "devices", "extends", "network_mode", "pid", "privileged", "secrets", "configs", "volumes_from"];

/// Reads the next key of a map, with its mark when `SPANS`.
///
/// serde_path_to_error cannot name a key read with its span (the error path says `?`), so a
/// file is read with spans first and, only when that fails, again without them for the error.
fn next_key<'de, A: MapAccess<'de>, const SPANS: bool>(
    map: &mut A,
) -> Result<Option<(String, Option<Mark>)>, A::Error> {
    if SPANS {
        Ok(map.next_key::<Spanned<String>>()?.map(|k| {
            let mark = Mark::of(&k);
            (k.value, mark)
        }))
    } else {
        Ok(map.next_key::<String>()?.map(|k| (k, None)))
    }
}

impl<'de> Deserialize<'de> for Service {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        de::DeserializeSeed::deserialize(ServiceSeed::<false>, d)
    }
}

/// Reads a service, with the marks of its keys when `SPANS`.
struct ServiceSeed<const SPANS: bool>;

impl<'de, const SPANS: bool> de::DeserializeSeed<'de> for ServiceSeed<SPANS> {
    type Value = Service;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Service, D::Error> {
        struct V<const SPANS: bool>;
        impl<'de, const SPANS: bool> Visitor<'de> for V<SPANS> {
            type Value = Service;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a service definition (a map)")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Service, A::Error> {
                let mut s = Service::default();
                while let Some((key, mark)) = next_key::<A, SPANS>(&mut map)? {
                    let key = key.as_str();
                    // The last occurrence decides, as for the value.
                    match mark {
                        Some(mark) => s.origin.keys.insert(key.to_owned(), mark),
                        None => s.origin.keys.remove(key),
                    };
                    match key {
                        "image" => s.image = Some(map.next_value::<Text>()?.0),
                        "build" => s.build = Some(map.next_value()?),
                        "command" => s.command = map.next_value()?,
                        "entrypoint" => s.entrypoint = map.next_value()?,
                        "ports" => s.ports = map.next_value::<Entries<Port>>()?.0,
                        "expose" => s.expose = map.next_value::<Entries<Port>>()?.0,
                        "environment" => s.environment = map.next_value::<ListOrMap>()?.0,
                        "env_file" => s.env_files = map.next_value::<EnvFiles>()?.0,
                        "depends_on" => s.depends_on = map.next_value::<NamesOrMap<DependsOn>>()?.0,
                        "healthcheck" => s.healthcheck = map.next_value()?,
                        "volumes" => s.volumes = map.next_value::<Entries<VolumeMount>>()?.0,
                        "tmpfs" => s.tmpfs = map.next_value::<OneOrMany>()?.0,
                        "deploy" => s.deploy = map.next_value()?,
                        "profiles" => s.profiles = map.next_value::<OneOrMany>()?.0,
                        "user" => s.user = map.next_value::<NullableText>()?.0,
                        "working_dir" => s.working_dir = map.next_value::<NullableText>()?.0,
                        "cpus" => s.cpus = map.next_value::<NullableText>()?.0,
                        "mem_limit" => s.mem_limit = map.next_value::<NullableText>()?.0,
                        "scale" => s.scale = Some(map.next_value::<Count>()?.0),
                        "labels" => s.labels = map.next_value::<ListOrMap>()?.0,
                        k if k.starts_with("x-") => {
                            map.next_value::<IgnoredAny>()?;
                        }
                        k if OTHER_SERVICE_KEYS.contains(&k) => {
                            let Switch(on) = map.next_value()?;
                            if NOTABLE.contains(&k) && on {
                                s.ignored.push(k.to_owned());
                            }
                        }
                        other => {
                            let message =
                                format!("unknown service attribute `{other}` (extension fields must start with `x-`)");
                            map.next_value_seed(Reject(message))?;
                        }
                    }
                }
                Ok(s)
            }
        }
        d.deserialize_map(V::<SPANS>)
    }
}

/// `env_file`: one path, a list of paths, or a list of `{path, required}`.
struct EnvFiles(Vec<EnvFile>);

impl<'de> Deserialize<'de> for EnvFiles {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = EnvFiles;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a path or a list of paths")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<EnvFiles, E> {
                Ok(EnvFiles(vec![EnvFile { path: v.to_owned(), required: true }]))
            }
            fn visit_seq<A: de::SeqAccess<'de>>(self, mut seq: A) -> Result<EnvFiles, A::Error> {
                let mut out = Vec::new();
                while let Some(Entry(e)) = seq.next_element::<Entry<EnvFile>>()? {
                    out.extend(e);
                }
                Ok(EnvFiles(out))
            }
        }
        d.deserialize_any(V)
    }
}

/// The `services` map; each service learns its name and, when `SPANS`, where its key is.
struct Services<const SPANS: bool>(BTreeMap<String, Service>);

impl<'de, const SPANS: bool> Deserialize<'de> for Services<SPANS> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<const SPANS: bool>;
        impl<'de, const SPANS: bool> Visitor<'de> for V<SPANS> {
            type Value = Services<SPANS>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a map of services")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Services<SPANS>, A::Error> {
                let mut out = BTreeMap::new();
                while let Some((name, mark)) = next_key::<A, SPANS>(&mut map)? {
                    let mut service = map.next_value_seed(ServiceSeed::<SPANS>)?;
                    service.origin.mark = mark;
                    service.origin.name.clone_from(&name);
                    out.insert(name, service);
                }
                Ok(Services(out))
            }
        }
        d.deserialize_map(V::<SPANS>)
    }
}

/// A compose file read with the marks of its services and their keys (see [`Origin`]).
pub(crate) struct Located(pub ComposeFile);

impl<'de> Deserialize<'de> for Located {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        read_file::<D, true>(d).map(Located)
    }
}

impl<'de> Deserialize<'de> for ComposeFile {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        read_file::<D, false>(d)
    }
}

fn read_file<'de, D: Deserializer<'de>, const SPANS: bool>(d: D) -> Result<ComposeFile, D::Error> {
    struct V<const SPANS: bool>;
    impl<'de, const SPANS: bool> Visitor<'de> for V<SPANS> {
        type Value = ComposeFile;
        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("a compose file (a map with `services`)")
        }
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<ComposeFile, A::Error> {
            let mut file = ComposeFile::default();
            let mut saw_services = false;
            while let Some(key) = map.next_key::<String>()? {
                match key.as_str() {
                    "services" => {
                        saw_services = true;
                        file.services = map.next_value::<Option<Services<SPANS>>>()?.map(|s| s.0).unwrap_or_default();
                    }
                    "volumes" => {
                        let v: Option<BTreeMap<String, Option<TopVolume>>> = map.next_value()?;
                        file.volumes =
                            v.unwrap_or_default().into_iter().map(|(k, v)| (k, v.unwrap_or_default())).collect();
                    }
                    "name" => file.name = Some(map.next_value::<Text>()?.0),
                    "version" | "networks" | "configs" | "secrets" => {
                        map.next_value::<IgnoredAny>()?;
                    }
                    "include" => {
                        return Err(de::Error::custom(
                            "`include` is not supported: merge the included files into this one",
                        ));
                    }
                    k if k.starts_with("x-") => {
                        map.next_value::<IgnoredAny>()?;
                    }
                    other => {
                        let message = format!(
                            "unknown top-level key `{other}` (expected services, volumes, networks, configs, secrets, name or x-*)"
                        );
                        map.next_value_seed(Reject(message))?;
                    }
                }
            }
            if !saw_services {
                return Err(de::Error::custom("no `services:` map"));
            }
            Ok(file)
        }
    }
    d.deserialize_map(V::<SPANS>)
}
