//! The MD5 of an upload (its ETag), hashed in SIMD lanes shared by every large upload.
//!
//! One MD5 stream cannot use wide SIMD (each 64-byte block depends on the one before), but
//! independent streams can: `md5-many` hashes 16 of them at once with AVX-512 (8 with AVX2)
//! for a fraction of the CPU of hashing each alone. So an upload's hasher keeps its bytes
//! until it has [`BATCH_BYTES`] of them and hands them, with a copy of its state, to the lane
//! threads, which hash whatever the uploads have sent together. Each hasher has at most one
//! batch out; its next bytes wait for the answer. A lane thread hashes one 128 KiB piece of
//! every batch it holds per step, and batches that arrive meanwhile join the next step. Small
//! bodies never leave the request's task.
//! A hasher that loses its answer (a lane thread that panicked) hashes the batch itself from
//! what it kept: the result never depends on the threads.

use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Arc, LazyLock, Mutex, TryLockError};
use std::time::{Duration, Instant};

use bytes::Bytes;
use md5_many::{Md5Many, Md5State};
use tokio::sync::oneshot;

/// Bytes a hasher gathers before it sends them to the lanes (smaller bodies hash inline).
const BATCH_BYTES: usize = 256 * 1024;
/// Bytes a hasher may hold unhashed before its writer waits for the lanes.
const MAX_HELD: usize = 8 * 1024 * 1024;
/// Batches one lane thread hashes side by side, at most.
const MAX_LANES: usize = 32;
/// How long a lane thread waits for more batches to fill its SIMD lanes: a call hashes 16
/// (AVX-512) batches for the price of about three, so one that starts with a single batch
/// wastes most of it. Nothing a request waits for waits out the gather (see [`Job::now`]).
const GATHER: Duration = Duration::from_millis(2);

/// Incremental MD5 of one body.
pub struct Md5 {
    /// The state after every byte before `out` and `held`.
    state: Md5State,
    /// The batch at the lanes: the bytes sent and the answer to come.
    out: Option<(Vec<Bytes>, oneshot::Receiver<Md5State>)>,
    /// Bytes after `out`, not sent yet.
    held: Vec<Bytes>,
    held_len: usize,
    /// The lane threads' queue; none: hash inline.
    lanes: Option<&'static Sender<Job>>,
}

impl Default for Md5 {
    fn default() -> Self {
        Md5 {
            state: Md5State::new(),
            out: None,
            held: Vec::new(),
            held_len: 0,
            lanes: LANES.as_ref(),
        }
    }
}

impl Md5 {
    /// Adds `data` (shared, not copied); waits only when the lanes are far behind.
    pub async fn update(&mut self, data: &Bytes) {
        if data.is_empty() {
            return;
        }
        self.held.push(data.clone());
        self.held_len += data.len();
        if self.held_len < BATCH_BYTES {
            return;
        }
        if self.out.is_some() && self.held_len >= MAX_HELD {
            self.settle(true).await;
        } else if let Some((_, answer)) = self.out.as_mut() {
            match answer.try_recv() {
                Ok(state) => {
                    self.state = state;
                    self.out = None;
                }
                Err(oneshot::error::TryRecvError::Empty) => return,
                Err(oneshot::error::TryRecvError::Closed) => {
                    if let Some((bytes, _)) = self.out.take() {
                        hash_inline(&mut self.state, &bytes);
                    }
                }
            }
        }
        self.send(false);
    }

    /// The digest of every byte added.
    pub async fn finalize(mut self) -> [u8; 16] {
        self.settle(true).await;
        if self.held_len >= BATCH_BYTES {
            self.send(true);
            self.settle(false).await;
        }
        hash_inline(&mut self.state, &self.held);
        self.state.finalize()
    }

    /// Sends the held bytes to the lanes (inline when no lane thread runs); `now`: a request
    /// waits for the answer.
    fn send(&mut self, now: bool) {
        let bytes = std::mem::take(&mut self.held);
        self.held_len = 0;
        let (reply, answer) = oneshot::channel();
        let job = Job {
            state: self.state,
            bytes: bytes.clone(),
            reply,
            now,
        };
        if self.lanes.is_some_and(|tx| tx.send(job).is_ok()) {
            self.out = Some((bytes, answer));
        } else {
            hash_inline(&mut self.state, &bytes);
        }
    }

