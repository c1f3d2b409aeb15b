//! The etcd backend: several `gantry server` replicas share one etcd cluster.
//!
//! Layout under the configured root prefix `P` (default `/gantry/`): every record lives at
//! `P kv/<key>`, and every committed transaction also writes `P rev`, so each transaction (even one
//! without effective mutations) takes exactly one etcd revision. The store revision is etcd's
//! revision, a record's revision its `mod_revision`, and a [`Condition::Revision`] is an etcd
//! compare on `mod_revision` (0: the key does not exist), all inside one etcd `Txn`.
//!
//! The change feed is one etcd watch on `P` held by a background task. It turns each revision into
//! one batch of [`Event`]s, publishes it, and then advances the published revision; a commit returns
//! only once the feed has published its revision, so the events of an acknowledged commit are
//! already available to [`Watch::try_next`], as on the other backends. Writes by other replicas
//! reach the feed the same way, which keeps every replica's watch-driven caches current. After a
//! disconnect the watch resumes from the revision after the last one published; if etcd compacted
//! that history in the meantime, subscribers get [`crate::WatchError::Lagged`] and re-read.
//!
//! etcd limits a request's size (`--max-request-bytes`, 1.5 MiB by default) and its operations
//! (`--max-txn-ops`, 128): a transaction beyond them is refused before it is sent, with
//! [`StoreError::TooLarge`] naming the limit; unreachable etcd answers [`StoreError::Unavailable`].

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use etcd_client::{
    Client, Compare, CompareOp, ConnectOptions, EventType, GetOptions, KvClient, TxnOp,
    TxnOpResponse, WatchOptions,
};
use tokio::sync::{broadcast, watch};

use crate::{
    Condition, Event, Mutation, Page, Record, Revision, Store, StoreError, Txn, TxnOutcome, Watch,
};

/// How many batches of events a watcher may fall behind before it lags.
const WATCH_CAPACITY: usize = 4096;

/// Records per etcd range request when a scan pages internally.
const SCAN_CHUNK: usize = 500;

/// Bytes an etcd request carries beyond its keys and values (headers, framing), per operation.
const PER_OP_OVERHEAD: usize = 32;

/// TLS settings for the etcd connection, as `etcdctl --cacert --cert --key` takes them.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct EtcdTls {
    /// PEM bundle of the certificate authorities that signed the etcd servers' certificates.
    pub ca_pem: Option<Vec<u8>>,
    /// PEM client certificate and key, for etcd's `--client-cert-auth`.
    pub client_cert_pem: Option<Vec<u8>>,
    pub client_key_pem: Option<Vec<u8>>,
}

/// Settings of an [`EtcdStore`].
#[derive(Clone, PartialEq, Eq)]
pub struct EtcdOptions {
    /// `host:port` (or `http(s)://host:port`) of each etcd member.
    pub endpoints: Vec<String>,
    /// Every key lives under this prefix (ends with `/`).
    pub prefix: String,
    /// etcd user and password (etcd's `--auth`).
    pub user: Option<(String, String)>,
    /// Connect with TLS when set.
    pub tls: Option<EtcdTls>,
    /// The largest request etcd accepts (its `--max-request-bytes`).
    pub max_request_bytes: usize,
    /// The most operations etcd accepts in one transaction (its `--max-txn-ops`).
    pub max_txn_ops: usize,
    /// How long one request may take before the store counts etcd as unavailable.
    pub request_timeout: Duration,
}

impl std::fmt::Debug for EtcdOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EtcdOptions")
            .field("endpoints", &self.endpoints)
            .field("prefix", &self.prefix)
            .field("user", &self.user.as_ref().map(|(u, _)| u))
            .field("tls", &self.tls.is_some())
            .field("max_request_bytes", &self.max_request_bytes)
            .field("max_txn_ops", &self.max_txn_ops)
            .field("request_timeout", &self.request_timeout)
            .finish()
    }
}

