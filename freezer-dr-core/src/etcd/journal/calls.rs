//! The etcd journal's own calls: construction, the schema and layout checks, guarded writes (the fencing
//! token compared in the same transaction), batched reads, and the operations of one commit.

use super::*;

impl EtcdJournal {
    pub(crate) fn new(
        client: Client,
        keys: Keys,
        cfg: &HaConfig,
        leadership: Option<Leadership>,
    ) -> Self {
        Self {
            inner: Arc::new(Inner {
                client,
                keys,
                leadership,
                timeout: cfg.request_timeout,
                max_ops: cfg.max_txn_ops,
                max_bytes: cfg.max_request_bytes,
                history_seq: Mutex::new(None),
            }),
        }
    }

    /// The etcd key prefix of this journal (`/freezer-dr/<election>/`).
    pub fn prefix(&self) -> &str {
        self.inner.keys.prefix()
    }

    /// The fencing token this journal writes under, if it is bound to a won election.
    pub fn token(&self) -> Option<i64> {
        self.inner.leadership.as_ref().map(Leadership::token)
    }

    pub(super) fn client(&self) -> Client {
        self.inner.client.clone()
    }

    /// One etcd call under the request timeout.
    pub(super) async fn call<T>(
        &self,
        what: &str,
        fut: impl Future<Output = std::result::Result<T, etcd_client::Error>>,
    ) -> Result<T> {
        call(self.inner.timeout, what, fut)
            .await
            .map_err(|e| e.with_context("etcd prefix", self.prefix()))
    }

    pub(super) async fn get(
        &self,
        what: &str,
        key: String,
        opts: Option<GetOptions>,
    ) -> Result<GetResponse> {
        let mut c = self.client();
        self.call(what, c.get(key, opts)).await
    }

    /// Checks the layout version (the leader writes it into a fresh journal), and gives the journal its
    /// stable id if it has none yet (a fresh journal, or one written by release 0.1).
    pub(crate) async fn check_schema(&self) -> Result<()> {
        self.check_layout().await?;
        let id = encode(&crate::journal::new_journal_id())?;
        self.put_if_absent("give the journal its id", self.inner.keys.journal_id(), id)
            .await
    }

    /// As the leader, writes `key` if it does not exist. A failed compare means it exists already
    /// (another writer got there first), or that we were deposed, which the next commit finds out. A
    /// process that does not lead writes nothing.
    async fn put_if_absent(&self, what: &str, key: String, value: String) -> Result<()> {
        let Some(lead) = &self.inner.leadership else {
            return Ok(());
        };
        let txn = Txn::new()
            .when([
                lead.compare(&self.inner.keys),
                Compare::version(key.clone(), CompareOp::Equal, 0),
            ])
            .and_then([TxnOp::put(key, value, None)]);
        let mut c = self.client();
        self.call(what, c.txn(txn)).await?;
        Ok(())
    }

    pub(super) async fn check_layout(&self) -> Result<()> {
        let resp = self
            .get("read the journal layout", self.inner.keys.schema(), None)
            .await?;
        match resp.kvs().first() {
            Some(kv) => {
                let v: u64 = decode(kv)?;
                if v > SCHEMA {
                    return Err(Error::new(
                        ErrorKind::Journal,
                        format!(
                            "the etcd journal under {} was written by a newer freezer-dr (layout {v}, \
                             this one knows {SCHEMA}); upgrade freezer-dr or use another [ha] election",
                            self.prefix()
                        ),
                    ));
                }
                Ok(())
            }
            None => {
                let layout = encode(&SCHEMA)?;
                self.put_if_absent("write the journal layout", self.inner.keys.schema(), layout)
                    .await
            }
        }
    }

