//! What is known about common third-party images: the user they run as, their port, where
//! they keep data, how to probe them. Without it, hardened defaults (non-root, read-only root
//! filesystem) would break them.

/// Facts about a well-known image.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KnownImage {
    /// Backing-service kind, e.g. `postgresql`.
    pub service: &'static str,
    /// Dependency type: `database`, `cache`, `queue`.
    pub kind: &'static str,
    /// UID of the image's service user.
    pub uid: i64,
    /// Main port.
    pub port: u16,
    /// Directory holding data.
    pub data_dir: &'static str,
    /// Other directories it writes to.
    pub scratch: &'static [&'static str],
    /// Health check command (exec form), when better than a TCP check.
    pub probe: &'static [&'static str],
    /// Environment the image needs to run on Kubernetes volumes.
    pub env: &'static [(&'static str, &'static str)],
}

const TABLE: &[(&[&str], KnownImage)] = &[
    (
        &["postgres", "postgis/postgis", "bitnami/postgresql"],
        KnownImage {
            service: "postgresql",
            kind: "database",
            uid: 999,
            port: 5432,
            data_dir: "/var/lib/postgresql/data",
            scratch: &["/var/run/postgresql"],
            probe: &["/bin/sh", "-c", "pg_isready -U \"${POSTGRES_USER:-postgres}\" -h 127.0.0.1"],
            // A volume's root holds lost+found, which initdb refuses; a subdirectory does not.
            env: &[("PGDATA", "/var/lib/postgresql/data/pgdata")],
        },
    ),
    (
        &["mysql", "mariadb"],
        KnownImage {
            service: "mysql",
            kind: "database",
            uid: 999,
            port: 3306,
            data_dir: "/var/lib/mysql",
            scratch: &["/var/run/mysqld"],
            probe: &["/bin/sh", "-c", "mysqladmin ping -h 127.0.0.1 --silent"],
            env: &[],
        },
    ),
    (
        &["mongo"],
        KnownImage {
            service: "mongodb",
            kind: "database",
            uid: 999,
            port: 27017,
            data_dir: "/data/db",
            scratch: &["/data/configdb"],
            probe: &[],
            env: &[],
        },
    ),
    (
        &["redis", "valkey/valkey", "bitnami/redis"],
        KnownImage {
            service: "redis",
            kind: "cache",
            uid: 999,
            port: 6379,
            data_dir: "/data",
            scratch: &[],
            probe: &["redis-cli", "ping"],
            env: &[],
        },
    ),
    (
        &["memcached"],
        KnownImage {
            service: "memcached",
            kind: "cache",
            uid: 11211,
            port: 11211,
            data_dir: "",
            scratch: &[],
            probe: &[],
            env: &[],
        },
    ),
    (
        &["rabbitmq"],
        KnownImage {
            service: "rabbitmq",
            kind: "queue",
            uid: 999,
            port: 5672,
            data_dir: "/var/lib/rabbitmq",
            scratch: &[],
            probe: &["rabbitmq-diagnostics", "-q", "ping"],
            env: &[],
        },
    ),
    (
        &["nats"],
        KnownImage {
            service: "nats",
            kind: "queue",
            uid: 65534,
            port: 4222,
            data_dir: "",
            scratch: &[],
            probe: &[],
            env: &[],
        },
    ),
];

/// Returns what is known about `image` (`postgres:16-alpine`, `docker.io/library/redis:7`).
pub fn lookup(image: &str) -> Option<&'static KnownImage> {
    let without_digest = image.split('@').next().unwrap_or(image);
    let last = without_digest.rsplit('/').next().unwrap_or(without_digest);
    let repo_tail = last.split(':').next().unwrap_or(last);
    let path = without_digest.rsplit_once(':').filter(|(_, tag)| !tag.contains('/')).map_or(without_digest, |(p, _)| p);
    let path = path.strip_prefix("docker.io/").unwrap_or(path);
    let path = path.strip_prefix("library/").unwrap_or(path);
    TABLE
        .iter()
        .find(|(names, _)| {
            names.iter().any(|n| *n == path || (!n.contains('/') && *n == repo_tail && path == repo_tail))
        })
        .map(|(_, k)| k)
}

/// Returns the UID of a well-known named user, or `None`.
pub fn named_user_uid(user: &str) -> Option<i64> {
    Some(match user {
        "nobody" => 65534,
        "nonroot" => 65532,
        "node" => 1000,
        "www-data" => 33,
        "postgres" | "redis" | "mysql" => 999,
        "app" => 1654,
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lookup_by_repository() {
        assert_eq!(lookup("postgres:16-alpine").unwrap().port, 5432);
        assert_eq!(lookup("docker.io/library/redis:7").unwrap().service, "redis");
        assert_eq!(lookup("bitnami/redis:7.2").unwrap().service, "redis");
        assert!(lookup("ghcr.io/acme/postgres-exporter:1").is_none());
        assert!(lookup("registry:5000/postgres:16").is_none());
    }
}
