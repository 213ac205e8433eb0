//! What PersonaService and ProjectService share: pages and their tokens, label selectors,
//! Kubernetes errors as statuses, the API server's current version, and watches turned into
//! resumable server streams.

use std::{collections::HashMap, pin::Pin, time::Duration};

use futures::{Stream, StreamExt, TryStreamExt};
use kube::{
    Api, Resource, ResourceExt,
    api::{ListParams, WatchEvent, WatchParams},
};
use persys_kit::error::Violations;
use persys_proto::common::v1::{LabelSelector, LabelSelectorOperator, PageRequest, PageResponse, WatchEventType};
use tonic::Status;

use crate::access::Sight;

/// The page size when a request asks for none.
pub(crate) const DEFAULT_PAGE: usize = 100;
/// The largest page served.
pub(crate) const MAX_PAGE: usize = 1000;
/// How long a call waits for the caches' first list after start.
pub(crate) const CACHE_WAIT: Duration = Duration::from_secs(10);

/// A Kubernetes error of a list or watch as the call's status: OUT_OF_RANGE for a resource
/// version too old, INVALID_ARGUMENT for an unreadable one, UNAVAILABLE otherwise.
pub(crate) fn kube_status(e: kube::Error) -> Status {
    match e {
        kube::Error::Api(s) if s.code == 410 => Status::out_of_range(format!(
            "resource version too old: {}; list again and watch from the version it returns",
            s.message
        )),
        kube::Error::Api(s) if s.code == 400 && s.message.contains("resource version") => {
            Status::invalid_argument(format!("since_resource_version: {}", s.message))
        }
        other => Status::unavailable(format!("Kubernetes API: {other}")),
    }
}

/// An object's place in namespace-and-name order, and its page token.
pub(crate) fn key<K: Resource>(o: &K) -> String {
    format!("{}/{}", o.meta().namespace.as_deref().unwrap_or_default(), o.meta().name.as_deref().unwrap_or_default())
}

/// The page size a request asks for (the default for 0, clamped to the maximum).
pub(crate) fn page_size(v: &mut Violations, page: Option<&PageRequest>) -> usize {
    let size = page.map_or(0, |p| p.page_size);
    v.check(size < 0, "page.page_size", "must not be negative (0 asks for the default)");
    if size <= 0 { DEFAULT_PAGE } else { (size as usize).min(MAX_PAGE) }
}

/// One page of `items` (in order): those `after` the token, at most `size`, and the token of
/// the next page.
pub(crate) fn paginate<T>(
    items: Vec<T>,
    size: usize,
    after: impl Fn(&T) -> bool,
    token: impl Fn(&T) -> String,
) -> (Vec<T>, PageResponse) {
    let total = items.len() as i64;
    let mut page: Vec<T> = items.into_iter().filter(|i| after(i)).take(size + 1).collect();
    let next = if page.len() > size {
        page.truncate(size);
        page.last().map(token).unwrap_or_default()
    } else {
        String::new()
    };
    (page, PageResponse { next_page_token: next, total_size: Some(total) })
}

/// Checks a label selector as Kubernetes would: keys set, operators known, values present for
/// IN and NOT_IN and absent for EXISTS and DOES_NOT_EXIST.
pub(crate) fn check_selector(v: &mut Violations, selector: Option<&LabelSelector>) {
    let Some(s) = selector else { return };
    v.check(s.match_labels.keys().any(String::is_empty), "label_selector.match_labels", "keys must not be empty");
    for (i, r) in s.match_expressions.iter().enumerate() {
        let field = format!("label_selector.match_expressions[{i}]");
        v.check(r.key.is_empty(), &format!("{field}.key"), "required");
        match LabelSelectorOperator::try_from(r.operator) {
            Ok(LabelSelectorOperator::In | LabelSelectorOperator::NotIn) => {
                v.check(r.values.is_empty(), &format!("{field}.values"), "required with IN and NOT_IN");
            }
            Ok(LabelSelectorOperator::Exists | LabelSelectorOperator::DoesNotExist) => {
                v.check(
                    !r.values.is_empty(),
                    &format!("{field}.values"),
                    "must be empty with EXISTS and DOES_NOT_EXIST",
                );
            }
            _ => {
                v.check(true, &format!("{field}.operator"), "use IN, NOT_IN, EXISTS or DOES_NOT_EXIST");
            }
        }
    }
}

/// The API server's current resource version, to watch from after a list of `api`.
pub(crate) async fn version<K>(api: Api<K>) -> Result<String, Status>
where
    K: Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    let list = api.list_metadata(&ListParams::default().limit(1)).await.map_err(kube_status)?;
    Ok(list.metadata.resource_version.unwrap_or_default())
}

/// A server stream of responses.
pub(crate) type Events<E> = Pin<Box<dyn Stream<Item = Result<E, Status>> + Send>>;