    /// One transaction that runs `ops` only if this process still holds the fencing token, within the
    /// local lease deadline; a failed check deposes this leader.
    pub(super) async fn guarded(
        &self,
        lead: &Leadership,
        ops: Vec<TxnOp>,
        what: &'static str,
    ) -> Result<()> {
        let k = &self.inner.keys;
        // Never wait past the local deadline: an answer after it would be acted on too late.
        let budget = lead.remaining().min(self.inner.timeout);
        if budget.is_zero() {
            return Err(lead.deadline_error());
        }
        let txn = Txn::new()
            .when([lead.compare(k)])
            .and_then(ops)
            .or_else([TxnOp::get(k.leader(), None)]);
        let mut client = self.client();
        let resp = call(budget, what, client.txn(txn)).await.map_err(|e| {
            if e.kind() == ErrorKind::Timeout && lead.remaining().is_zero() {
                lead.deadline_error()
            } else {
                e.with_context("etcd prefix", self.prefix())
            }
        })?;
        if !resp.succeeded() {
            let holder = get_responses(&resp)
                .first()
                .and_then(|g| g.kvs().first().cloned())
                .and_then(|kv| decode::<crate::ha::Member>(&kv).ok())
                .map_or_else(
                    || "nobody holds the leader key".to_owned(),
                    |m| format!("{} leads now", m.describe()),
                );
            return Err(lead.depose(&holder));
        }
        Ok(())
    }

    pub(super) fn leadership(&self) -> Result<&Leadership> {
        self.inner.leadership.as_ref().ok_or_else(|| {
            Error::new(
                ErrorKind::NotLeader,
                "this etcd journal is read-only (status, history, operator requests): only the \
                 elected leader writes the recovery state",
            )
            .permanent()
        })
    }

    /// Reads several keys in one round trip (in chunks of the transaction limit).
    pub(super) async fn get_many(&self, keys: Vec<String>) -> Result<BTreeMap<String, KeyValue>> {
        let mut out = BTreeMap::new();
        for chunk in keys.chunks(self.inner.max_ops.max(1)) {
            let txn = Txn::new().and_then(
                chunk
                    .iter()
                    .map(|k| TxnOp::get(k.clone(), None))
                    .collect::<Vec<_>>(),
            );
            let mut c = self.client();
            let resp = self.call("read the journal", c.txn(txn)).await?;
            for r in resp.op_responses() {
                if let TxnOpResponse::Get(g) = r {
                    for kv in g.kvs() {
                        out.insert(String::from_utf8_lossy(kv.key()).into_owned(), kv.clone());
                    }
                }
            }
        }
        Ok(out)
    }

    /// The next history sequence number: one past the newest history key.
    pub(super) async fn next_history_seq(&self) -> Result<u64> {
        let k = &self.inner.keys;
        let newest = by_key(SortOrder::Descend).with_limit(1).with_keys_only();
        let resp = self
            .get("read the newest history key", k.history(), Some(newest))
            .await?;
        Ok(match resp.kvs().first() {
            Some(kv) => {
                let key = String::from_utf8_lossy(kv.key()).into_owned();
                key.rsplit('/')
                    .next()
                    .and_then(|n| n.parse::<u64>().ok())
                    .map_or(0, |n| n + 1)
            }
            None => 0,
        })
    }
}

/// The operations of one commit, with their size, checked against etcd's limits before sending.
#[derive(Default)]
pub(super) struct Ops {
    pub(super) ops: Vec<TxnOp>,
    pub(super) bytes: usize,
}

impl Ops {
    pub(super) fn put(&mut self, key: String, value: String) {
        self.bytes += key.len() + value.len() + 16;
        self.ops.push(TxnOp::put(key, value, None));
    }
    pub(super) fn delete(&mut self, key: String, opts: Option<DeleteOptions>) {
        self.bytes += 2 * key.len() + 16;
        self.ops.push(TxnOp::delete(key, opts));
    }
}

/// Every key under the prefix, sorted by key in `order`.
pub(super) fn by_key(order: SortOrder) -> GetOptions {
    GetOptions::new()
        .with_prefix()
        .with_sort(SortTarget::Key, order)
}