impl EtcdOptions {
    /// Parses `etcd://host:port[,host:port...][/prefix]` (the prefix defaults to `gantry`).
    pub fn from_url(url: &str) -> Result<EtcdOptions, String> {
        let rest = url
            .strip_prefix("etcd://")
            .ok_or_else(|| format!("store url {url:?} must start with etcd://"))?;
        let (hosts, prefix) = match rest.split_once('/') {
            Some((hosts, prefix)) => (hosts, prefix.trim_matches('/')),
            None => (rest, ""),
        };
        let endpoints: Vec<String> = hosts
            .split(',')
            .map(str::trim)
            .filter(|h| !h.is_empty())
            .map(str::to_owned)
            .collect();
        if endpoints.is_empty() {
            return Err(format!("store url {url:?} names no etcd endpoint"));
        }
        for endpoint in &endpoints {
            let ok = endpoint
                .rsplit_once(':')
                .is_some_and(|(host, port)| !host.is_empty() && port.parse::<u16>().is_ok());
            if !ok {
                return Err(format!(
                    "etcd endpoint {endpoint:?} in {url:?} is not host:port"
                ));
            }
        }
        let prefix = if prefix.is_empty() { "gantry" } else { prefix };
        Ok(EtcdOptions {
            endpoints,
            prefix: format!("/{prefix}/"),
            user: None,
            tls: None,
            max_request_bytes: 1536 * 1024,
            max_txn_ops: 128,
            request_timeout: Duration::from_secs(5),
        })
    }
}

/// A store in an etcd cluster, shared by every replica that opens the same prefix.
pub struct EtcdStore {
    client: Client,
    opts: EtcdOptions,
    /// `P kv/`: the data keys' prefix.
    data: String,
    /// `P rev`: written by every transaction.
    rev_key: String,
    events: broadcast::Sender<Arc<Vec<Event>>>,
    published: watch::Receiver<Revision>,
    feed: tokio::task::JoinHandle<()>,
}

impl std::fmt::Debug for EtcdStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EtcdStore")
            .field("endpoints", &self.opts.endpoints)
            .field("prefix", &self.opts.prefix)
            .field("published", &*self.published.borrow())
            .finish_non_exhaustive()
    }
}

impl Drop for EtcdStore {
    fn drop(&mut self) {
        self.feed.abort();
    }
}

/// Maps an etcd client error: connection trouble and timeouts are [`StoreError::Unavailable`],
/// size and operation limits [`StoreError::TooLarge`], the rest [`StoreError::Backend`].
pub(crate) fn map_error(context: &str, e: etcd_client::Error) -> StoreError {
    use etcd_client::Error as E;
    let detail = format!("{context}: {e}");
    match &e {
        E::TransportError(_) | E::IoError(_) => StoreError::Unavailable(detail),
        E::GRpcStatus(status) => {
            let message = status.message();
            if message.contains("too large") || message.contains("too many operations") {
                return StoreError::TooLarge(detail);
            }
            if message.contains("no space") {
                return StoreError::StorageFull(detail);
            }
            // gRPC codes (tonic's `Code` as i32): CANCELLED 1, UNKNOWN 2, DEADLINE_EXCEEDED 4,
            // RESOURCE_EXHAUSTED 8, ABORTED 10, UNAVAILABLE 14.
            match i32::from(status.code()) {
                1 | 2 | 4 | 8 | 10 | 14 => StoreError::Unavailable(detail),
                _ => StoreError::Backend(detail),
            }
        }
        _ => StoreError::Backend(detail),
    }
}

/// Pause before resending a request that could not be sent.
const RESEND_PAUSE: Duration = Duration::from_millis(20);

/// Whether the request failed before it left this process: the connection to the member could
/// not be established.
fn never_sent(e: &etcd_client::Error) -> bool {
    let detail = format!("{e:?}");
    detail.contains("tcp connect error") || detail.contains("ConnectionRefused")
}

/// The first key after every key that starts with `prefix` (etcd's range end for a prefix).
fn prefix_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    // Every byte was 0xff: the range runs to the end of the keyspace.
    vec![0]
}

fn rev(r: i64) -> Revision {
    u64::try_from(r).unwrap_or(0)
}

