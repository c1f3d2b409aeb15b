//! Reading a stream's events in order from a position, forwards or backwards, without loading
//! the stream: a merge over the chunks that overlap the read's frontier.
//!
//! Chunks of one stream may overlap in time (PutLogEvents accepts batches in any order), so a
//! [`StreamCursor`] merges them: forwards, chunks come from a scan of the chunk keys (ordered by
//! first event) starting [`CHUNK_SPAN_MS`] before the seek position, and each is opened only when
//! the merge reaches its first event; backwards, the reverse index (ordered by last event,
//! descending) plays the same part. In the common case (events written in time order) one chunk
//! is open at a time. Memory is accounted in a [`ReadBudget`] shared by every cursor of a request:
//! past its limit, open chunks other than the one being read drop their data and are read again
//! when the merge comes back to them, so a request holds a bounded amount whatever the overlap.

use std::cmp::Ordering;
use std::collections::{BinaryHeap, VecDeque};
use std::sync::Arc;

use gantry_store::{Store, StoreError};

use crate::chunk::{CHUNK_SPAN_MS, Chunk};
use crate::keys;
use crate::model::Position;

/// How many chunk records one forward scan of the store returns.
const CHUNK_SCAN: usize = 1;
/// How many reverse-index records one backward scan returns (they are small).
const RINDEX_SCAN: usize = 32;

/// What one request may hold and read.
#[derive(Debug)]
pub struct ReadBudget {
    /// Bytes of chunk data currently held.
    pub resident: usize,
    /// Past this, chunks not being read drop their data.
    pub resident_limit: usize,
    /// Bytes of chunk data loaded from the store so far.
    pub loaded: usize,
}

impl ReadBudget {
    pub fn new(resident_limit: usize) -> Self {
        Self {
            resident: 0,
            resident_limit,
            loaded: 0,
        }
    }

    pub fn over(&self) -> bool {
        self.resident > self.resident_limit
    }

    fn hold(&mut self, c: &Chunk) {
        self.resident += c.resident();
        self.loaded += c.resident();
    }

    fn release(&mut self, c: &Chunk) {
        self.resident = self.resident.saturating_sub(c.resident());
    }
}

/// Which way a cursor walks its stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dir {
    Forward,
    Backward,
}

impl Dir {
    /// `Less` when `a` comes before `b` in this direction.
    fn cmp(self, a: &Position, b: &Position) -> Ordering {
        match self {
            Dir::Forward => a.cmp(b),
            Dir::Backward => b.cmp(a),
        }
    }
}

/// One event read from a chunk.
#[derive(Debug, Clone)]
pub struct Event {
    pub chunk: Arc<Chunk>,
    pub i: usize,
}

impl Event {
    pub fn position(&self) -> Position {
        self.chunk.position(self.i)
    }

    pub fn message(&self) -> Result<&str, StoreError> {
        self.chunk.message(self.i)
    }

    pub fn ingestion_time(&self) -> u64 {
        self.chunk.ingestion_time
    }

    /// CloudWatch's size of the event (message bytes plus 26).
    pub fn size(&self) -> u64 {
        self.chunk.event_bytes(self.i)
    }
}

/// A chunk the merge has reached: the next event to read and, unless evicted, the chunk.
#[derive(Debug)]
struct Open {
    key: String,
    data: Option<Arc<Chunk>>,
    /// Next event index (forwards: ascending; backwards: descending).
    next: usize,
    next_pos: Position,
    dir: Dir,
}

impl PartialEq for Open {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for Open {}

impl PartialOrd for Open {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Open {
    /// The max-heap's top is the event that comes first in the cursor's direction.
    fn cmp(&self, other: &Self) -> Ordering {
        self.dir.cmp(&other.next_pos, &self.next_pos)
    }
}

/// A chunk the source has listed but the merge has not reached yet.
#[derive(Debug)]
struct Pending {
    key: String,
    /// Forwards `(first_ts, seq)`, backwards `(last_ts, seq)`: when the merge reaches this, the
    /// chunk is opened.
    at: (u64, u64),
    data: Option<Vec<u8>>,
}

/// The events of one stream strictly beyond a position, in one direction, up to a time bound.
#[derive(Debug)]
pub struct StreamCursor {
    stream: String,
    dir: Dir,
    /// Exclusive: forwards, events after it; backwards, events before it.
    from: Position,
    /// Forwards: stop at events with `ts >= bound`; backwards: stop at events with `ts < bound`.
    bound: u64,
    scan_after: String,
    scan_done: bool,
    pending: VecDeque<Pending>,
    open: BinaryHeap<Open>,
}

impl StreamCursor {
    /// Events with positions after `after` and timestamps before `hi`, ascending.
    pub fn forward(stream: String, after: Position, hi: u64) -> Self {
        let scan_after = keys::chunks_from(&stream, after.ts.saturating_sub(CHUNK_SPAN_MS));
        Self {
            stream,
            dir: Dir::Forward,
            from: after,
            bound: hi,
            scan_after,
            scan_done: after.ts >= hi,
            pending: VecDeque::new(),
            open: BinaryHeap::new(),
        }
    }

