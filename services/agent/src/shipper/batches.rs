//! The bounded buffer of metric batches the pipeline has not acknowledged yet.

use std::collections::VecDeque;

use persys_proto::metrics::v1::{HostMetrics, IngestRequest};

/// A batch waiting for its acknowledgement.
#[derive(Clone, Debug, PartialEq)]
pub struct Batch {
    /// Its `batch_seq`, kept across re-sends.
    pub seq: u64,
    /// Its samples, oldest first.
    pub samples: Vec<HostMetrics>,
    /// How many times it was sent (on any stream).
    pub sends: u32,
}

/// Unacknowledged batches in `batch_seq` order, at most `capacity`: when full, the oldest is
/// dropped and its samples are counted in [`Batches::dropped_samples`].
#[derive(Debug)]
pub struct Batches {
    capacity: usize,
    next_seq: u64,
    queue: VecDeque<Batch>,
    dropped_samples: u64,
}

impl Batches {
    /// Returns an empty buffer of at most `capacity` batches (at least 1) whose first batch is
    /// numbered `next_seq` (at least 1: 0 is invalid in the contract).
    pub fn new(capacity: usize, next_seq: u64) -> Self {
        Self { capacity: capacity.max(1), next_seq: next_seq.max(1), queue: VecDeque::new(), dropped_samples: 0 }
    }

    /// Adds a batch with the next `batch_seq`; returns that number and the oldest batch if it
    /// was dropped to make room.
    pub fn push(&mut self, samples: Vec<HostMetrics>) -> (u64, Option<Batch>) {
        let dropped = if self.queue.len() >= self.capacity { self.queue.pop_front() } else { None };
        if let Some(batch) = &dropped {
            self.dropped_samples = self.dropped_samples.saturating_add(batch.samples.len() as u64);
        }
        let seq = self.next_seq;
        self.next_seq = self.next_seq.saturating_add(1);
        self.queue.push_back(Batch { seq, samples, sends: 0 });
        (seq, dropped)
    }

    /// Removes the batch numbered `seq` and returns it; `None` (and nothing removed) if no
    /// batch has that number, e.g. one dropped meanwhile or acknowledged before.
    pub fn ack(&mut self, seq: u64) -> Option<Batch> {
        let index = self.queue.iter().position(|b| b.seq == seq)?;
        self.queue.remove(index)
    }

    /// Returns the request for the oldest batch numbered above `after` (the last number sent
    /// on the current stream; 0 on a new stream, which re-sends every batch) and counts the
    /// send; `None` when every batch was sent.
    pub fn send_after(&mut self, node_id: &str, after: u64) -> Option<IngestRequest> {
        let dropped_samples = self.dropped_samples;
        let batch = self.queue.iter_mut().find(|b| b.seq > after)?;
        batch.sends = batch.sends.saturating_add(1);
        Some(IngestRequest {
            node_id: node_id.to_owned(),
            samples: batch.samples.clone(),
            batch_seq: batch.seq,
            dropped_samples,
        })
    }

    /// Returns whether a batch numbered above `after` waits to be sent.
    pub fn has_after(&self, after: u64) -> bool {
        self.queue.back().is_some_and(|b| b.seq > after)
    }

    /// Returns whether a batch numbered `seq` or below waits for its answer.
    pub fn has_through(&self, seq: u64) -> bool {
        self.queue.front().is_some_and(|b| b.seq <= seq)
    }

    /// Returns the number the next new batch gets.
    pub fn next_seq(&self) -> u64 {
        self.next_seq
    }

    /// Returns the samples dropped since start because the buffer was full.
    pub fn dropped_samples(&self) -> u64 {
        self.dropped_samples
    }

    /// Returns the numbers of the waiting batches, oldest first.
    pub fn seqs(&self) -> Vec<u64> {
        self.queue.iter().map(|b| b.seq).collect()
    }

    /// Returns how many batches wait.
    pub fn len(&self) -> usize {
        self.queue.len()
    }

    /// Returns whether no batch waits.
    pub fn is_empty(&self) -> bool {
        self.queue.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn samples(n: usize) -> Vec<HostMetrics> {
        (0..n).map(|i| HostMetrics { process_count: i as i32, ..Default::default() }).collect()
    }

    fn sent(batches: &mut Batches, after: u64) -> Vec<(u64, u64)> {
        let mut out = Vec::new();
        let mut last = after;
        while let Some(r) = batches.send_after("n1", last) {
            last = r.batch_seq;
            out.push((r.batch_seq, r.dropped_samples));
        }
        out
    }

    #[test]
    fn numbers_start_where_told_and_increase_by_one() {
        let mut b = Batches::new(10, 41);
        assert_eq!(b.push(samples(1)).0, 41);
        assert_eq!(b.push(samples(1)).0, 42);
        assert_eq!(b.next_seq(), 43);
        assert_eq!(Batches::new(10, 0).push(samples(1)).0, 1, "0 is invalid");
    }

    #[test]
    fn a_full_buffer_drops_the_oldest_batch_and_counts_its_samples() {
        let mut b = Batches::new(2, 1);
        b.push(samples(2));
        b.push(samples(1));
        let (seq, dropped) = b.push(samples(1));
        assert_eq!(seq, 3);
        assert_eq!(dropped.map(|d| d.seq), Some(1));
        let (_, dropped) = b.push(samples(1));
        assert_eq!(dropped.map(|d| d.seq), Some(2));
        assert_eq!(b.seqs(), [3, 4]);
        assert_eq!(b.dropped_samples(), 3);
        // Every request carries the total dropped so far.
        assert_eq!(sent(&mut b, 0), [(3, 3), (4, 3)]);
    }

    #[test]
    fn an_ack_removes_only_the_matching_batch() {
        let mut b = Batches::new(10, 1);
        for _ in 0..3 {
            b.push(samples(1));
        }
        assert_eq!(b.ack(2).map(|d| d.seq), Some(2));
        assert_eq!(b.seqs(), [1, 3]);
        assert_eq!(b.ack(2), None, "already acknowledged");
        assert_eq!(b.ack(99), None, "never existed");
        assert_eq!(b.seqs(), [1, 3]);
        b.ack(1);
        assert!(!b.has_through(2), "2 is answered, 3 was not sent through 2");
        b.ack(3);
        assert!(b.is_empty());
    }

    #[test]
    fn a_new_stream_resends_every_unacknowledged_batch_in_order_with_its_number() {
        let mut b = Batches::new(10, 7);
        for n in 1..=4 {
            b.push(samples(n));
        }
        // First stream: everything sent, 7 and 8 acknowledged, then the stream breaks.
        assert_eq!(sent(&mut b, 0).iter().map(|s| s.0).collect::<Vec<_>>(), [7, 8, 9, 10]);
        assert!(!b.has_after(10));
        assert!(b.has_through(7));
        b.ack(7);
        b.ack(8);
        b.push(samples(5));
        // Second stream: the unacknowledged ones again, oldest first, then the new one.
        let resent: Vec<_> = std::iter::from_fn({
            let mut last = 0;
            let b = &mut b;
            move || {
                let r = b.send_after("n1", last)?;
                last = r.batch_seq;
                Some(r)
            }
        })
        .collect();
        let seqs: Vec<_> = resent.iter().map(|r| r.batch_seq).collect();
        assert_eq!(seqs, [9, 10, 11]);
        assert_eq!(resent[0].samples, samples(3), "same samples as the first send");
        assert_eq!(resent[0].node_id, "n1");
        let sends: Vec<_> = b.queue.iter().map(|x| x.sends).collect();
        assert_eq!(sends, [2, 2, 1]);
    }
}