impl EtcdStore {
    /// Connects to etcd, checks that it answers, and starts the change feed. Fails with
    /// [`StoreError::Unavailable`] naming the endpoints when no member answers in time.
    pub async fn connect(opts: EtcdOptions) -> Result<EtcdStore, StoreError> {
        let endpoints: Vec<String> = opts
            .endpoints
            .iter()
            .map(|e| {
                if e.contains("://") {
                    e.clone()
                } else if opts.tls.is_some() {
                    format!("https://{e}")
                } else {
                    format!("http://{e}")
                }
            })
            .collect();
        let mut connect = ConnectOptions::new()
            .with_connect_timeout(opts.request_timeout)
            .with_timeout(opts.request_timeout)
            .with_keep_alive(Duration::from_secs(2), opts.request_timeout)
            .with_keep_alive_while_idle(true)
            .with_require_leader(true);
        if let Some((user, password)) = &opts.user {
            connect = connect.with_user(user.clone(), password.clone());
        }
        if let Some(tls) = &opts.tls {
            let mut config = etcd_client::TlsOptions::new();
            if let Some(ca) = &tls.ca_pem {
                config = config.ca_certificate(etcd_client::Certificate::from_pem(ca));
            }
            if let (Some(cert), Some(key)) = (&tls.client_cert_pem, &tls.client_key_pem) {
                config = config.identity(etcd_client::Identity::from_pem(cert, key));
            }
            connect = connect.with_tls(config);
        }
        let names = opts.endpoints.join(",");
        let client = tokio::time::timeout(
            opts.request_timeout,
            Client::connect(&endpoints, Some(connect)),
        )
        .await
        .map_err(|_| StoreError::Unavailable(format!("etcd at {names} did not answer in time")))?
        .map_err(
            |e| match map_error(&format!("connect to etcd at {names}"), e) {
                StoreError::Backend(d) => StoreError::Unavailable(d),
                other => other,
            },
        )?;
        let data = format!("{}kv/", opts.prefix);
        let rev_key = format!("{}rev", opts.prefix);
        let mut kv = client.kv_client();
        let start = tokio::time::timeout(opts.request_timeout, kv.get(rev_key.clone(), None))
            .await
            .map_err(|_| {
                StoreError::Unavailable(format!("etcd at {names} did not answer in time"))
            })?
            .map_err(|e| match map_error(&format!("etcd at {names}"), e) {
                StoreError::Backend(d) => StoreError::Unavailable(d),
                other => other,
            })?
            .header()
            .map_or(0, |h| rev(h.revision()));
        let (events, _) = broadcast::channel(WATCH_CAPACITY);
        let (published_tx, published) = watch::channel(start);
        let feed = tokio::spawn(run_feed(
            client.clone(),
            opts.prefix.clone(),
            data.clone(),
            events.clone(),
            published_tx,
            start,
        ));
        Ok(EtcdStore {
            client,
            opts,
            data,
            rev_key,
            events,
            published,
            feed,
        })
    }

    /// The etcd client, for leader election and leases on the same connection.
    pub fn client(&self) -> Client {
        self.client.clone()
    }

    /// The root prefix of this store's keys in etcd.
    pub fn prefix(&self) -> &str {
        &self.opts.prefix
    }

    /// The etcd key holding the store key `key`.
    pub(crate) fn full_key(&self, key: &str) -> Vec<u8> {
        self.full(key)
    }

    /// The etcd key every transaction writes.
    pub(crate) fn rev_key(&self) -> &str {
        &self.rev_key
    }

    fn full(&self, key: &str) -> Vec<u8> {
        let mut k = Vec::with_capacity(self.data.len() + key.len());
        k.extend_from_slice(self.data.as_bytes());
        k.extend_from_slice(key.as_bytes());
        k
    }

    fn record(&self, kv: &etcd_client::KeyValue) -> Result<Record, StoreError> {
        let key = std::str::from_utf8(&kv.key()[self.data.len()..])
            .map_err(|e| StoreError::Backend(format!("etcd key is not utf-8: {e}")))?;
        Ok(Record {
            key: key.to_owned(),
            value: kv.value().to_vec(),
            revision: rev(kv.mod_revision()),
            create_revision: rev(kv.create_revision()),
        })
    }

    /// Runs one etcd request within the request timeout. A request that could not even be
    /// sent (no connection to the member the balancer picked, e.g. a member that died) is sent
    /// again, to another member, until the timeout: it never reached etcd, so resending it cannot
    /// apply anything twice.
    async fn timed<T, F, Fut>(&self, what: &str, mut op: F) -> Result<T, StoreError>
    where
        F: FnMut(KvClient) -> Fut,
        Fut: std::future::Future<Output = Result<T, etcd_client::Error>>,
    {
        let deadline = tokio::time::Instant::now() + self.opts.request_timeout;
        loop {
            let attempt = tokio::time::timeout_at(deadline, op(self.client.kv_client())).await;
            match attempt {
                Ok(Ok(v)) => return Ok(v),
                Ok(Err(e))
                    if never_sent(&e) && tokio::time::Instant::now() + RESEND_PAUSE < deadline =>
                {
                    tracing::debug!(error = %e, what, "etcd request not sent; resending");
                    tokio::time::sleep(RESEND_PAUSE).await;
                }
                Ok(Err(e)) => return Err(map_error(what, e)),
                Err(_) => {
                    return Err(StoreError::Unavailable(format!(
                        "{what}: etcd did not answer within {:?}",
                        self.opts.request_timeout
                    )));
                }
            }
        }
    }

