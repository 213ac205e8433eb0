//! A workload's event history: what happened to it and its instances, newest last, with
//! repeats folded into a count.

use std::time::SystemTime;

use persys_proto::{
    common::v1::{Event as PbEvent, EventType as PbEventType},
    scheduler::v1::{Workload, WorkloadPhase},
};

use crate::model::ts_of;

/// Events kept per workload.
const MAX_EVENTS: usize = 50;

/// Appends an event to a workload's history, folding repeats, at the current time.
pub fn record_event(w: &mut Workload, kind: PbEventType, reason: &str, message: String) {
    record_event_at(w, kind, reason, message, SystemTime::now());
}

/// Appends an event to a workload's history at `now`, folding repeats: a repeat of the last
/// event (same reason and message) counts up and moves its time instead.
pub fn record_event_at(w: &mut Workload, kind: PbEventType, reason: &str, message: String, now: SystemTime) {
    if let Some(last) = w.events.last_mut()
        && last.reason == reason
        && last.message == message
    {
        last.count += 1;
        last.time = Some(ts_of(now));
        return;
    }
    w.events.push(PbEvent {
        id: uuid::Uuid::now_v7().to_string(),
        time: Some(ts_of(now)),
        r#type: kind as i32,
        reason: reason.to_owned(),
        message,
        source: "scheduler".into(),
        count: 1,
        first_time: Some(ts_of(now)),
    });
    if w.events.len() > MAX_EVENTS {
        let excess = w.events.len() - MAX_EVENTS;
        w.events.drain(..excess);
    }
}

/// Returns a phase as people write it: `Running`, `Succeeded`.
pub fn phase_title(phase: i32) -> String {
    let name = WorkloadPhase::try_from(phase).map(|p| p.as_str_name()).unwrap_or("WORKLOAD_PHASE_UNKNOWN");
    let word = name.trim_start_matches("WORKLOAD_PHASE_").to_ascii_lowercase();
    let mut chars = word.chars();
    chars.next().map(|c| c.to_ascii_uppercase().to_string() + chars.as_str()).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, UNIX_EPOCH};

    use super::*;

    #[test]
    fn repeats_fold_and_the_history_stays_bounded() {
        let (t0, t1) = (UNIX_EPOCH + Duration::from_secs(100), UNIX_EPOCH + Duration::from_secs(200));
        let mut w = Workload::default();
        record_event_at(&mut w, PbEventType::Normal, "Started", "instance a".into(), t0);
        record_event_at(&mut w, PbEventType::Normal, "Started", "instance a".into(), t1);
        assert_eq!(w.events.len(), 1);
        let e = &w.events[0];
        assert_eq!((e.count, e.first_time.unwrap().seconds, e.time.unwrap().seconds), (2, 100, 200));
        for n in 0..60 {
            record_event_at(&mut w, PbEventType::Normal, "Started", format!("instance {n}"), t1);
        }
        assert_eq!(w.events.len(), MAX_EVENTS);
        assert_eq!(w.events.last().unwrap().message, "instance 59");
    }

    #[test]
    fn phases_read_as_words() {
        assert_eq!(phase_title(WorkloadPhase::Running as i32), "Running");
        assert_eq!(phase_title(WorkloadPhase::Succeeded as i32), "Succeeded");
        assert_eq!(phase_title(999), "Unknown");
    }
}