    /// Waits for the batch at the lanes; hashes it here if its answer is lost. `nudge`: the
    /// batch was sent without [`Job::now`], so a lane thread may be gathering more before it
    /// starts: tell it to start now.
    async fn settle(&mut self, nudge: bool) {
        if let Some((bytes, mut answer)) = self.out.take() {
            let answered = match answer.try_recv() {
                Err(oneshot::error::TryRecvError::Empty) => {
                    if nudge {
                        self.nudge();
                    }
                    answer.await.ok()
                }
                other => other.ok(),
            };
            match answered {
                Some(state) => self.state = state,
                None => hash_inline(&mut self.state, &bytes),
            }
        }
    }

    /// An empty batch that a request waits for: it ends a lane thread's gather.
    fn nudge(&self) {
        if let Some(tx) = self.lanes {
            let (reply, _) = oneshot::channel();
            let _ = tx.send(Job {
                state: Md5State::new(),
                bytes: Vec::new(),
                reply,
                now: true,
            });
        }
    }
}

fn hash_inline(state: &mut Md5State, bytes: &[Bytes]) {
    for b in bytes {
        state.update(b);
    }
}

/// A batch for the lanes: a state and the bytes that follow it.
struct Job {
    state: Md5State,
    bytes: Vec<Bytes>,
    reply: oneshot::Sender<Md5State>,
    /// Hash at once: a request waits for it.
    now: bool,
}

/// The lane threads' queue, or none when no thread could start.
static LANES: LazyLock<Option<Sender<Job>>> = LazyLock::new(start_lanes);

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// One lane thread per four cores: each hashes a whole machine's uploads at memory speed.
fn start_lanes() -> Option<Sender<Job>> {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let (tx, rx) = mpsc::channel::<Job>();
    let rx = Arc::new(Mutex::new(rx));
    let mut started = 0;
    for n in 0..cores.div_ceil(4) {
        let rx = rx.clone();
        let spawned = std::thread::Builder::new()
            .name(format!("jets3-md5-{n}"))
            .spawn(move || run_lanes(&rx, GATHER));
        if spawned.is_ok() {
            started += 1;
        }
    }
    (started > 0).then_some(tx)
}

/// A batch being hashed: its state so far and its next piece.
struct Lane {
    job: Job,
    state: Md5State,
    next: usize,
}

/// Hashes the waiting batches side by side, one piece of each per step. Batches that arrive
/// meanwhile join at the next step, so a long batch keeps company and the lanes stay full.
fn run_lanes(rx: &Mutex<Receiver<Job>>, gather: Duration) {
    let engine = Md5Many::new();
    let mut lanes: Vec<Lane> = Vec::with_capacity(MAX_LANES);
    while take_jobs(rx, &mut lanes, engine.lanes(), gather) {
        let mut states: Vec<Md5State> = lanes.iter().map(|l| l.state).collect();
        let pieces: Vec<(usize, &[u8])> = lanes
            .iter()
            .enumerate()
            .filter_map(|(i, l)| l.job.bytes.get(l.next).map(|b| (i, &b[..])))
            .collect();
        hash_step(engine, &mut states, &pieces);
        for (lane, state) in lanes.iter_mut().zip(states) {
            lane.state = state;
            lane.next += 1;
        }
        let (done, rest): (Vec<Lane>, Vec<Lane>) =
            lanes.drain(..).partition(|l| l.next >= l.job.bytes.len());
        lanes = rest;
        for lane in done {
            let _ = lane.job.reply.send(lane.state);
        }
    }
}

/// Adds waiting batches to `lanes` (up to [`MAX_LANES`]). An idle thread waits for one, then
/// up to `gather` for enough to fill `want` lanes (or a batch sent [`Job::now`]); a busy one takes only what is there, and
/// nothing while another thread holds the queue (an idle one may hold it until the next
/// batch comes, which may wait for this thread's answers). False when the queue is closed.
fn take_jobs(
    rx: &Mutex<Receiver<Job>>,
    lanes: &mut Vec<Lane>,
    want: usize,
    gather: Duration,
) -> bool {
    let rx = if lanes.is_empty() {
        lock(rx)
    } else {
        match rx.try_lock() {
            Ok(rx) => rx,
            Err(TryLockError::Poisoned(p)) => p.into_inner(),
            Err(TryLockError::WouldBlock) => return true,
        }
    };
    let push = |lanes: &mut Vec<Lane>, job: Job| {
        let state = job.state;
        lanes.push(Lane {
            job,
            state,
            next: 0,
        })
    };
    let until = if lanes.is_empty() {
        match rx.recv() {
            Ok(job) => push(lanes, job),
            Err(_) => return false,
        }
        Instant::now() + gather
    } else {
        Instant::now()
    };
    while lanes.len() < MAX_LANES {
        if let Ok(job) = rx.try_recv() {
            push(lanes, job);
            continue;
        }
        let left = until.saturating_duration_since(Instant::now());
        if lanes.len() >= want || left.is_zero() || lanes.iter().any(|l| l.job.now) {
            break;
        }
        match rx.recv_timeout(left) {
            Ok(job) => push(lanes, job),
            Err(_) => break,
        }
    }
    true
}