    /// Events with positions before `before` and timestamps at or after `lo`, descending.
    pub fn backward(stream: String, before: Position, lo: u64) -> Self {
        let scan_after = keys::rindex_from(&stream, before.ts.saturating_add(CHUNK_SPAN_MS));
        Self {
            stream,
            dir: Dir::Backward,
            from: before,
            bound: lo,
            scan_after,
            scan_done: before.ts < lo,
            pending: VecDeque::new(),
            open: BinaryHeap::new(),
        }
    }

    fn in_bounds(&self, p: &Position) -> bool {
        match self.dir {
            Dir::Forward => *p > self.from && p.ts < self.bound,
            Dir::Backward => *p < self.from && p.ts >= self.bound,
        }
    }

    /// Lists more chunks from the store.
    async fn refill(
        &mut self,
        store: &dyn Store,
        budget: &mut ReadBudget,
    ) -> Result<(), StoreError> {
        let (prefix, limit) = match self.dir {
            Dir::Forward => (keys::chunks(&self.stream), CHUNK_SCAN),
            Dir::Backward => (keys::rindex(&self.stream), RINDEX_SCAN),
        };
        let page = store.scan(&prefix, Some(&self.scan_after), limit).await?;
        for rec in page.records {
            let item = match self.dir {
                Dir::Forward => keys::parse_chunk(&rec.key).map(|at| Pending {
                    key: rec.key.clone(),
                    at,
                    data: Some(rec.value),
                }),
                Dir::Backward => match (keys::parse_rindex(&rec.key), String::from_utf8(rec.value))
                {
                    (Some(at), Ok(key)) => Some(Pending {
                        key,
                        at,
                        data: None,
                    }),
                    _ => None,
                },
            };
            let Some(item) = item else {
                return Err(StoreError::Codec {
                    key: rec.key,
                    detail: "not an event chunk key".to_owned(),
                });
            };
            // Past the time bound, nothing further in this order can be in range.
            let beyond = match self.dir {
                Dir::Forward => item.at.0 >= self.bound,
                Dir::Backward => item.at.0 < self.bound,
            };
            self.scan_after = rec.key;
            if beyond {
                self.scan_done = true;
                break;
            }
            if let Some(d) = &item.data {
                budget.resident += d.len();
                budget.loaded += d.len();
            }
            self.pending.push_back(item);
        }
        if page.next.is_none() {
            self.scan_done = true;
        }
        Ok(())
    }

    /// Whether the pending chunk must be opened before the open set's top can be read.
    fn must_open(&self, p: &Pending) -> bool {
        let Some(top) = self.open.peek() else {
            return true;
        };
        let top = (top.next_pos.ts, top.next_pos.seq);
        match self.dir {
            Dir::Forward => p.at <= top,
            Dir::Backward => p.at >= top,
        }
    }

    async fn load(
        store: &dyn Store,
        key: &str,
        data: Option<Vec<u8>>,
        budget: &mut ReadBudget,
    ) -> Result<Option<Arc<Chunk>>, StoreError> {
        let raw = match data {
            Some(raw) => raw,
            // Deleted since it was listed (retention, DeleteLogStream): nothing to read.
            None => match store.get(key).await? {
                Some(rec) => rec.value,
                None => return Ok(None),
            },
        };
        let chunk = Chunk::parse(key.to_owned(), raw)?;
        budget.hold(&chunk);
        Ok(Some(Arc::new(chunk)))
    }

