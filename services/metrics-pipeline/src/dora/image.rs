//! Container image references as deployments carry them: the repository, the tag, and the
//! commit the tag names. The tag is the text after the last `:` of the name's last path
//! segment, so a registry port (`registry:5000/app`) is never taken for one; a digest
//! (`@sha256:…`) is set apart first and never read as a commit.

use persys_proto::metrics::v1::DeployedImage;

/// Longest reference accepted (Docker's own limit on a name is 255; tags add 128).
const MAX_LEN: usize = 512;

/// One parsed reference.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ImageRef {
    /// Everything before the tag and digest, e.g. `quay.io/acme/ui`.
    pub repository: String,
    /// The tag; empty when there is none.
    pub tag: String,
    /// The digest (`sha256:…`); empty when there is none.
    pub digest: String,
}

/// Parses `reference`; `Err` says what is wrong with it.
pub fn parse(reference: &str) -> Result<ImageRef, String> {
    if reference.is_empty() {
        return Err("empty image reference".into());
    }
    if reference.len() > MAX_LEN {
        return Err(format!("image reference longer than {MAX_LEN} characters"));
    }
    if let Some(c) = reference.chars().find(|c| c.is_whitespace() || c.is_control()) {
        return Err(format!("image reference contains {c:?}"));
    }
    let (name, digest) = match reference.split_once('@') {
        Some((name, digest)) => {
            let (algorithm, hex) =
                digest.split_once(':').ok_or_else(|| format!("digest {digest:?} is not <algorithm>:<hex>"))?;
            if algorithm.is_empty()
                || hex.len() < 32
                || !hex.chars().all(|c| c.is_ascii_hexdigit())
                || !algorithm.chars().all(|c| c.is_ascii_alphanumeric() || "+._-".contains(c))
            {
                return Err(format!("digest {digest:?} is not <algorithm>:<hex>"));
            }
            (name, digest)
        }
        None => (reference, ""),
    };
    let last_segment_start = name.rfind('/').map_or(0, |i| i + 1);
    let (repository, tag) = match name[last_segment_start..].rfind(':') {
        Some(i) => (&name[..last_segment_start + i], &name[last_segment_start + i + 1..]),
        None => (name, ""),
    };
    if repository.is_empty() || repository.split('/').any(str::is_empty) {
        return Err(format!("{reference:?} has an empty repository or path segment"));
    }
    if tag.is_empty() && name[last_segment_start..].contains(':') {
        return Err(format!("{reference:?} ends its name with ':' but has no tag"));
    }
    if !tag.chars().all(|c| c.is_ascii_alphanumeric() || "._-".contains(c)) || tag.len() > 128 {
        return Err(format!("tag {tag:?} may hold only letters, digits, '.', '_' and '-' (at most 128)"));
    }
    if tag.starts_with(['.', '-']) {
        return Err(format!("tag {tag:?} must start with a letter, a digit or '_'"));
    }
    Ok(ImageRef { repository: repository.to_owned(), tag: tag.to_owned(), digest: digest.to_owned() })
}

/// The commit SHA a tag names, lowercased, when it is 7 to 40 hex characters.
pub fn commit_of_tag(tag: &str) -> Option<String> {
    ((7..=40).contains(&tag.len()) && tag.chars().all(|c| c.is_ascii_hexdigit())).then(|| tag.to_ascii_lowercase())
}

/// The image as a deployment records it before commits are resolved: the candidate SHA in
/// `commit_sha`, or why there is none in `skip_reason`.
pub fn deployed(reference: &str) -> DeployedImage {
    match parse(reference) {
        Err(why) => DeployedImage { image: reference.to_owned(), skip_reason: why, ..DeployedImage::default() },
        Ok(r) => {
            let sha = commit_of_tag(&r.tag);
            let skip_reason = match (&sha, r.tag.is_empty()) {
                (Some(_), _) => String::new(),
                (None, true) => "no tag: a digest or an untagged reference names no commit".into(),
                (None, false) => format!("tag {:?} is not a commit SHA (7-40 hex characters)", r.tag),
            };
            DeployedImage {
                image: reference.to_owned(),
                repository: r.repository,
                tag: r.tag,
                commit_sha: sha.unwrap_or_default(),
                skip_reason,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{commit_of_tag, deployed, parse};

    #[test]
    fn tags_come_from_the_last_segment_never_a_registry_port() {
        let r = parse("registry.local:5000/acme/ui:3f9a1c2").unwrap();
        assert_eq!((r.repository.as_str(), r.tag.as_str()), ("registry.local:5000/acme/ui", "3f9a1c2"));
        let r = parse("registry.local:5000/acme/ui").unwrap();
        assert_eq!((r.repository.as_str(), r.tag.as_str()), ("registry.local:5000/acme/ui", ""));
        let r = parse("ui").unwrap();
        assert_eq!((r.repository.as_str(), r.tag.as_str()), ("ui", ""));
    }

    #[test]
    fn digests_are_set_apart_and_name_no_commit() {
        let hex = "a".repeat(64);
        let r = parse(&format!("quay.io/acme/ui@sha256:{hex}")).unwrap();
        assert_eq!(r.tag, "");
        assert_eq!(r.digest, format!("sha256:{hex}"));
        let d = deployed(&format!("quay.io/acme/ui@sha256:{hex}"));
        assert_eq!(d.commit_sha, "");
        assert!(d.skip_reason.contains("digest"), "{}", d.skip_reason);
        let d = deployed(&format!("quay.io/acme/ui:0123abc@sha256:{hex}"));
        assert_eq!((d.tag.as_str(), d.commit_sha.as_str()), ("0123abc", "0123abc"));
    }

    #[test]
    fn only_7_to_40_hex_characters_are_a_commit() {
        assert_eq!(commit_of_tag("3F9A1C2").as_deref(), Some("3f9a1c2"));
        assert_eq!(commit_of_tag(&"b".repeat(40)).as_deref(), Some("b".repeat(40).as_str()));
        for tag in ["3f9a1c", "", "v1.2.3", "latest", "3f9a1c2-dirty", &"c".repeat(41)] {
            assert_eq!(commit_of_tag(tag), None, "{tag}");
        }
        assert!(deployed("quay.io/acme/ui:latest").skip_reason.contains("not a commit SHA"));
    }

    #[test]
    fn malformed_references_say_what_is_wrong() {
        for (bad, says) in [
            ("", "empty"),
            ("quay.io/acme/ui:", "no tag"),
            ("quay.io//ui:abc1234", "empty repository"),
            ("ui:abc 1234", "contains"),
            ("ui@sha256", "digest"),
            ("ui@sha256:xyz", "digest"),
            ("ui:-abc1234", "must start"),
            ("ui:ab$c", "only letters"),
        ] {
            let why = parse(bad).unwrap_err();
            assert!(why.contains(says), "{bad:?}: {why}");
            assert_eq!(deployed(bad).skip_reason, why);
        }
    }
}
