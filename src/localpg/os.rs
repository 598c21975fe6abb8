//! The OS side of running PostgreSQL: which user it runs as (never root), ownership and modes of its
//! directories, copying data directories, and watching processes.

use super::{err, Result};
use std::ffi::CString;
use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;

fn lookup_user(name: &str) -> Option<(u32, u32)> {
    let cname = CString::new(name).ok()?;
    let mut buf = vec![0 as libc::c_char; 16 * 1024];
    // SAFETY: getpwnam_r only writes into `pwd` and `buf`, both live and sized as passed.
    unsafe {
        let mut pwd: libc::passwd = std::mem::zeroed();
        let mut found: *mut libc::passwd = std::ptr::null_mut();
        let rc = libc::getpwnam_r(
            cname.as_ptr(),
            &mut pwd,
            buf.as_mut_ptr(),
            buf.len(),
            &mut found,
        );
        (rc == 0 && !found.is_null()).then_some((pwd.pw_uid, pwd.pw_gid))
    }
}

fn is_root() -> bool {
    // SAFETY: geteuid cannot fail and touches no memory.
    unsafe { libc::geteuid() == 0 }
}

fn create_postgres_user() -> Result<()> {
    // `--user-group` fails when a `postgres` group already exists (a half-removed package); join it then.
    for group_arg in ["--user-group", "--gid=postgres"] {
        let status = Command::new("useradd")
            .args(["--system", "--no-create-home", group_arg, "postgres"])
            .stderr(Stdio::null())
            .status();
        if matches!(status, Ok(s) if s.success()) || lookup_user("postgres").is_some() {
            return Ok(());
        }
    }
    Err(err(
        "running as root, and PostgreSQL refuses to run as root, but the `postgres` user does not exist \
         and `useradd --system --no-create-home postgres` failed; create that user or run as another user",
    ))
}

/// The (uid, gid) PostgreSQL commands run as: `postgres` when we are root (created if missing), else
/// `None`, meaning the current user.
pub fn run_as() -> Result<Option<(u32, u32)>> {
    static RUN_AS: OnceLock<Result<Option<(u32, u32)>>> = OnceLock::new();
    RUN_AS
        .get_or_init(|| {
            if !is_root() {
                return Ok(None);
            }
            if lookup_user("postgres").is_none() {
                create_postgres_user()?;
            }
            lookup_user("postgres")
                .map(Some)
                .ok_or_else(|| err("the `postgres` user vanished right after it was created"))
        })
        .clone()
}

/// The uid owning cluster files: the `postgres` user under root, else ourselves.
pub(super) fn owner_uid() -> Result<u32> {
    // SAFETY: geteuid cannot fail and touches no memory.
    Ok(run_as()?.map_or_else(|| unsafe { libc::geteuid() }, |(uid, _)| uid))
}

fn chown(path: &Path, owner: Option<(u32, u32)>) -> Result<()> {
    if let Some((uid, gid)) = owner {
        std::os::unix::fs::lchown(path, Some(uid), Some(gid))
            .map_err(|e| err(format!("cannot chown {}: {e}", path.display())))?;
    }
    Ok(())
}

/// Under root, gives "others" search permission on ancestors that lack it (e.g. /root), since the
/// `postgres` user must walk down to its data directory; nothing is made readable.
pub(super) fn ensure_traversable(dir: &Path) -> Result<()> {
    let Some((uid, _)) = run_as()? else {
        return Ok(());
    };
    for ancestor in dir.ancestors().skip(1) {
        let Ok(meta) = fs::metadata(ancestor) else {
            continue;
        };
        if meta.uid() != uid && meta.mode() & 0o001 == 0 {
            tracing::warn!(dir = %ancestor.display(), "adding o+x so the postgres user can reach its data");
            let mode = (meta.mode() | 0o001) & 0o7777;
            fs::set_permissions(ancestor, fs::Permissions::from_mode(mode)).map_err(|e| {
                err(format!(
                    "cannot make {} traversable: {e}",
                    ancestor.display()
                ))
            })?;
        }
    }
    Ok(())
}