    /// Refuses a transaction etcd would reject for its size or number of operations.
    fn check_limits(
        &self,
        conditions: usize,
        ops: &[(String, Option<Vec<u8>>)],
    ) -> Result<(), StoreError> {
        let max_ops = self.opts.max_txn_ops;
        // The success branch holds the mutations plus the revision marker.
        if ops.len() + 1 > max_ops || conditions > max_ops {
            return Err(StoreError::TooLarge(format!(
                "a transaction of {} writes and {conditions} conditions exceeds etcd's limit of {max_ops} operations per transaction",
                ops.len()
            )));
        }
        let bytes: usize = ops
            .iter()
            .map(|(k, v)| {
                self.data.len() + k.len() + v.as_ref().map_or(0, Vec::len) + PER_OP_OVERHEAD
            })
            .sum::<usize>()
            + conditions * (self.data.len() + PER_OP_OVERHEAD + 64);
        if bytes > self.opts.max_request_bytes {
            let largest = ops
                .iter()
                .max_by_key(|(_, v)| v.as_ref().map_or(0, Vec::len))
                .map(|(k, _)| k.as_str())
                .unwrap_or("");
            return Err(StoreError::TooLarge(format!(
                "a transaction of {bytes} bytes (largest record {largest}) exceeds etcd's request limit of {} bytes",
                self.opts.max_request_bytes
            )));
        }
        Ok(())
    }

    /// Waits until the change feed has published `revision` (bounded: a feed that stalls does not
    /// turn an applied commit into an error).
    async fn await_published(&self, revision: Revision) {
        let mut published = self.published.clone();
        let wait = published.wait_for(|p| *p >= revision);
        if tokio::time::timeout(self.opts.request_timeout, wait)
            .await
            .is_err()
        {
            tracing::warn!(revision, "etcd change feed is behind a committed revision");
        }
    }
}

/// Folds a transaction's mutations into one operation per key (etcd refuses a key twice in one
/// transaction), keeping each key's last mutation at the position of that mutation.
fn fold(mutations: Vec<Mutation>) -> Vec<(String, Option<Vec<u8>>)> {
    let mut out: Vec<(String, Option<Vec<u8>>)> = Vec::with_capacity(mutations.len());
    for m in mutations {
        let (key, value) = match m {
            Mutation::Put { key, value } => (key, Some(value)),
            Mutation::Delete { key } => (key, None),
        };
        out.retain(|(k, _)| *k != key);
        out.push((key, value));
    }
    out
}

#[async_trait]
impl Store for EtcdStore {
    async fn get(&self, key: &str) -> Result<Option<Record>, StoreError> {
        let full = self.full(key);
        let resp = self
            .timed(&format!("get {key}"), |mut kv| {
                let full = full.clone();
                async move { kv.get(full, None).await }
            })
            .await?;
        resp.kvs().first().map(|kv| self.record(kv)).transpose()
    }

    async fn scan(
        &self,
        prefix: &str,
        start_after: Option<&str>,
        limit: usize,
    ) -> Result<Page, StoreError> {
        let full_prefix = self.full(prefix);
        let end = prefix_end(&full_prefix);
        let mut start = match start_after {
            Some(after) if after >= prefix => {
                let mut k = self.full(after);
                k.push(0);
                k
            }
            _ => full_prefix.clone(),
        };
        let mut records = Vec::new();
        let mut at_revision: Option<i64> = None;
        loop {
            if start >= end {
                return Ok(Page {
                    records,
                    next: None,
                });
            }
            let want = if limit == 0 {
                SCAN_CHUNK
            } else {
                (limit - records.len()).min(SCAN_CHUNK)
            };
            let mut options = GetOptions::new()
                .with_range(end.clone())
                .with_limit(want as i64);
            if let Some(r) = at_revision {
                options = options.with_revision(r);
            }
            let resp = self
                .timed(&format!("scan {prefix}"), |mut kv| {
                    let (start, options) = (start.clone(), options.clone());
                    async move { kv.get(start, Some(options)).await }
                })
                .await?;
            at_revision = at_revision.or(resp.header().map(|h| h.revision()));
            for kv in resp.kvs() {
                records.push(self.record(kv)?);
            }
            let more = resp.more();
            if !more {
                return Ok(Page {
                    records,
                    next: None,
                });
            }
            if limit != 0 && records.len() >= limit {
                let next = records.last().map(|r| r.key.clone());
                return Ok(Page { records, next });
            }
            match resp.kvs().last() {
                Some(last) => {
                    start = last.key().to_vec();
                    start.push(0);
                }
                None => {
                    return Ok(Page {
                        records,
                        next: None,
                    });
                }
            }
        }
    }

