//! The once-per-machine template data directory that test clusters are copied from.

use super::os::owner_uid;
use super::{err, server_major_version, Cluster, Result};
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// Marks a complete template; holds `TEMPLATE_FORMAT`.
pub(super) const TEMPLATE_MARKER: &str = ".shardgate-template";
/// Bump when the template's making changes, so stale templates are not reused.
const TEMPLATE_FORMAT: u32 = 3;
/// The database every copy of the template comes with.
pub const TEMPLATE_DATABASE: &str = "app";

/// A freshly initdb'ed data directory, already holding the database `app`, shared by every cluster on
/// this machine and built once; clusters start from a copy, which is cheaper than initdb, and a copy
/// of `app` is cheaper than CREATE DATABASE, which writes every page twice (data and WAL).
pub fn template(bindir: &Path) -> Result<PathBuf> {
    // Threads of one process wait for each other; processes race through `rename`, which is atomic.
    static BUILD: Mutex<()> = Mutex::new(());
    let _guard = BUILD.lock().unwrap_or_else(|p| p.into_inner());
    let version = server_major_version(bindir)?;
    // The format in the name keeps processes from ever replacing a template another one is copying.
    let name = format!(
        "shardgate-pg-template-{version}-{}-v{TEMPLATE_FORMAT}",
        owner_uid()?
    );
    let path = std::env::temp_dir().join(&name);
    let complete = |p: &Path| {
        fs::read_to_string(p.join(TEMPLATE_MARKER))
            .is_ok_and(|m| m.trim() == TEMPLATE_FORMAT.to_string())
    };
    if complete(&path) {
        return Ok(path);
    }
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    let building = std::env::temp_dir().join(format!("{name}.tmp-{}-{nanos}", std::process::id()));
    // 1 MB WAL segments instead of 16: every copy of the template writes 15 MB less.
    let cluster = Cluster::initdb(bindir, &building, 0, &["--wal-segsize=1"])?;
    cluster.single_user_sql(&format!("CREATE DATABASE {TEMPLATE_DATABASE}"))?;
    fs::write(
        cluster.dir.join(TEMPLATE_MARKER),
        TEMPLATE_FORMAT.to_string(),
    )
    .map_err(|e| err(format!("cannot write the template marker: {e}")))?;
    if fs::rename(&building, &path).is_err() {
        if complete(&path) {
            let _ = fs::remove_dir_all(&building);
            return Ok(path);
        }
        // Debris (say, of a manual copy) holds the name: replace it.
        let _ = fs::remove_dir_all(&path);
        fs::rename(&building, &path).map_err(|e| {
            err(format!(
                "cannot move the template into {}: {e}",
                path.display()
            ))
        })?;
    }
    Ok(path)
}