/// Creates `dir` (and its parents) as an empty-or-existing data directory owned by the PostgreSQL user,
/// mode 0700 as the server demands.
pub fn prepare_data_dir(dir: &Path) -> Result<()> {
    fs::create_dir_all(dir).map_err(|e| err(format!("cannot create {}: {e}", dir.display())))?;
    fs::set_permissions(dir, fs::Permissions::from_mode(0o700))
        .map_err(|e| err(format!("cannot chmod {}: {e}", dir.display())))?;
    chown(dir, run_as()?)?;
    ensure_traversable(dir)
}

/// Copies a directory tree, keeping modes, handing every entry to `owner` (when set).
pub fn copy_tree(src: &Path, dst: &Path, owner: Option<(u32, u32)>, skip: &[&str]) -> Result<()> {
    let io = |what: &str, p: &Path, e: std::io::Error| {
        err(format!("cannot {what} {}: {e}", p.display()))
    };
    let mode = fs::metadata(src).map_err(|e| io("stat", src, e))?.mode();
    fs::create_dir_all(dst).map_err(|e| io("create", dst, e))?;
    fs::set_permissions(dst, fs::Permissions::from_mode(mode & 0o7777))
        .map_err(|e| io("chmod", dst, e))?;
    chown(dst, owner)?;
    for entry in fs::read_dir(src).map_err(|e| io("read", src, e))? {
        let entry = entry.map_err(|e| io("read", src, e))?;
        if skip.iter().any(|s| entry.file_name() == *s) {
            continue;
        }
        let (from, to) = (entry.path(), dst.join(entry.file_name()));
        let kind = entry.file_type().map_err(|e| io("stat", &from, e))?;
        if kind.is_dir() {
            copy_tree(&from, &to, owner, &[])?;
            continue;
        } else if kind.is_symlink() {
            let target = fs::read_link(&from).map_err(|e| io("read link", &from, e))?;
            std::os::unix::fs::symlink(target, &to).map_err(|e| io("create link", &to, e))?;
        } else {
            fs::copy(&from, &to).map_err(|e| io("copy to", &to, e))?;
        }
        chown(&to, owner)?;
    }
    Ok(())
}

/// Stops the clusters in `data_dirs` (immediate mode) and removes `remove` once process `parent` has
/// exited, however it exits (even SIGKILL). The watcher is a tiny shell in its own process group, so a
/// Ctrl-C on the terminal does not take it down with the tests; kill it when cleanup ran normally.
pub fn spawn_reaper(parent: u32, data_dirs: &[PathBuf], remove: Option<&Path>) -> Result<Child> {
    const SCRIPT: &str = r#"p=$1; rmdir_=$2; shift 2
while kill -0 "$p" 2>/dev/null; do sleep 1; done
for d in "$@"; do
  if [ -f "$d/postmaster.pid" ]; then kill -QUIT "$(head -n 1 "$d/postmaster.pid")" 2>/dev/null; fi
done
sleep 1
if [ -n "$rmdir_" ]; then rm -rf "$rmdir_"; fi"#;
    Command::new("/bin/sh")
        .args(["-c", SCRIPT, "shardgate-reaper", &parent.to_string()])
        .arg(remove.map(Path::as_os_str).unwrap_or_default())
        .args(data_dirs)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .process_group(0)
        .spawn()
        .map_err(|e| err(format!("cannot start the cleanup watcher: {e}")))
}

/// Whether `pid` is a process that has not exited (a zombie awaiting its reaper counts as exited).
pub fn process_exists(pid: i32) -> bool {
    match fs::read_to_string(format!("/proc/{pid}/stat")) {
        // The state follows the parenthesised command name, which may itself contain ") ".
        Ok(stat) => stat
            .rsplit_once(") ")
            .is_some_and(|(_, rest)| !rest.starts_with(['Z', 'X'])),
        Err(_) => {
            // SAFETY: signal 0 only checks that the process exists.
            let found = unsafe { libc::kill(pid, 0) == 0 };
            found || std::io::Error::last_os_error().raw_os_error() == Some(libc::EPERM)
        }
    }
}

/// The pids whose parent is `pid`, from /proc.
pub(super) fn children_of(pid: i32) -> Vec<i32> {
    let Ok(entries) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    let parent_of = |child: i32| -> Option<i32> {
        let stat = fs::read_to_string(format!("/proc/{child}/stat")).ok()?;
        // After the parenthesised name: state, then the parent's pid.
        stat.rsplit_once(") ")?.1.split(' ').nth(1)?.parse().ok()
    };
    entries
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter(|&child| parent_of(child) == Some(pid))
        .collect()
}