    async fn commit(&self, txn: Txn) -> Result<TxnOutcome, StoreError> {
        let Txn {
            conditions,
            mutations,
        } = txn;
        let ops = fold(mutations);
        self.check_limits(conditions.len(), &ops)?;
        let mut compares = Vec::with_capacity(conditions.len());
        let mut probes = Vec::new();
        let mut probed: Vec<&str> = Vec::new();
        for Condition::Revision { key, revision } in &conditions {
            let revision = i64::try_from(*revision).map_err(|_| {
                StoreError::Backend(format!("revision {revision} of {key} is out of range"))
            })?;
            compares.push(Compare::mod_revision(
                self.full(key),
                CompareOp::Equal,
                revision,
            ));
            if !probed.contains(&key.as_str()) {
                probed.push(key);
                probes.push(TxnOp::get(
                    self.full(key),
                    Some(GetOptions::new().with_keys_only()),
                ));
            }
        }
        let mut writes: Vec<TxnOp> = ops
            .iter()
            .map(|(key, value)| match value {
                Some(value) => TxnOp::put(self.full(key), value.clone(), None),
                None => TxnOp::delete(self.full(key), None),
            })
            .collect();
        writes.push(TxnOp::put(self.rev_key.clone(), Vec::new(), None));
        let request = etcd_client::Txn::new()
            .when(compares)
            .and_then(writes)
            .or_else(probes);
        let resp = self
            .timed("commit", |mut kv| {
                let request = request.clone();
                async move { kv.txn(request).await }
            })
            .await?;
        if resp.succeeded() {
            let revision = resp.header().map_or(0, |h| rev(h.revision()));
            self.await_published(revision).await;
            return Ok(TxnOutcome::Committed { revision });
        }
        // Name the first condition that failed, from the revisions etcd read atomically.
        let mut current = std::collections::HashMap::new();
        for (key, op) in probed.iter().zip(resp.op_responses()) {
            if let TxnOpResponse::Get(get) = op {
                current.insert(
                    *key,
                    get.kvs().first().map_or(0, |kv| rev(kv.mod_revision())),
                );
            }
        }
        let failed = conditions
            .iter()
            .find(|Condition::Revision { key, revision }| {
                current.get(key.as_str()).copied().unwrap_or(0) != *revision
            })
            .or(conditions.first());
        match failed {
            Some(Condition::Revision { key, .. }) => Ok(TxnOutcome::Conflict { key: key.clone() }),
            None => Err(StoreError::Backend(
                "etcd refused a transaction without conditions".into(),
            )),
        }
    }

    async fn revision(&self) -> Result<Revision, StoreError> {
        let resp = self
            .timed("read revision", |mut kv| {
                let key = self.rev_key.clone();
                async move { kv.get(key, Some(GetOptions::new().with_count_only())).await }
            })
            .await?;
        Ok(resp.header().map_or(0, |h| rev(h.revision())))
    }

    fn watch(&self, prefix: &str) -> Watch {
        Watch::new(prefix, self.events.subscribe())
    }
}

