//! Collapsing of push jobs: all jobs of one (user, conversation) that arrive within a
//! window become a single notification ("3 new messages") instead of one each.
//!
//! The first job of a key opens a window; jobs of the same key are folded into it until
//! the window has ended and the entry is taken with [`Collapser::due`]. Every job's
//! Kafka position is kept so that all of them can be committed once the collapsed
//! notification has been handled.

use std::collections::{hash_map, HashMap, HashSet};
use std::time::{Duration, Instant};

use parley_schemas::PushJob;
use uuid::Uuid;

/// One message that may need a push notification to one user: a push job and where
/// it was read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Job {
    pub partition: i32,
    pub offset: i64,
    pub push: PushJob,
}

/// The jobs of one (user, conversation) folded together.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Collapsed {
    pub user_id: String,
    pub conversation_id: String,
    /// Number of distinct messages (by `seq`).
    pub count: u32,
    pub first_seq: i64,
    pub last_seq: i64,
    /// Message id of the message with the highest seq.
    pub message_id: Uuid,
    /// Sender of the message with the highest seq.
    pub sender_id: String,
    /// Title of the message with the highest seq.
    pub title: String,
    /// Preview of the message with the highest seq.
    pub preview: String,
    /// `(partition, offset)` of every job folded in, duplicates included.
    pub offsets: Vec<(i32, i64)>,
    /// One of the messages folded in mentions the user.
    pub mentioned: bool,
}

impl Collapsed {
    fn open(job: Job) -> Self {
        Self {
            user_id: job.push.user_id,
            conversation_id: job.push.conversation_id,
            count: 1,
            first_seq: job.push.seq,
            last_seq: job.push.seq,
            message_id: job.push.message_id,
            sender_id: job.push.sender_id,
            title: job.push.title,
            preview: job.push.preview,
            offsets: vec![(job.partition, job.offset)],
            mentioned: job.push.mentioned,
        }
    }
}

#[derive(Debug)]
struct Entry {
    opened: Instant,
    collapsed: Collapsed,
    /// Seqs already counted, so that redelivered jobs are counted once.
    seqs: HashSet<i64>,
}

/// Folds jobs per (user, conversation) over a time window.
#[derive(Debug)]
pub struct Collapser {
    window: Duration,
    pending: HashMap<(String, String), Entry>,
}

impl Collapser {
    /// A collapser with the given window. With a zero window every job is due at once.
    pub fn new(window: Duration) -> Self {
        Self {
            window,
            pending: HashMap::new(),
        }
    }

    /// Adds a job. The first job of a (user, conversation) opens a window at `now`; later
    /// ones are folded into the pending entry until it is taken by [`Collapser::due`] or
    /// [`Collapser::drain`]. A job whose seq was already folded in is not counted again,
    /// but its offset is recorded.
    pub fn add(&mut self, job: Job, now: Instant) {
        let key = (job.push.user_id.clone(), job.push.conversation_id.clone());
        let entry = match self.pending.entry(key) {
            hash_map::Entry::Occupied(occupied) => occupied.into_mut(),
            hash_map::Entry::Vacant(vacant) => {
                vacant.insert(Entry {
                    opened: now,
                    seqs: HashSet::from([job.push.seq]),
                    collapsed: Collapsed::open(job),
                });
                return;
            }
        };
        let c = &mut entry.collapsed;
        c.offsets.push((job.partition, job.offset));
        if !entry.seqs.insert(job.push.seq) {
            return;
        }
        c.count = c.count.saturating_add(1);
        c.mentioned |= job.push.mentioned;
        c.first_seq = c.first_seq.min(job.push.seq);
        if job.push.seq > c.last_seq {
            c.last_seq = job.push.seq;
            c.message_id = job.push.message_id;
            c.sender_id = job.push.sender_id;
            c.title = job.push.title;
            c.preview = job.push.preview;
        }
    }

    /// Removes and returns the entries whose window has ended at `now`, oldest first.
    pub fn due(&mut self, now: Instant) -> Vec<Collapsed> {
        let window = self.window;
        let keys: Vec<_> = self
            .pending
            .iter()
            .filter(|(_, e)| deadline(e.opened, window).is_some_and(|d| d <= now))
            .map(|(k, _)| k.clone())
            .collect();
        let entries = keys.iter().filter_map(|k| self.pending.remove(k)).collect();
        by_opened(entries)
    }

    /// Removes and returns every pending entry, oldest first.
    pub fn drain(&mut self) -> Vec<Collapsed> {
        by_opened(self.pending.drain().map(|(_, e)| e).collect())
    }

    /// When the earliest pending window ends, if any entry is pending.
    pub fn next_due(&self) -> Option<Instant> {
        self.pending
            .values()
            .filter_map(|e| deadline(e.opened, self.window))
            .min()
    }

    /// Drops the pending entries of jobs from `partitions` (no longer this member's: the
    /// new owner reads them again from the last commit).
    pub fn forget_partitions(&mut self, partitions: &[i32]) {
        self.pending.retain(|_, e| {
            !e.collapsed
                .offsets
                .first()
                .is_some_and(|(p, _)| partitions.contains(p))
        });
    }

    /// Number of pending entries.
    pub fn len(&self) -> usize {
        self.pending.len()
    }

    /// Whether nothing is pending.
    pub fn is_empty(&self) -> bool {
        self.pending.is_empty()
    }
}

/// End of a window opened at `opened`; `None` if it lies beyond what `Instant` can hold.
fn deadline(opened: Instant, window: Duration) -> Option<Instant> {
    opened.checked_add(window)
}