    /// Opens a chunk at its first event in range.
    async fn open_chunk(
        &mut self,
        store: &dyn Store,
        p: Pending,
        budget: &mut ReadBudget,
    ) -> Result<(), StoreError> {
        if let Some(d) = &p.data {
            budget.resident = budget.resident.saturating_sub(d.len());
            budget.loaded = budget.loaded.saturating_sub(d.len());
        }
        let Some(chunk) = Self::load(store, &p.key, p.data, budget).await? else {
            return Ok(());
        };
        let next = match self.dir {
            Dir::Forward => Some(chunk.first_after(self.from)),
            Dir::Backward => chunk.last_before(self.from),
        }
        .filter(|&i| i < chunk.len());
        match next {
            Some(next) if self.in_bounds(&chunk.position(next)) => self.open.push(Open {
                key: p.key,
                next_pos: chunk.position(next),
                data: Some(chunk),
                next,
                dir: self.dir,
            }),
            _ => budget.release(&chunk),
        }
        Ok(())
    }

    /// Makes the open set's top the next event of the stream; `false` when there is none.
    async fn settle(
        &mut self,
        store: &dyn Store,
        budget: &mut ReadBudget,
    ) -> Result<bool, StoreError> {
        loop {
            if self.pending.is_empty() && !self.scan_done {
                self.refill(store, budget).await?;
                continue;
            }
            match self.pending.front() {
                Some(p) if self.must_open(p) => {
                    if let Some(p) = self.pending.pop_front() {
                        self.open_chunk(store, p, budget).await?;
                    }
                    continue;
                }
                _ => {}
            }
            let Some(top) = self.open.peek() else {
                return Ok(false);
            };
            if !self.in_bounds_pos(&top.next_pos) {
                self.release_all(budget);
                return Ok(false);
            }
            if top.data.is_some() {
                return Ok(true);
            }
            let key = top.key.clone();
            match Self::load(store, &key, None, budget).await? {
                Some(chunk) => {
                    if let Some(mut top) = self.open.peek_mut() {
                        top.data = Some(chunk);
                    }
                    return Ok(true);
                }
                None => {
                    self.open.pop();
                }
            }
        }
    }

    fn in_bounds_pos(&self, p: &Position) -> bool {
        match self.dir {
            Dir::Forward => p.ts < self.bound,
            Dir::Backward => p.ts >= self.bound,
        }
    }

    /// The position of the next event, if any.
    pub async fn peek(
        &mut self,
        store: &dyn Store,
        budget: &mut ReadBudget,
    ) -> Result<Option<Position>, StoreError> {
        if self.settle(store, budget).await? {
            Ok(self.open.peek().map(|o| o.next_pos))
        } else {
            Ok(None)
        }
    }

    /// The next event, if any.
    pub async fn next(
        &mut self,
        store: &dyn Store,
        budget: &mut ReadBudget,
    ) -> Result<Option<Event>, StoreError> {
        if !self.settle(store, budget).await? {
            return Ok(None);
        }
        let Some(mut top) = self.open.pop() else {
            return Ok(None);
        };
        let Some(chunk) = top.data.clone() else {
            return Ok(None);
        };
        let event = Event {
            chunk: chunk.clone(),
            i: top.next,
        };
        let more = match self.dir {
            Dir::Forward => (top.next + 1 < chunk.len()).then_some(top.next + 1),
            Dir::Backward => top.next.checked_sub(1),
        };
        match more {
            Some(n) => {
                top.next = n;
                top.next_pos = chunk.position(n);
                self.open.push(top);
                if budget.over() {
                    self.evict(budget, true);
                }
            }
            None => budget.release(&chunk),
        }
        Ok(Some(event))
    }

    /// Drops the data of the open chunks (all but the top when `keep_top`) and of listed chunks
    /// not reached yet; they are read again when the merge reaches them.
    pub fn evict(&mut self, budget: &mut ReadBudget, keep_top: bool) {
        let mut all = std::mem::take(&mut self.open).into_vec();
        all.sort_by(|a, b| b.cmp(a));
        for o in all.iter_mut().skip(usize::from(keep_top)) {
            if let Some(c) = o.data.take() {
                budget.release(&c);
            }
        }
        self.open = BinaryHeap::from(all);
        for p in &mut self.pending {
            if let Some(d) = p.data.take() {
                budget.resident = budget.resident.saturating_sub(d.len());
            }
        }
    }

    /// Drops everything this cursor holds.
    pub fn release_all(&mut self, budget: &mut ReadBudget) {
        for o in std::mem::take(&mut self.open) {
            if let Some(c) = o.data {
                budget.release(&c);
            }
        }
        for p in std::mem::take(&mut self.pending) {
            if let Some(d) = p.data {
                budget.resident = budget.resident.saturating_sub(d.len());
            }
        }
        self.scan_done = true;
    }
}
