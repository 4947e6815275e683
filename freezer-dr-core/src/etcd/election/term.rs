//! One term as leader: stand by, lead (a runtime on the etcd journal bound to the leadership), and go
//! back to standby when deposed or when the local lease deadline passes.

use super::*;

/// How one term as leader ended.
enum Led {
    Shutdown(Result<()>),
    Lost(String),
    Failed(Error),
}

impl Candidate {
    /// The active/passive loop, until `shutdown` resolves: stand by until elected, then run the
    /// [`Runtime`] that `build` makes on the etcd journal bound to this leadership, until shutdown (it is
    /// drained, then the lease is revoked so a standby takes over at once) or until leadership is lost
    /// (deposed, lease expired, local deadline passed: the runtime is stopped at once, in-flight calls
    /// included, and this process stands by again). A runtime that fails otherwise (etcd unreachable) is
    /// stopped, the lease revoked, and the candidacy starts again after a pause. Returns an error only
    /// for what trying again cannot fix (`build` failing, bad credentials, a newer journal layout).
    pub async fn run_as_leader<F>(
        &self,
        mut build: F,
        shutdown: impl Future<Output = ()> + Send,
    ) -> Result<()>
    where
        F: FnMut(Arc<dyn Journal>) -> Result<Runtime> + Send,
    {
        tokio::pin!(shutdown);
        let pause = (self.cfg.lease_ttl / 2).max(Duration::from_millis(500));
        loop {
            let leadership = tokio::select! {
                () = &mut shutdown => {
                    self.resign().await;
                    return Ok(());
                }
                r = self.campaign() => match r {
                    Ok(l) => l,
                    Err(e) if e.kind() == ErrorKind::Auth || e.kind() == ErrorKind::Config => return Err(e),
                    Err(e) => {
                        warn!(error = %e, "cannot take part in the election; trying again");
                        tokio::select! {
                            () = &mut shutdown => return Ok(()),
                            () = tokio::time::sleep(pause) => continue,
                        }
                    }
                },
            };
            let token = leadership.token();
            info!(
                token,
                election = %self.cfg.election,
                id = %self.me.id,
                "elected leader: resuming from the etcd journal"
            );
            self.leading.send_replace(Some(token));
            let outcome = self.lead(&leadership, &mut build, &mut shutdown).await;
            self.leading.send_replace(None);
            match outcome {
                Led::Shutdown(r) => {
                    self.resign().await;
                    return r;
                }
                Led::Lost(why) => {
                    warn!(token, why = %why, "leadership lost: stopped acting, standing by again");
                    drop(leadership);
                    // A new lease for the next candidacy; the old one is revoked in the background.
                    let old = self.session.lock().await.take();
                    if let Some(s) = old {
                        self.revoke_later(s.state.id);
                    }
                }
                Led::Failed(e) => {
                    if matches!(e.kind(), ErrorKind::Config | ErrorKind::Auth)
                        || (e.kind() == ErrorKind::Journal && !e.is_temporary())
                    {
                        self.resign().await;
                        return Err(e);
                    }
                    error!(token, error = %e, "the leader failed: resigning, then standing by again");
                    drop(leadership);
                    self.resign().await;
                    tokio::select! {
                        () = &mut shutdown => return Ok(()),
                        () = tokio::time::sleep(pause) => {}
                    }
                }
            }
        }
    }

    async fn lead<F, S>(
        &self,
        leadership: &Leadership,
        build: &mut F,
        shutdown: &mut std::pin::Pin<&mut S>,
    ) -> Led
    where
        F: FnMut(Arc<dyn Journal>) -> Result<Runtime> + Send,
        S: Future<Output = ()> + Send,
    {
        let journal = match self.leader_journal(leadership).await {
            Ok(j) => Arc::new(j),
            Err(e) => return Led::Failed(e),
        };
        let runtime = match build(journal) {
            Ok(r) => r,
            Err(e) => return Led::Failed(e.with_context("while", "building the runtime")),
        };
        let (stop_tx, mut stop_rx) = watch::channel(false);
        let run = runtime.run(async move {
            let _ = stop_rx.wait_for(|s| *s).await;
        });
        tokio::pin!(run);
        let mut stopping = false;
        loop {
            tokio::select! {
                r = &mut run => {
                    return match r {
                        Ok(()) => Led::Shutdown(Ok(())),
                        Err(e) if e.kind() == ErrorKind::NotLeader => Led::Lost(e.to_string()),
                        Err(e) => Led::Failed(e),
                    };
                }
                () = shutdown.as_mut(), if !stopping => {
                    stopping = true;
                    stop_tx.send_replace(true);
                }
                // Dropping the runtime here aborts its in-flight calls too: it must not act any more.
                () = leadership.lost() => {
                    return Led::Lost(leadership.why_lost().unwrap_or_default());
                }
            }
        }
    }
}