/// What a watch follows.
#[derive(Clone, Debug, Default)]
pub(crate) struct Selectors {
    /// A field selector (`metadata.name=...`).
    pub fields: Option<String>,
    /// A label selector.
    pub labels: Option<String>,
    /// Keep what the stream sent of each object, to hand MODIFIED events their `before`.
    pub remember: bool,
}

/// One change, as [`follow`] hands it to its `convert`.
pub(crate) struct Change<'a, K> {
    /// ADDED (in a snapshot, or new), MODIFIED, DELETED, or BOOKMARK (no object).
    pub kind: WatchEventType,
    /// The object as it is now (as it was last, for DELETED).
    pub object: Option<&'a K>,
    /// The object as this stream last sent it (MODIFIED only).
    pub before: Option<&'a K>,
    /// The resource version to resume after.
    pub version: String,
}

/// The changes of the objects of `api` matching `selectors`, from `since`, or from a snapshot:
/// ADDED for each object in namespace and name order, then a BOOKMARK at the list's version
/// (persys.common.v1's watch semantics: from there on the client has every object). Objects
/// `sight` does not see are left out, checked at each event so a membership change applies at
/// once. `convert` makes the response and may drop it (`None`).
pub(crate) fn follow<K, E, F>(
    api: Api<K>,
    selectors: Selectors,
    since: Option<String>,
    sight: Sight,
    convert: F,
) -> Events<E>
where
    K: Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug + Send + Sync + 'static,
    E: Send + 'static,
    F: Fn(Change<'_, K>) -> Option<E> + Send + Sync + 'static,
{
    let stream = async_stream::try_stream! {
        // What this stream sent last of each object, for the summaries of MODIFIED events.
        let mut last: HashMap<String, K> = HashMap::new();
        let mut version = match since {
            Some(v) => v,
            None => {
                let mut lp = ListParams::default();
                if let Some(f) = &selectors.fields { lp = lp.fields(f); }
                if let Some(l) = &selectors.labels { lp = lp.labels(l); }
                let list = api.list(&lp).await.map_err(kube_status)?;
                let mut items = list.items;
                items.sort_by_cached_key(key);
                for item in items.into_iter().filter(|i| sight.sees(&i.namespace().unwrap_or_default())) {
                    let change = Change { kind: WatchEventType::Added, object: Some(&item), before: None,
                        version: item.resource_version().unwrap_or_default() };
                    if let Some(e) = convert(change) { yield e; }
                    if selectors.remember { last.insert(key(&item), item); }
                }
                let version = list.metadata.resource_version.unwrap_or_default();
                let bookmark = Change { kind: WatchEventType::Bookmark, object: None, before: None, version: version.clone() };
                if let Some(e) = convert(bookmark) { yield e; }
                version
            }
        };
        loop {
            let mut wp = WatchParams::default().timeout(290);
            if let Some(f) = &selectors.fields { wp = wp.fields(f); }
            if let Some(l) = &selectors.labels { wp = wp.labels(l); }
            let mut events = api.watch(&wp, &version).await.map_err(kube_status)?.boxed();
            while let Some(e) = events.try_next().await.map_err(kube_status)? {
                // The API server's own type: a stream resumed from a version has seen no
                // earlier state, yet an object changed after it is MODIFIED, not new.
                let (kind, object) = match e {
                    WatchEvent::Added(o) => (WatchEventType::Added, o),
                    WatchEvent::Modified(o) => (WatchEventType::Modified, o),
                    WatchEvent::Deleted(o) => (WatchEventType::Deleted, o),
                    WatchEvent::Bookmark(b) => {
                        version = b.metadata.resource_version.clone();
                        let bookmark = Change { kind: WatchEventType::Bookmark, object: None, before: None, version: version.clone() };
                        if let Some(e) = convert(bookmark) { yield e; }
                        continue;
                    }
                    WatchEvent::Error(e) => Err(kube_status(kube::Error::Api(e)))?,
                };
                version = object.resource_version().unwrap_or_default();
                if !sight.sees(&object.namespace().unwrap_or_default()) {
                    continue;
                }
                let name = key(&object);
                if kind == WatchEventType::Deleted {
                    last.remove(&name);
                    let change = Change { kind, object: Some(&object), before: None, version: version.clone() };
                    if let Some(e) = convert(change) { yield e; }
                } else {
                    let change = Change { kind, object: Some(&object), before: last.get(&name), version: version.clone() };
                    if let Some(e) = convert(change) { yield e; }
                    if selectors.remember { last.insert(name, object); }
                }
            }
            // The API server ends watches after their timeout; go on from the last version.
        }
    };
    Box::pin(stream)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pages_end_with_an_empty_token() {
        let items: Vec<u32> = (1..=5).collect();
        let (page, response) = paginate(items.clone(), 2, |_| true, |i| i.to_string());
        assert_eq!((page, response.next_page_token.as_str(), response.total_size), (vec![1, 2], "2", Some(5)));
        let (page, response) = paginate(items, 2, |i| *i > 4, |i| i.to_string());
        assert_eq!((page, response.next_page_token.as_str()), (vec![5], ""));
    }
}