/// Fewest streams worth a SIMD call: a call costs about as much as three scalar streams,
/// whatever number of its lanes are in use.
const MIN_SIMD: usize = 3;

/// Adds `pieces` (stream index, bytes) to their streams. The SIMD kernels run only on full
/// groups of lanes with equal, block-aligned input (else the crate takes a slow generic path),
/// so pieces of the first piece's length go in groups padded with throwaway lanes, and
/// every other piece is hashed on its own.
fn hash_step(engine: Md5Many, states: &mut [Md5State], pieces: &[(usize, &[u8])]) {
    let lanes = engine.lanes();
    let len = pieces.first().map_or(0, |(_, p)| p.len());
    let (even, odd): (Vec<_>, Vec<_>) = pieces.iter().partition(|(i, p)| {
        len > 0
            && len.is_multiple_of(64)
            && p.len() == len
            && states[*i].bytes_hashed().is_multiple_of(64)
    });
    let mut alone = odd;
    for group in even.chunks(lanes) {
        if group.len() < MIN_SIMD {
            alone.extend_from_slice(group);
            continue;
        }
        let mut lane_states: Vec<Md5State> = group.iter().map(|(i, _)| states[*i]).collect();
        let mut inputs: Vec<&[u8]> = group.iter().map(|(_, p)| *p).collect();
        lane_states.resize(lanes, Md5State::new());
        inputs.resize(lanes, group[0].1);
        engine.update_many(&mut lane_states, &inputs);
        for ((i, _), state) in group.iter().zip(lane_states) {
            states[*i] = state;
        }
    }
    for (i, p) in alone {
        states[i].update(p);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::meta::CHUNK_SIZE;
    use md5_reference::Digest;

    fn body(seed: u64, len: usize) -> Vec<u8> {
        let mut x = seed | 1;
        (0..len)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect()
    }

    async fn lanes_md5(data: &[u8], piece: usize) -> [u8; 16] {
        let mut h = Md5::default();
        for p in data.chunks(piece.max(1)) {
            h.update(&Bytes::copy_from_slice(p)).await;
        }
        h.finalize().await
    }

    /// Many uploads at once, of every size around the batch and block edges, cut in uneven
    /// pieces: each digest equals the reference MD5 of its body.
    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn concurrent_uploads_hash_like_the_reference() {
        let sizes = [
            0,
            1,
            63,
            64,
            65,
            BATCH_BYTES - 1,
            BATCH_BYTES,
            BATCH_BYTES + 1,
            3 * BATCH_BYTES + 17,
            MAX_HELD + 4099,
            16 << 20,
        ];
        let mut tasks = Vec::new();
        for (i, &len) in sizes.iter().enumerate() {
            for (j, piece) in [1000, 16 * 1024, 65_536 + 7].into_iter().enumerate() {
                let data = body((i * 3 + j) as u64, len);
                tasks.push(tokio::spawn(async move {
                    let want: [u8; 16] = md5_reference::Md5::digest(&data).into();
                    (len, piece, want, lanes_md5(&data, piece).await)
                }));
            }
        }
        for t in tasks {
            let (len, piece, want, got) = t.await.expect("task");
            assert_eq!(got, want, "{len} bytes in pieces of {piece}");
        }
    }

    /// Two lane threads on one queue: the idle one holds the queue while it waits for a batch,
    /// and the busy one still finishes its long batch, though nothing more comes until it does
    /// (uploads wait for their answers).
    #[test]
    fn a_busy_lane_thread_never_waits_for_an_idle_one() {
        let (tx, rx) = mpsc::channel::<Job>();
        let rx = Arc::new(Mutex::new(rx));
        for _ in 0..2 {
            let rx = rx.clone();
            std::thread::spawn(move || run_lanes(&rx, GATHER));
        }
        for (seed, pieces) in [(1, 400), (2, 3)] {
            let data = body(seed, pieces * CHUNK_SIZE);
            let want: [u8; 16] = md5_reference::Md5::digest(&data).into();
            let (reply, answer) = oneshot::channel();
            let bytes = data
                .chunks(CHUNK_SIZE)
                .map(Bytes::copy_from_slice)
                .collect();
            let job = Job {
                state: Md5State::new(),
                bytes,
                reply,
                now: false,
            };
            tx.send(job).expect("queue");
            let (done, got) = mpsc::channel();
            std::thread::spawn(move || done.send(answer.blocking_recv()));
            let state = got
                .recv_timeout(Duration::from_secs(20))
                .unwrap_or_else(|_| panic!("the batch of {pieces} pieces was never answered"))
                .expect("answer");
            assert_eq!(state.finalize(), want, "{pieces} pieces");
        }
    }

    /// A hasher whose request waits for a batch it sent without [`Job::now`] (at the body's
    /// end, or holding too much) never waits out a lane thread's gather: here one of an hour.
    #[tokio::test]
    async fn a_waiting_request_never_waits_out_the_gather() {
        let (tx, rx) = mpsc::channel::<Job>();
        let rx = Arc::new(Mutex::new(rx));
        std::thread::spawn(move || run_lanes(&rx, Duration::from_secs(3600)));
        let lanes: &'static Sender<Job> = Box::leak(Box::new(tx));
        for len in [BATCH_BYTES, BATCH_BYTES + 1000, MAX_HELD + 3 * BATCH_BYTES] {
            let data = body(len as u64, len);
            let want: [u8; 16] = md5_reference::Md5::digest(&data).into();
            let mut h = Md5 {
                lanes: Some(lanes),
                ..Md5::default()
            };
            let hashed = async {
                for p in data.chunks(CHUNK_SIZE) {
                    h.update(&Bytes::copy_from_slice(p)).await;
                }
                h.finalize().await
            };
            let got = tokio::time::timeout(Duration::from_secs(30), hashed)
                .await
                .unwrap_or_else(|_| panic!("a body of {len} bytes waited out the gather"));
            assert_eq!(got, want, "{len} bytes");
        }
    }

    /// A batch whose answer is lost (a lane thread that died) is hashed by the hasher itself,
    /// whether the loss shows at the next update or at the end.
    #[tokio::test]
    async fn a_lost_answer_is_hashed_inline() {
        let data = body(7, 3 * BATCH_BYTES);
        let want: [u8; 16] = md5_reference::Md5::digest(&data).into();
        for more in [true, false] {
            let mut h = Md5::default();
            h.update(&Bytes::copy_from_slice(&data[..BATCH_BYTES]))
                .await;
            let (bytes, _) = h.out.take().expect("the first batch went to the lanes");
            let (dead, answer) = oneshot::channel();
            drop(dead);
            h.out = Some((bytes, answer));
            let rest = if more { BATCH_BYTES } else { 2 * BATCH_BYTES };
            h.update(&Bytes::copy_from_slice(
                &data[BATCH_BYTES..BATCH_BYTES + rest],
            ))
            .await;
            if more {
                h.update(&Bytes::copy_from_slice(&data[2 * BATCH_BYTES..]))
                    .await;
            }
            assert_eq!(
                h.finalize().await,
                want,
                "answer lost, more updates: {more}"
            );
        }
    }

    /// One step over more streams than lanes, some with other lengths or unaligned states:
    /// full SIMD groups, a padded one, and the rest alone all give the reference digests.
    #[test]
    fn a_step_mixes_simd_groups_and_single_streams() {
        let engine = Md5Many::new();
        let n = engine.lanes() * 2 + 5;
        let prefix: Vec<Vec<u8>> = (0..n)
            .map(|i| body(i as u64, (i % 3) * 64 + (i % 5 == 0) as usize))
            .collect();
        let pieces: Vec<Vec<u8>> = (0..n)
            .map(|i| body(100 + i as u64, if i % 7 == 3 { 4096 } else { 128 * 1024 }))
            .collect();
        let mut states: Vec<Md5State> = prefix
            .iter()
            .map(|p| {
                let mut s = Md5State::new();
                s.update(p);
                s
            })
            .collect();
        let step: Vec<(usize, &[u8])> = pieces
            .iter()
            .enumerate()
            .map(|(i, p)| (i, &p[..]))
            .collect();
        hash_step(engine, &mut states, &step);
        for i in 0..n {
            let whole = [&prefix[i][..], &pieces[i][..]].concat();
            let want: [u8; 16] = md5_reference::Md5::digest(&whole).into();
            assert_eq!(states[i].finalize(), want, "stream {i}");
        }
    }
}
