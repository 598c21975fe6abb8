//! The integration-test harness: throwaway real PostgreSQL shards (separate clusters, or databases on one
//! cluster) that stop and vanish when dropped, even if the test panics or the process is killed.
#![allow(dead_code)] // each test binary uses its own subset

pub mod pki;
pub mod proxy;

use shardgate::localpg::{self, Cluster};
use std::path::PathBuf;
use std::process::Child;

/// How many times a cluster moves to a new port when its port was taken between choosing and binding.
const PORT_ATTEMPTS: usize = 5;

/// Where test clusters live: `$SHARDGATE_TEST_DIR`, else /dev/shm when it is a tmpfs with room to spare,
/// else the temp dir. A cluster is ~1300 files, and creating files is the slow part of starting one:
/// ~10x slower on some disks (virtualised ext4) than on tmpfs. Test data need not survive a reboot.
pub fn scratch_root() -> PathBuf {
    if let Some(dir) = std::env::var_os("SHARDGATE_TEST_DIR") {
        return dir.into();
    }
    const TMPFS_MAGIC: i64 = 0x0102_1994;
    const ENOUGH: u64 = 2 << 30;
    let shm = c"/dev/shm";
    // SAFETY: statfs writes only into the zeroed struct we pass, and the path is NUL-terminated.
    let roomy_tmpfs = unsafe {
        let mut fs: libc::statfs = std::mem::zeroed();
        libc::statfs(shm.as_ptr(), &mut fs) == 0
            && fs.f_type as i64 == TMPFS_MAGIC
            && (fs.f_bavail as u64).saturating_mul(fs.f_bsize as u64) >= ENOUGH
            && libc::access(shm.as_ptr(), libc::W_OK | libc::X_OK) == 0
    };
    if roomy_tmpfs {
        PathBuf::from("/dev/shm")
    } else {
        std::env::temp_dir()
    }
}

/// Options for `Shards::start_with`.
#[derive(Debug, Clone)]
pub struct Options {
    /// The database each cluster gets (`app` by default).
    pub db_name: String,
    /// Extra `-c name=value` settings for every server.
    pub settings: Vec<(String, String)>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            db_name: "app".into(),
            settings: Vec::new(),
        }
    }
}

/// Test shards: `urls()[i]` is shard i. Dropping stops the servers and deletes their files.
pub struct Shards {
    clusters: Vec<Cluster>,
    /// (cluster index, database) per shard.
    shards: Vec<(usize, String)>,
    base: Option<tempfile::TempDir>,
    reaper: Option<Child>,
}

impl Shards {
    /// `n` separate clusters, each with the database `app`.
    pub async fn start(n: usize) -> Shards {
        Shards::start_with(n, Options::default()).await
    }

    pub async fn start_with(n: usize, options: Options) -> Shards {
        let dbs = (0..n).map(|i| (i, options.db_name.clone())).collect();
        Shards::launch(n, dbs, options.settings).await
    }

    /// `n` databases `shard_0..shard_{n-1}` on one fresh cluster: cheaper, but shards cannot be stopped
    /// one at a time.
    pub async fn databases(n: usize) -> Shards {
        let dbs = (0..n).map(|i| (0, format!("shard_{i}"))).collect();
        Shards::launch(1, dbs, Vec::new()).await
    }

    async fn launch(
        clusters: usize,
        shards: Vec<(usize, String)>,
        settings: Vec<(String, String)>,
    ) -> Shards {
        let bindir = localpg::find_bindir().unwrap_or_else(|e| panic!("{e}"));
        let template = {
            let bindir = bindir.clone();
            tokio::task::spawn_blocking(move || localpg::template(&bindir))
                .await
                .unwrap()
                .unwrap_or_else(|e| panic!("cannot build the PostgreSQL template: {e}"))
        };
        let base = tempfile::Builder::new()
            .prefix("shardgate-test-")
            .tempdir_in(scratch_root())
            .expect("cannot create a temporary directory");
        // tempfile makes it 0700; the postgres user must be able to walk into it.
        std::fs::set_permissions(
            base.path(),
            std::os::unix::fs::PermissionsExt::from_mode(0o755),
        )
        .unwrap();
        let dirs: Vec<PathBuf> = (0..clusters)
            .map(|i| base.path().join(format!("pg{i}")))
            .collect();
        // Armed before any server starts, so not even a panic in the middle of this function leaks one.
        let reaper = localpg::spawn_reaper(std::process::id(), &dirs, Some(base.path()))
            .unwrap_or_else(|e| panic!("{e}"));
        let mut this = Shards {
            clusters: Vec::new(),
            shards,
            base: Some(base),
            reaper: Some(reaper),
        };
        let starts = dirs.into_iter().map(|dir| {
            let (bindir, template, settings) = (bindir.clone(), template.clone(), settings.clone());
            tokio::task::spawn_blocking(move || -> Result<Cluster, shardgate::error::Error> {
                let port = localpg::free_port()?;
                let mut cluster = Cluster::from_template(&bindir, &template, &dir, port)?;
                cluster.settings.extend(settings);
                cluster.start_on_free_port(PORT_ATTEMPTS)?;
                Ok(cluster)
            })
        });
        let mut failure = None;
        for start in starts.collect::<Vec<_>>() {
            match start.await.unwrap() {
                Ok(cluster) => this.clusters.push(cluster),
                Err(e) => failure = failure.or(Some(e)),
            }
        }
        if let Some(e) = failure {
            panic!("cannot start a test cluster: {e}");
        }
        let creates: Vec<_> = (this.shards.iter())
            .map(|(i, db)| {
                let (cluster, db) = (this.clusters[*i].clone(), db.clone());
                tokio::spawn(async move { cluster.create_database(&db).await })
            })
            .collect();
        for created in creates {
            created.await.unwrap().unwrap_or_else(|e| panic!("{e}"));
        }
        this
    }

