//! Rules of the workload contract that both the scheduler (validation, with field violations)
//! and the agent (enforcement, before anything reaches Docker or the host) check, so the two
//! cannot drift apart.

/// Image prefix that selects the process driver: the instance runs as a host process.
pub const PROCESS_SCHEME: &str = "process://";

/// Returns whether a spec's image selects the process driver: an empty image or one starting
/// with `process://`.
pub fn is_process_image(image: &str) -> bool {
    image.is_empty() || image.starts_with(PROCESS_SCHEME)
}

/// Returns whether `name` may name a volume in `VolumeMount.source`: 1-63 ASCII letters, digits,
/// `_` or `-`, starting with a letter or digit. (Agents keep each owner's volumes apart as
/// `persys-<owner>.<name>`; a name has no `.`, so it can never spell another owner's.)
pub fn valid_volume_name(name: &str) -> bool {
    (1..=63).contains(&name.len())
        && name.starts_with(|c: char| c.is_ascii_alphanumeric())
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

/// Returns whether `source` is a host path (a bind mount) rather than a volume name.
pub fn is_host_path(source: &str) -> bool {
    source.starts_with('/')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn volume_names_have_no_path_or_separator() {
        for ok in ["data", "pg-data_1", "A", &"x".repeat(63)] {
            assert!(valid_volume_name(ok), "{ok}");
        }
        for bad in ["", "-x", "_x", ".x", "a.b", "a/b", "a:b", "../x", "a b", &"x".repeat(64)] {
            assert!(!valid_volume_name(bad), "{bad}");
        }
    }

    #[test]
    fn empty_and_process_images_select_the_process_driver() {
        assert!(is_process_image("") && is_process_image("process:///bin/sleep"));
        assert!(!is_process_image("busybox") && !is_process_image("registry/process:1"));
    }
}
