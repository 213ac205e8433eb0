//! Git's smart-HTTP ref discovery, the pure parts: the `info/refs` URL of a repository, and the
//! branches a ref advertisement (the answer to `GET <repo>/info/refs?service=git-upload-pack`)
//! names, with the branch `HEAD` points at.
//!
//! The advertisement is a sequence of pkt-lines (four hex digits of length, `0000` a flush):
//! the `# service=git-upload-pack` header and a flush, then one `<object id> <refname>` line a
//! ref, the first carrying `\0<capabilities>`, then a flush. Protocol v0 without the header
//! and the `version 1` line are read too; protocol v2 (only sent when asked for with
//! `Git-Protocol`) is refused. Anything malformed is an [`AdvertisementError`], never a panic.

use std::collections::BTreeMap;

/// The `Content-Type` of a smart-HTTP ref advertisement for fetching.
pub const ADVERTISEMENT_TYPE: &str = "application/x-git-upload-pack-advertisement";

/// The branches of a repository, as its server advertises them.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Refs {
    /// Branch name (`refs/heads/` removed) → the object id of its head commit.
    pub branches: BTreeMap<String, String>,
    /// The ref `HEAD` points at (`refs/heads/main`), when the server says (the `symref`
    /// capability; a server does not say for an empty repository).
    pub head: Option<String>,
}

impl Refs {
    /// Returns the branch `HEAD` points at (`main`), when the server says and it is a branch.
    pub fn default_branch(&self) -> Option<&str> {
        self.head.as_deref().and_then(|h| h.strip_prefix("refs/heads/"))
    }
}

/// Why a body is not a ref advertisement.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum AdvertisementError {
    /// Nothing came.
    #[error("the ref advertisement is empty")]
    Empty,
    /// The body ends inside a pkt-line.
    #[error("the ref advertisement is cut off (at byte {at})")]
    Truncated {
        /// Offset of the incomplete pkt-line.
        at: usize,
    },
    /// A pkt-line length that is not four hex digits, or one no pkt-line can have.
    #[error("the ref advertisement has an invalid pkt-line length {found:?} at byte {at}")]
    BadLength {
        /// Offset of the length.
        at: usize,
        /// The length as found.
        found: String,
    },
    /// The server sent an `ERR` pkt-line: it refuses, and says why.
    #[error("the git server answered with an error: {0}")]
    Remote(String),
    /// The header names another service.
    #[error("the ref advertisement is for service `{0}`, not git-upload-pack")]
    WrongService(String),
    /// The server answered with protocol v2's capability advertisement.
    #[error("the git server answered in protocol v2, which was not asked for")]
    ProtocolV2,
    /// A pkt-line where a ref was expected is not `<object id> <refname>`.
    #[error("the ref advertisement has a malformed ref line {line:?}: {why}")]
    BadRef {
        /// The line (lossily decoded, shortened).
        line: String,
        /// What is wrong with it.
        why: &'static str,
    },
    /// A delimiter or response-end pkt-line (protocol v2 only) among the refs.
    #[error("the ref advertisement has an unexpected special pkt-line {0:04x} at byte {1}")]
    UnexpectedPkt(usize, usize),
    /// The body ends before the flush-pkt that ends the refs.
    #[error("the ref advertisement does not end with a flush-pkt")]
    MissingFlush,
    /// Bytes after the flush-pkt that ends the refs.
    #[error("{0} bytes follow the end of the ref advertisement")]
    TrailingData(usize),
    /// The body is the text `info/refs` of the dumb protocol (`<object id>\t<refname>`).
    #[error("this is a dumb-protocol info/refs file, not a smart-HTTP ref advertisement")]
    Dumb,
}

/// Why a repository URL cannot be polled.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum UrlError {
    /// Nothing was given.
    #[error("the repository URL is empty")]
    Empty,
    /// A scheme other than http(s), or none.
    #[error(
        "`{0}`: only http:// and https:// repository URLs are supported (not SSH or git://); give the repository's HTTPS clone URL"
    )]
    Scheme(String),
    /// User name or password in the URL.
    #[error("`{0}` embeds credentials: remove them from the URL and put them in the credentials Secret")]
    Credentials(String),
    /// Not parseable, or without a host.
    #[error("`{0}` is not a repository URL: {1}")]
    Invalid(String, String),
    /// A query or fragment, which `info/refs` cannot be appended to.
    #[error("`{0}` has a query or fragment: give the repository's clone URL without one")]
    Query(String),
}