    pub fn len(&self) -> usize {
        self.shards.len()
    }

    pub fn url(&self, shard: usize) -> String {
        let (cluster, db) = &self.shards[shard];
        self.clusters[*cluster].url(db)
    }

    /// `postgres://postgres@127.0.0.1:PORT/DB`, one per shard.
    pub fn urls(&self) -> Vec<String> {
        (0..self.len()).map(|i| self.url(i)).collect()
    }

    /// `[[shards]]` entries named s0, s1, ... for a shards.toml.
    pub fn shards_toml(&self) -> String {
        let entries = self
            .urls()
            .into_iter()
            .enumerate()
            .map(|(i, url)| format!("[[shards]]\nname = \"s{i}\"\nurl = \"{url}\"\n"));
        entries.collect::<Vec<_>>().join("\n")
    }

    /// The cluster serving shard `shard`.
    pub fn cluster(&self, shard: usize) -> &Cluster {
        &self.clusters[self.shards[shard].0]
    }

    /// A client connected straight to the shard's database, bypassing the proxy.
    pub async fn client(&self, shard: usize) -> tokio_postgres::Client {
        let (_, db) = &self.shards[shard];
        self.cluster(shard)
            .connect(db)
            .await
            .unwrap_or_else(|e| panic!("{e}"))
    }

    /// Waits, up to 10 s, until a shard runs `sql` (its text as the shard sees it). A cancel
    /// request that comes before the statement finds nothing to cancel and is dropped, as
    /// PostgreSQL drops it, so a test that cancels first waits for this instead of a guess.
    pub async fn until_running(&self, sql: &str) {
        let q = format!(
            "SELECT count(*) FROM pg_stat_activity WHERE query = '{}' AND state = 'active'",
            sql.replace('\'', "''")
        );
        let running = proxy::eventually(10, || async {
            self.scalar_each(&q).await.iter().any(|&n| n > 0)
        })
        .await;
        assert!(running, "{sql} did not start on any shard");
    }

    /// A single bigint (a count, say) from every shard directly, in shard order.
    pub async fn scalar_each(&self, sql: &str) -> Vec<i64> {
        let mut out = Vec::with_capacity(self.len());
        for i in 0..self.len() {
            let row = self.client(i).await.query_one(sql, &[]).await;
            out.push(
                row.unwrap_or_else(|e| panic!("shard {i}: {sql}: {e}"))
                    .get(0),
            );
        }
        out
    }

    fn own_cluster(&self, shard: usize) -> &Cluster {
        assert!(
            self.clusters.len() == self.shards.len(),
            "stop_shard/start_shard need one cluster per shard: use Shards::start, not Shards::databases"
        );
        self.cluster(shard)
    }

    /// Stops the shard's server in fast mode: open sessions get FATAL 57P01 ("terminating connection due
    /// to administrator command") and are closed, as in a DBA's restart. Its url stays the same.
    pub fn stop_shard(&self, shard: usize) {
        self.own_cluster(shard)
            .stop()
            .unwrap_or_else(|e| panic!("{e}"));
    }

    /// Kills the shard's server outright (SIGKILL to all its processes): open connections drop with no
    /// error message, as when a machine dies; `stop_shard` instead sends sessions FATAL 57P01 first.
    pub fn kill_shard(&self, shard: usize) {
        self.own_cluster(shard).kill();
    }

    /// Makes every shard's server refuse connections without TLS (`hostnossl ... reject` first in
    /// pg_hba.conf), so that a plain connection cannot get through unnoticed. The harness's own
    /// direct clients (`client`, `scalar_each`) are refused from then on too.
    pub async fn reject_plain(&self) {
        for cluster in &self.clusters {
            let hba = cluster.dir().join("pg_hba.conf");
            let old = std::fs::read_to_string(&hba).unwrap();
            let rules = "hostnossl all all 127.0.0.1/32 reject\nhostnossl all all ::1/128 reject\n";
            // Rewritten in place, so it keeps the PostgreSQL user as owner.
            std::fs::write(&hba, format!("{rules}{old}")).unwrap();
            let c = cluster.connect("postgres").await.unwrap();
            c.batch_execute("SELECT pg_reload_conf()").await.unwrap();
            drop(c);
            // The postmaster rereads pg_hba.conf a moment after the signal.
            let refused =
                proxy::eventually(10, || async { cluster.connect("postgres").await.is_err() });
            assert!(refused.await, "the server still takes plain connections");
        }
    }

    /// Restarts a stopped shard on its old port, so urls handed out earlier work again.
    pub fn start_shard(&self, shard: usize) {
        self.own_cluster(shard)
            .start()
            .unwrap_or_else(|e| panic!("{e}"));
    }
}

impl Drop for Shards {
    fn drop(&mut self) {
        for cluster in &self.clusters {
            cluster.stop_immediate();
        }
        if let Some(base) = self.base.take() {
            let _ = base.close();
        }
        if let Some(mut reaper) = self.reaper.take() {
            let _ = reaper.kill();
            let _ = reaper.wait();
        }
    }
}