fn by_opened(mut entries: Vec<Entry>) -> Vec<Collapsed> {
    entries.sort_by_key(|e| e.opened);
    entries.into_iter().map(|e| e.collapsed).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const WINDOW: Duration = Duration::from_secs(2);

    fn job(user: &str, conversation: &str, seq: i64) -> Job {
        Job {
            partition: 1,
            offset: 100 + seq,
            push: PushJob {
                meta: parley_schemas::Meta::new("test"),
                user_id: user.to_owned(),
                conversation_id: conversation.to_owned(),
                seq,
                message_id: Uuid::from_u128(seq as u128),
                sender_id: format!("sender-{seq}"),
                title: format!("title-{seq}"),
                preview: format!("preview-{seq}"),
                badge: None,
                mentioned: false,
            },
        }
    }

    #[test]
    fn many_jobs_in_a_window_become_one() {
        let t0 = Instant::now();
        let mut c = Collapser::new(WINDOW);
        // Out of order, so that first/last come from min/max rather than arrival order.
        for seq in (1..=200).rev() {
            c.add(
                job("u", "c", seq),
                t0 + Duration::from_millis(200 - seq as u64),
            );
        }
        assert_eq!(c.len(), 1);
        assert_eq!(c.next_due(), Some(t0 + WINDOW));
        assert!(c.due(t0 + WINDOW - Duration::from_millis(1)).is_empty());
        let out = c.due(t0 + WINDOW);
        assert_eq!(out.len(), 1);
        let one = &out[0];
        assert_eq!(one.count, 200);
        assert_eq!((one.first_seq, one.last_seq), (1, 200));
        assert_eq!(one.message_id, Uuid::from_u128(200));
        assert_eq!(one.sender_id, "sender-200");
        assert_eq!(one.title, "title-200");
        assert_eq!(one.preview, "preview-200");
        assert_eq!(one.offsets.len(), 200);
        assert!(one.offsets.contains(&(1, 101)) && one.offsets.contains(&(1, 300)));
        assert!(c.is_empty());
        assert_eq!(c.next_due(), None);
    }

    #[test]
    fn conversations_and_users_stay_apart() {
        let t0 = Instant::now();
        let mut c = Collapser::new(WINDOW);
        c.add(job("u", "a", 1), t0);
        c.add(job("u", "b", 1), t0 + Duration::from_millis(10));
        c.add(job("v", "a", 2), t0 + Duration::from_millis(20));
        c.add(job("u", "a", 2), t0 + Duration::from_millis(30));
        assert_eq!(c.len(), 3);
        let out = c.due(t0 + WINDOW + Duration::from_secs(1));
        let keys: Vec<_> = out
            .iter()
            .map(|c| (c.user_id.as_str(), c.conversation_id.as_str(), c.count))
            .collect();
        assert_eq!(keys, [("u", "a", 2), ("u", "b", 1), ("v", "a", 1)]);
    }

    #[test]
    fn due_only_takes_ended_windows() {
        let t0 = Instant::now();
        let mut c = Collapser::new(WINDOW);
        c.add(job("u", "a", 1), t0);
        c.add(job("u", "b", 1), t0 + Duration::from_secs(1));
        assert_eq!(c.next_due(), Some(t0 + WINDOW));
        let out = c.due(t0 + WINDOW);
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].conversation_id, "a");
        assert_eq!(c.next_due(), Some(t0 + Duration::from_secs(3)));
    }

    #[test]
    fn a_job_after_the_window_was_taken_opens_a_new_one() {
        let t0 = Instant::now();
        let mut c = Collapser::new(WINDOW);
        c.add(job("u", "c", 1), t0);
        c.add(job("u", "c", 2), t0 + Duration::from_secs(1));
        assert_eq!(c.due(t0 + WINDOW)[0].count, 2);
        let t1 = t0 + Duration::from_secs(3);
        c.add(job("u", "c", 3), t1);
        assert_eq!(c.next_due(), Some(t1 + WINDOW));
        let out = c.due(t1 + WINDOW);
        assert_eq!(out.len(), 1);
        assert_eq!((out[0].count, out[0].first_seq, out[0].last_seq), (1, 3, 3));
    }

    #[test]
    fn duplicate_seq_is_counted_once_but_its_offset_kept() {
        let t0 = Instant::now();
        let mut c = Collapser::new(WINDOW);
        c.add(job("u", "c", 5), t0);
        let mut again = job("u", "c", 5);
        again.offset = 999;
        again.push.preview = "changed".to_owned();
        c.add(again, t0);
        c.add(job("u", "c", 6), t0);
        let out = c.drain();
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].count, 2);
        assert_eq!(out[0].offsets, [(1, 105), (1, 999), (1, 106)]);
        assert_eq!(out[0].preview, "preview-6");
    }

    #[test]
    fn zero_window_is_due_at_once() {
        let t0 = Instant::now();
        let mut c = Collapser::new(Duration::ZERO);
        c.add(job("u", "c", 1), t0);
        assert_eq!(c.next_due(), Some(t0));
        assert_eq!(c.due(t0).len(), 1);
    }

    #[test]
    fn drain_returns_everything_oldest_first() {
        let t0 = Instant::now();
        let mut c = Collapser::new(Duration::from_secs(3600));
        c.add(job("u", "b", 1), t0 + Duration::from_secs(1));
        c.add(job("u", "a", 1), t0);
        assert!(c.due(t0 + WINDOW).is_empty());
        let ids: Vec<_> = c.drain().into_iter().map(|c| c.conversation_id).collect();
        assert_eq!(ids, ["a", "b"]);
        assert!(c.is_empty());
    }
}