/// Returns the URL of the ref advertisement of the repository at `repo_url`: the URL (a
/// trailing `/` removed, a `.git` suffix kept as given) with `/info/refs?service=git-upload-pack`
/// appended. Refuses other schemes than http(s), and credentials in the URL (they belong in a
/// Secret); errors never repeat them.
pub fn info_refs_url(repo_url: &str) -> Result<String, UrlError> {
    let url = repo_url.trim();
    if url.is_empty() {
        return Err(UrlError::Empty);
    }
    let shown = redact(url);
    let Some((scheme, rest)) = url.split_once("://") else { return Err(UrlError::Scheme(shown)) };
    if !scheme.eq_ignore_ascii_case("http") && !scheme.eq_ignore_ascii_case("https") {
        return Err(UrlError::Scheme(shown));
    }
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    if authority.contains('@') {
        return Err(UrlError::Credentials(shown));
    }
    if rest.contains(['?', '#']) {
        return Err(UrlError::Query(shown));
    }
    let uri: http::Uri =
        url.parse().map_err(|e: http::uri::InvalidUri| UrlError::Invalid(shown.clone(), e.to_string()))?;
    if uri.host().is_none_or(str::is_empty) {
        return Err(UrlError::Invalid(shown, "it names no host".into()));
    }
    Ok(format!("{}/info/refs?service=git-upload-pack", url.trim_end_matches('/')))
}

/// `url` with anything before an `@` in its authority replaced by `***`.
fn redact(url: &str) -> String {
    let start = url.find("://").map_or(0, |i| i + 3);
    let end = url[start..].find(['/', '?', '#']).map_or(url.len(), |i| start + i);
    match url[start..end].rfind('@') {
        Some(at) => format!("{}***{}", &url[..start], &url[start + at..]),
        None => url.to_owned(),
    }
}

enum Pkt<'a> {
    Flush,
    /// `0001` (delimiter) or `0002` (response end), of protocol v2.
    Special(usize),
    Data(&'a [u8]),
}

/// Reads pkt-lines off a body.
struct Reader<'a> {
    body: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    /// The next pkt-line (its trailing LF removed), `None` at the end of the body; an `ERR`
    /// pkt-line is the server's error.
    fn next(&mut self) -> Result<Option<(usize, Pkt<'a>)>, AdvertisementError> {
        let at = self.pos;
        let rest = &self.body[at..];
        if rest.is_empty() {
            return Ok(None);
        }
        let Some(digits) = rest.get(..4) else { return Err(AdvertisementError::Truncated { at }) };
        let bad = || AdvertisementError::BadLength { at, found: String::from_utf8_lossy(digits).into_owned() };
        let len = std::str::from_utf8(digits)
            .ok()
            .filter(|d| d.bytes().all(|b| b.is_ascii_hexdigit()))
            .and_then(|d| usize::from_str_radix(d, 16).ok())
            .ok_or_else(bad)?;
        let pkt = match len {
            0 => Pkt::Flush,
            1 | 2 => Pkt::Special(len),
            3 => return Err(bad()),
            _ => {
                let data = rest.get(4..len).ok_or(AdvertisementError::Truncated { at })?;
                let data = data.strip_suffix(b"\n").unwrap_or(data);
                if let Some(message) = data.strip_prefix(b"ERR ") {
                    return Err(AdvertisementError::Remote(shorten(message)));
                }
                Pkt::Data(data)
            }
        };
        self.pos += len.max(4);
        Ok(Some((at, pkt)))
    }
}

/// `bytes` as text for a message: lossily decoded, control characters escaped, at most 100
/// characters.
fn shorten(bytes: &[u8]) -> String {
    let text = String::from_utf8_lossy(bytes);
    let mut out: String = text.chars().take(100).flat_map(char::escape_debug).collect();
    if text.chars().nth(100).is_some() {
        out.push('…');
    }
    out
}