/// The change feed: watches `root` from `start + 1`, publishes one batch per revision, and resumes
/// after disconnects from the revision after the last one published.
async fn run_feed(
    client: Client,
    root: String,
    data: String,
    events: broadcast::Sender<Arc<Vec<Event>>>,
    published: watch::Sender<Revision>,
    start: Revision,
) {
    let mut last = start;
    let mut backoff = Duration::from_millis(50);
    loop {
        let options = WatchOptions::new()
            .with_prefix()
            .with_start_revision(i64::try_from(last + 1).unwrap_or(i64::MAX))
            .with_progress_notify();
        let mut watch_client = client.watch_client();
        let opening = watch_client.watch(root.clone(), Some(options));
        let opened = match tokio::time::timeout(Duration::from_secs(5), opening).await {
            Ok(opened) => opened,
            Err(_) => Err(etcd_client::Error::WatchError(
                "no answer to the watch request".into(),
            )),
        };
        let mut stream = match opened {
            Ok(stream) => stream,
            Err(e) => {
                tracing::warn!(error = %e, "etcd watch failed; retrying");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(2));
                continue;
            }
        };
        loop {
            let resp = match stream.message().await {
                Ok(Some(resp)) => resp,
                Ok(None) => {
                    tracing::warn!("etcd watch ended; resuming");
                    break;
                }
                Err(e) => {
                    tracing::warn!(error = %e, "etcd watch failed; resuming");
                    break;
                }
            };
            backoff = Duration::from_millis(50);
            if resp.compact_revision() > 0 || (resp.canceled() && resp.compact_revision() > 0) {
                // The history we resume from is gone: subscribers must re-read.
                tracing::warn!(
                    compact_revision = resp.compact_revision(),
                    last,
                    "etcd compacted the change feed's history; watchers re-read"
                );
                let _ = events.send(Arc::new(Vec::new()));
                last = rev(resp.compact_revision()).saturating_sub(1).max(last);
                break;
            }
            if resp.canceled() {
                tracing::warn!(
                    reason = resp.cancel_reason(),
                    "etcd watch canceled; resuming"
                );
                break;
            }
            let mut batch: Vec<Event> = Vec::new();
            let mut batch_rev = 0;
            for ev in resp.events() {
                let Some(kv) = ev.kv() else { continue };
                let r = rev(kv.mod_revision());
                if r <= last {
                    continue;
                }
                if r != batch_rev && batch_rev != 0 {
                    flush(&events, &published, &mut batch, batch_rev);
                    last = batch_rev;
                }
                batch_rev = r;
                let Some(key) = kv.key().strip_prefix(data.as_bytes()) else {
                    continue;
                };
                let Ok(key) = std::str::from_utf8(key) else {
                    continue;
                };
                batch.push(Event {
                    revision: r,
                    key: key.to_owned(),
                    value: match ev.event_type() {
                        EventType::Put => Some(kv.value().to_vec()),
                        EventType::Delete => None,
                    },
                });
            }
            if batch_rev != 0 {
                flush(&events, &published, &mut batch, batch_rev);
                last = batch_rev;
            }
            // A progress notification says every event up to its header revision was sent.
            // (Not the response confirming the watch's creation: its header is the current
            // revision, whose events may still follow.)
            if resp.events().is_empty()
                && !resp.created()
                && let Some(header) = resp.header()
            {
                let r = rev(header.revision());
                if r > last {
                    last = r;
                    published.send_if_modified(|p| {
                        let changed = *p < r;
                        *p = (*p).max(r);
                        changed
                    });
                }
            }
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_secs(2));
    }
}

fn flush(
    events: &broadcast::Sender<Arc<Vec<Event>>>,
    published: &watch::Sender<Revision>,
    batch: &mut Vec<Event>,
    revision: Revision,
) {
    if !batch.is_empty() {
        // No subscribers is fine.
        let _ = events.send(Arc::new(std::mem::take(batch)));
    }
    published.send_if_modified(|p| {
        let changed = *p < revision;
        *p = (*p).max(revision);
        changed
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_store_urls() {
        let o = EtcdOptions::from_url("etcd://127.0.0.1:2379").expect("one endpoint");
        assert_eq!(o.endpoints, ["127.0.0.1:2379"]);
        assert_eq!(o.prefix, "/gantry/");
        let o = EtcdOptions::from_url("etcd://a:1,b:2,c:3/prod/ecs").expect("three endpoints");
        assert_eq!(o.endpoints, ["a:1", "b:2", "c:3"]);
        assert_eq!(o.prefix, "/prod/ecs/");
        for bad in [
            "sqlite://x",
            "etcd://",
            "etcd://host",
            "etcd://host:port",
            "etcd://:1",
        ] {
            assert!(EtcdOptions::from_url(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn folds_mutations_to_one_per_key_in_last_write_order() {
        let folded = fold(vec![
            Mutation::Put {
                key: "a".into(),
                value: b"1".to_vec(),
            },
            Mutation::Put {
                key: "b".into(),
                value: b"1".to_vec(),
            },
            Mutation::Delete { key: "a".into() },
            Mutation::Put {
                key: "b".into(),
                value: b"2".to_vec(),
            },
        ]);
        assert_eq!(
            folded,
            [
                ("a".to_owned(), None),
                ("b".to_owned(), Some(b"2".to_vec()))
            ]
        );
    }

    #[test]
    fn prefix_end_is_the_next_key_after_the_prefix() {
        assert_eq!(prefix_end(b"/g/kv/a"), b"/g/kv/b");
        assert_eq!(prefix_end(b"a\xff"), b"b");
        assert_eq!(prefix_end(b"\xff"), vec![0]);
    }
}