fn is_object_id(id: &[u8]) -> bool {
    matches!(id.len(), 40 | 64) && id.iter().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// Reads the ref advertisement `body`: the branches and where `HEAD` points.
pub fn parse_advertisement(body: &[u8]) -> Result<Refs, AdvertisementError> {
    if body.is_empty() {
        return Err(AdvertisementError::Empty);
    }
    if body.get(40) == Some(&b'\t') && body.get(..40).is_some_and(is_object_id) {
        return Err(AdvertisementError::Dumb);
    }
    let mut reader = Reader { body, pos: 0 };
    let mut pkt = reader.next()?;
    if let Some((_, Pkt::Data(line))) = pkt
        && let Some(service) = line.strip_prefix(b"# service=")
    {
        if service != b"git-upload-pack" {
            return Err(AdvertisementError::WrongService(shorten(service)));
        }
        // The header's flush is required by the protocol; a server without it is still read.
        pkt = reader.next()?;
        if let Some((_, Pkt::Flush)) = pkt {
            pkt = reader.next()?;
        }
    }
    match pkt {
        Some((_, Pkt::Data(b"version 1"))) => pkt = reader.next()?,
        Some((_, Pkt::Data(b"version 2"))) => return Err(AdvertisementError::ProtocolV2),
        _ => {}
    }
    let mut refs = Refs::default();
    let mut first = true;
    loop {
        match pkt {
            None => return Err(AdvertisementError::MissingFlush),
            Some((_, Pkt::Flush)) => break,
            Some((at, Pkt::Special(n))) => return Err(AdvertisementError::UnexpectedPkt(n, at)),
            Some((_, Pkt::Data(line))) => {
                read_ref(line, first, &mut refs)?;
                first = false;
            }
        }
        pkt = reader.next()?;
    }
    match body.len() - reader.pos {
        0 => Ok(refs),
        n => Err(AdvertisementError::TrailingData(n)),
    }
}

/// Reads one ref line into `refs`; only the `first` carries capabilities.
fn read_ref(line: &[u8], first: bool, refs: &mut Refs) -> Result<(), AdvertisementError> {
    let bad = |why| AdvertisementError::BadRef { line: shorten(line), why };
    if let Some(id) = line.strip_prefix(b"shallow ") {
        return if is_object_id(id) { Ok(()) } else { Err(bad("a shallow line without an object id")) };
    }
    let (reference, capabilities) = match line.iter().position(|&b| b == 0) {
        Some(nul) if first => (&line[..nul], Some(&line[nul + 1..])),
        Some(_) => return Err(bad("capabilities after the first ref")),
        None => (line, None),
    };
    let space = reference.iter().position(|&b| b == b' ').ok_or_else(|| bad("no space after the object id"))?;
    let (id, name) = (&reference[..space], &reference[space + 1..]);
    if !is_object_id(id) {
        return Err(bad("not an object id"));
    }
    let name = std::str::from_utf8(name).map_err(|_| bad("the ref name is not UTF-8"))?;
    if name.is_empty() || name.chars().any(|c| c.is_control() || c == ' ') {
        return Err(bad("not a ref name"));
    }
    if let Some(capabilities) = capabilities {
        let capabilities = std::str::from_utf8(capabilities).map_err(|_| bad("the capabilities are not UTF-8"))?;
        refs.head = capabilities
            .split(' ')
            .find_map(|c| c.strip_prefix("symref=HEAD:"))
            .filter(|target| !target.is_empty())
            .map(str::to_owned);
    }
    // Peeled tags (`^{}`) and the empty repository's `capabilities^{}` name no branch.
    if let Some(branch) = name.strip_prefix("refs/heads/")
        && !branch.is_empty()
        && !name.ends_with("^{}")
    {
        let id = std::str::from_utf8(id).map_err(|_| bad("not an object id"))?;
        refs.branches.insert(branch.to_owned(), id.to_owned());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    const MAIN: &str = "dd1085b87c9f298aa60fff9f4b90223b7ee57e81";
    const FEATURE: &str = "b1df83ed1d6c7925d596b3577f489c7dac49fefd";
    const TAG: &str = "43ec1fc877b825775e312cf5e494d846c581de43";
    const ZERO: &str = "0000000000000000000000000000000000000000";

    /// `lines` as pkt-lines; `None` is a flush.
    fn pkts(lines: &[Option<&str>]) -> Vec<u8> {
        let mut out = Vec::new();
        for line in lines {
            match line {
                Some(l) => out.extend(format!("{:04x}{l}", l.len() + 4).into_bytes()),
                None => out.extend(b"0000"),
            }
        }
        out
    }

    /// What git 2.39's `git http-backend` answers for a repository with two branches, a
    /// lightweight and an annotated tag.
    fn git_http_backend() -> Vec<u8> {
        let caps = "multi_ack thin-pack side-band side-band-64k ofs-delta shallow deepen-since deepen-not \
                    deepen-relative no-progress include-tag multi_ack_detailed no-done symref=HEAD:refs/heads/main \
                    object-format=sha1 agent=git/2.39.5";
        pkts(&[
            Some("# service=git-upload-pack\n"),
            None,
            Some(&format!("{MAIN} HEAD\0{caps}\n")),
            Some(&format!("{FEATURE} refs/heads/feature/x\n")),
            Some(&format!("{MAIN} refs/heads/main\n")),
            Some(&format!("{FEATURE} refs/tags/light\n")),
            Some(&format!("{TAG} refs/tags/v1\n")),
            Some(&format!("{FEATURE} refs/tags/v1^{{}}\n")),
            None,
        ])
    }

    fn branches(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs.iter().map(|(b, id)| ((*b).to_owned(), (*id).to_owned())).collect()
    }

    #[test]
    fn a_real_advertisement_yields_its_branches_and_head() {
        let refs = parse_advertisement(&git_http_backend()).unwrap();
        assert_eq!(refs.branches, branches(&[("feature/x", FEATURE), ("main", MAIN)]));
        assert_eq!(refs.head.as_deref(), Some("refs/heads/main"));
        assert_eq!(refs.default_branch(), Some("main"));
    }

    #[test]
    fn the_exact_bytes_of_a_real_server_parse() {
        // Byte for byte what git-http-backend sent (lengths as it wrote them, not computed here).
        let body = format!(
            "001e# service=git-upload-pack\n0000\
             010b{MAIN} HEAD\0multi_ack thin-pack side-band side-band-64k ofs-delta shallow deepen-since \
             deepen-not deepen-relative no-progress include-tag multi_ack_detailed no-done \
             symref=HEAD:refs/heads/main object-format=sha1 agent=git/2.39.5\n\
             0042{FEATURE} refs/heads/feature/x\n\
             003d{MAIN} refs/heads/main\n\
             003d{FEATURE} refs/tags/light\n\
             003a{TAG} refs/tags/v1\n\
             003d{FEATURE} refs/tags/v1^{{}}\n\
             0000"
        );
        let refs = parse_advertisement(body.as_bytes()).unwrap();
        assert_eq!(refs, parse_advertisement(&git_http_backend()).unwrap());
        assert_eq!(refs.branches, branches(&[("feature/x", FEATURE), ("main", MAIN)]));
    }

    #[test]
    fn protocol_v0_without_the_service_header_and_v1_are_read() {
        let v0 = pkts(&[Some(&format!("{MAIN} refs/heads/main\0ofs-delta\n")), None]);
        let refs = parse_advertisement(&v0).unwrap();
        assert_eq!(refs.branches, branches(&[("main", MAIN)]));
        assert_eq!(refs.head, None, "no symref capability, no HEAD");
        let v1 = pkts(&[
            Some("# service=git-upload-pack\n"),
            None,
            Some("version 1\n"),
            Some(&format!("{MAIN} HEAD\0symref=HEAD:refs/heads/main\n")),
            Some(&format!("{MAIN} refs/heads/main\n")),
            Some(&format!("shallow {FEATURE}\n")),
            None,
        ]);
        assert_eq!(parse_advertisement(&v1).unwrap().branches, branches(&[("main", MAIN)]));
    }

    #[test]
    fn an_empty_repository_has_no_branches() {
        // git 2.39 sends no ref at all; older servers (and JGit) the `capabilities^{}` line.
        let modern = pkts(&[Some("# service=git-upload-pack\n"), None, None]);
        assert_eq!(parse_advertisement(&modern).unwrap(), Refs::default());
        let classic = pkts(&[
            Some("# service=git-upload-pack\n"),
            None,
            Some(&format!("{ZERO} capabilities^{{}}\0multi_ack symref=HEAD:refs/heads/main\n")),
            None,
        ]);
        let refs = parse_advertisement(&classic).unwrap();
        assert!(refs.branches.is_empty());
        assert_eq!(refs.default_branch(), Some("main"));
        assert_eq!(parse_advertisement(b"0000").unwrap(), Refs::default());
    }

    #[test]
    fn sha256_object_ids_are_read() {
        let id = "a".repeat(64);
        let body = pkts(&[Some(&format!("{id} refs/heads/main\0object-format=sha256\n")), None]);
        assert_eq!(parse_advertisement(&body).unwrap().branches, branches(&[("main", &id)]));
    }

    #[test]
    fn the_servers_error_is_passed_on() {
        let body =
            pkts(&[Some("# service=git-upload-pack\n"), None, Some("ERR access denied or repository not exported\n")]);
        assert_eq!(
            parse_advertisement(&body),
            Err(AdvertisementError::Remote("access denied or repository not exported".into()))
        );
        assert_eq!(
            parse_advertisement(&pkts(&[Some("ERR upload-pack: not our ref")])),
            Err(AdvertisementError::Remote("upload-pack: not our ref".into()))
        );
    }

    #[test]
    fn malformed_advertisements_are_typed_errors() {
        use AdvertisementError as E;
        assert_eq!(parse_advertisement(b""), Err(E::Empty));
        assert_eq!(parse_advertisement(b"00"), Err(E::Truncated { at: 0 }));
        assert_eq!(parse_advertisement(b"0010abc"), Err(E::Truncated { at: 0 }));
        assert_eq!(parse_advertisement(b"zzzz"), Err(E::BadLength { at: 0, found: "zzzz".into() }));
        assert_eq!(parse_advertisement(b"0003"), Err(E::BadLength { at: 0, found: "0003".into() }));
        assert_eq!(parse_advertisement(b"+001"), Err(E::BadLength { at: 0, found: "+001".into() }));
        let whole = git_http_backend();
        assert_eq!(parse_advertisement(&whole[..whole.len() - 4]), Err(E::MissingFlush));
        assert_eq!(parse_advertisement(&[&whole[..], b"0000"].concat()), Err(E::TrailingData(4)));
        let receive = pkts(&[Some("# service=git-receive-pack\n"), None, None]);
        assert_eq!(parse_advertisement(&receive), Err(E::WrongService("git-receive-pack".into())));
        let v2 = pkts(&[Some("version 2\n"), Some("ls-refs=unborn\n"), None]);
        assert_eq!(parse_advertisement(&v2), Err(E::ProtocolV2));
        let bad_id = pkts(&[Some("not-an-object-id refs/heads/main\n"), None]);
        assert!(matches!(parse_advertisement(&bad_id), Err(E::BadRef { why: "not an object id", .. })));
        let no_name = pkts(&[Some(&format!("{MAIN}\n")), None]);
        assert!(matches!(parse_advertisement(&no_name), Err(E::BadRef { .. })));
        let late_caps = pkts(&[Some(&format!("{MAIN} HEAD\n")), Some(&format!("{MAIN} refs/heads/a\0x\n")), None]);
        assert!(matches!(parse_advertisement(&late_caps), Err(E::BadRef { .. })));
        let delim = [pkts(&[Some(&format!("{MAIN} HEAD\n"))]), b"0001".to_vec()].concat();
        assert!(matches!(parse_advertisement(&delim), Err(E::UnexpectedPkt(1, _))));
        let dumb = format!("{MAIN}\trefs/heads/main\n{FEATURE}\trefs/tags/v1\n");
        assert_eq!(parse_advertisement(dumb.as_bytes()), Err(E::Dumb));
        assert!(matches!(parse_advertisement(b"<html><body>Sign in</body></html>"), Err(E::BadLength { .. })));
    }

    #[test]
    fn errors_show_a_short_escaped_line() {
        let long = format!("{} refs/heads/\u{7}{}", MAIN, "x".repeat(300));
        let Err(AdvertisementError::BadRef { line, .. }) = parse_advertisement(&pkts(&[Some(&long), None])) else {
            panic!("a control character is not a ref name");
        };
        assert!(line.contains("\\u{7}") && line.ends_with('…') && line.chars().count() < 120, "{line}");
    }

    #[test]
    fn info_refs_url_appends_the_service_path() {
        let want = "https://github.com/kapsa/app.git/info/refs?service=git-upload-pack";
        assert_eq!(info_refs_url("https://github.com/kapsa/app.git").unwrap(), want);
        assert_eq!(info_refs_url(" https://github.com/kapsa/app.git/ ").unwrap(), want);
        assert_eq!(
            info_refs_url("http://127.0.0.1:8080/git/app").unwrap(),
            "http://127.0.0.1:8080/git/app/info/refs?service=git-upload-pack",
            "no .git added"
        );
        assert_eq!(
            info_refs_url("HTTPS://git.example/").unwrap(),
            "HTTPS://git.example/info/refs?service=git-upload-pack"
        );
    }

    #[test]
    fn info_refs_url_refuses_what_cannot_be_polled() {
        assert_eq!(info_refs_url("  "), Err(UrlError::Empty));
        for url in
            ["git@github.com:kapsa/app.git", "ssh://git@github.com/kapsa/app.git", "git://host/app", "github.com/a"]
        {
            assert!(matches!(info_refs_url(url), Err(UrlError::Scheme(_))), "{url}");
        }
        assert!(matches!(info_refs_url("https://host/app?ref=main"), Err(UrlError::Query(_))));
        assert!(matches!(info_refs_url("https://host/app#main"), Err(UrlError::Query(_))));
        assert!(matches!(info_refs_url("https:///app"), Err(UrlError::Invalid(..))));
        assert!(matches!(info_refs_url("https://ho st/app"), Err(UrlError::Invalid(..))));
    }

    #[test]
    fn credentials_in_the_url_are_refused_and_never_repeated() {
        for url in [
            "https://user:s3cret@github.com/kapsa/app.git",
            "https://ghp_s3cret@github.com/kapsa/app.git",
            "https://user:p@s3cret@github.com/a",
        ] {
            let error = info_refs_url(url).unwrap_err();
            assert!(matches!(error, UrlError::Credentials(_)), "{url}: {error:?}");
            let message = error.to_string();
            assert!(!message.contains("s3cret"), "{message}");
            assert!(message.contains("***@github.com") && message.contains("Secret"), "{message}");
        }
        // Even when the URL is refused for another reason first.
        let message = info_refs_url("ftp://user:s3cret@host/a").unwrap_err().to_string();
        assert!(!message.contains("s3cret"), "{message}");
    }

    fn encode(branches: &BTreeMap<String, String>, head: Option<&str>, header: bool) -> Vec<u8> {
        let mut lines: Vec<Option<String>> = Vec::new();
        if header {
            lines.extend([Some("# service=git-upload-pack\n".to_owned()), None]);
        }
        let caps = head.map(|h| format!("ofs-delta symref=HEAD:{h} agent=x")).unwrap_or_else(|| "ofs-delta".into());
        let mut all: Vec<(String, &str)> =
            branches.iter().map(|(b, id)| (format!("refs/heads/{b}"), id.as_str())).collect();
        all.push(("refs/tags/v1".into(), TAG));
        all.push(("refs/tags/v1^{}".into(), MAIN));
        for (i, (name, id)) in all.iter().enumerate() {
            let nul = if i == 0 { format!("\0{caps}") } else { String::new() };
            lines.push(Some(format!("{id} {name}{nul}\n")));
        }
        lines.push(None);
        let refs: Vec<Option<&str>> = lines.iter().map(Option::as_deref).collect();
        pkts(&refs)
    }

    proptest! {
        /// Arbitrary bytes are an answer or an error, never a panic.
        #[test]
        fn arbitrary_bytes_never_panic(body in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = parse_advertisement(&body);
        }

        /// Bytes that look like pkt-lines (the parser's deeper paths) never panic either.
        #[test]
        fn arbitrary_pkt_lines_never_panic(lines in proptest::collection::vec(
            proptest::option::of("[0-9a-f]{40} [ -~]{0,20}(\0[ -~]{0,20})?\n?|ERR .*|# service=.*|version [0-9]"), 0..8)
        ) {
            let refs: Vec<Option<&str>> = lines.iter().map(Option::as_deref).collect();
            let _ = parse_advertisement(&pkts(&refs));
        }

        /// Any advertisement reads back as the branches it advertises, and every strict prefix
        /// of it is an error, never a shorter list of branches.
        #[test]
        fn advertisements_read_back_and_their_prefixes_fail(
            branches in proptest::collection::btree_map("[a-z0-9][a-z0-9/._-]{0,15}", "[0-9a-f]{40}", 0..6),
            head in proptest::option::of("refs/heads/[a-z]{1,8}"),
            header in any::<bool>(),
        ) {
            let body = encode(&branches, head.as_deref(), header);
            let refs = parse_advertisement(&body).unwrap();
            prop_assert_eq!(&refs.branches, &branches);
            prop_assert_eq!(refs.head.as_deref(), head.as_deref());
            for end in 0..body.len() {
                prop_assert!(parse_advertisement(&body[..end]).is_err(), "prefix of {} bytes", end);
            }
        }

        /// No URL with credentials passes, and the error never repeats the password.
        #[test]
        fn urls_with_credentials_never_pass(
            user in "[a-zA-Z0-9_.-]{1,10}", password in "[a-zA-Z0-9_.~-]{6,12}", path in "(/[a-z]{1,6}){0,3}/?",
        ) {
            let error = info_refs_url(&format!("https://{user}:{password}@git.example{path}")).unwrap_err();
            prop_assert!(matches!(error, UrlError::Credentials(_)));
            let secret = format!(":{password}@");
            prop_assert!(!error.to_string().contains(&secret));
        }
    }
}
