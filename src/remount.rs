//! Remounts (`mount -o remount,ro MNT`): mount(8) runs the helper again with
//! `remount` among the options, and that command asks the daemon serving MNT to make
//! the change over a control socket. The daemon changes the kernel's flags (mount(2)
//! with MS_REMOUNT) and its own read-only state together, in the order that keeps them
//! in step, and answers with one line: `ok`, or the reason it refused.
//!
//! The socket is an abstract Unix socket named `warabifs/remount/MAJOR:MINOR` after the
//! mount's device, so the command finds it from /proc/self/mountinfo alone and nothing
//! is left on disk. Only root and the user the daemon runs as may use it (checked with
//! SO_PEERCRED).

use std::io::{BufRead, BufReader, Write};
use std::os::linux::net::SocketAddrExt;
use std::os::unix::net::{SocketAddr, UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, Weak};

use crate::config::{remount_options, MountConfig};
use crate::fs::WarabiFs;
use crate::mount::{find_mount, remount_kernel};

/// The request line's verb.
const REMOUNT: &str = "remount";
const OK: &str = "ok";
/// How long the daemon waits for a request line once a client has connected.
const REQUEST_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

fn socket_name(device: &str) -> String {
    format!("warabifs/remount/{device}")
}

fn socket_address(device: &str) -> std::io::Result<SocketAddr> {
    SocketAddr::from_abstract_name(socket_name(device).as_bytes())
}

/// The command side: asks the daemon serving `mountpoint` to apply `options` (the
/// remount's whole option list). Err is the one-line reason to print.
pub fn request(mountpoint: &Path, options: &str) -> Result<(), String> {
    let mountpoint = std::fs::canonicalize(mountpoint).unwrap_or_else(|_| mountpoint.into());
    let entry = find_mount(&mountpoint, "fuse.warabifs")
        .ok_or_else(|| format!("{} is not a warabifs mount", mountpoint.display()))?;
    let no_daemon = |e: std::io::Error| {
        format!(
            "cannot reach the warabifs daemon of {}: {e}",
            mountpoint.display()
        )
    };
    let stream = UnixStream::connect_addr(&socket_address(&entry.device).map_err(no_daemon)?)
        .map_err(no_daemon)?;
    writeln!(&stream, "{REMOUNT} {options}").map_err(no_daemon)?;
    let mut reply = String::new();
    BufReader::new(&stream)
        .read_line(&mut reply)
        .map_err(no_daemon)?;
    match reply.trim_end() {
        OK => Ok(()),
        "" => Err(format!(
            "the warabifs daemon of {} closed the connection without an answer",
            mountpoint.display()
        )),
        reason => Err(reason.to_string()),
    }
}

/// What the daemon knows of its mount: the configuration it runs with (updated by each
/// remount) and the file system. Held weakly: the pool closes when the session lets
/// go of it, whatever this thread is doing.
struct Mounted {
    config: Mutex<MountConfig>,
    mountpoint: PathBuf,
    fs: Weak<WarabiFs>,
}

/// The daemon side: listens on the mount's control socket in a thread of its own.
/// Call it once the mount is live. The thread finds the mount and binds the socket
/// itself, so that nothing here waits for the session to serve requests. A mount
/// without the socket (say another process took its name) still works; only remounts
/// are refused, and the log says why.
pub fn serve(config: &MountConfig, fs: &Arc<WarabiFs>) -> std::io::Result<()> {
    let config = config.clone();
    let fs = Arc::downgrade(fs);
    std::thread::Builder::new()
        .name("remount".into())
        .spawn(move || match listen(&config) {
            Ok((listener, mountpoint)) => {
                let mounted = Mounted {
                    config: Mutex::new(config),
                    mountpoint,
                    fs,
                };
                for stream in listener.incoming() {
                    match stream {
                        Ok(stream) => mounted.answer(stream),
                        Err(e) => tracing::warn!("remount socket: {e}"),
                    }
                }
            }
            Err(e) => tracing::warn!("no remount socket, so remounts will be refused: {e}"),
        })?;
    Ok(())
}

/// Binds the control socket of the mount at `config.mountpoint`.
fn listen(config: &MountConfig) -> std::io::Result<(UnixListener, PathBuf)> {
    let mountpoint = std::fs::canonicalize(&config.mountpoint)?;
    let entry = find_mount(&mountpoint, "fuse.warabifs").ok_or_else(|| {
        std::io::Error::other(format!("{} not in mountinfo", mountpoint.display()))
    })?;
    let listener = UnixListener::bind_addr(&socket_address(&entry.device)?)?;
    Ok((listener, mountpoint))
}

impl Mounted {
    /// Reads one request and answers it (read whole before anything is refused, so
    /// the client always gets to read the answer).
    fn answer(&self, stream: UnixStream) {
        let reply = self.handle(&stream);
        let line = match reply {
            Ok(()) => OK.to_string(),
            Err(reason) => {
                tracing::warn!("remount refused: {reason}");
                reason
            }
        };
        if let Err(e) = writeln!(&stream, "{line}") {
            tracing::warn!("remount socket: cannot answer: {e}");
        }
    }

    /// Root, and the user the daemon runs as, may remount.
    fn allowed(&self, stream: &UnixStream) -> Result<(), String> {
        use nix::sys::socket::{getsockopt, sockopt::PeerCredentials};
        let peer = getsockopt(stream, PeerCredentials)
            .map_err(|e| format!("cannot tell who asks: {e}"))?;
        let me = nix::unistd::geteuid().as_raw();
        if peer.uid() == 0 || peer.uid() == me {
            return Ok(());
        }
        Err(format!(
            "user {} may not remount this file system",
            peer.uid()
        ))
    }

    fn handle(&self, stream: &UnixStream) -> Result<(), String> {
        // One request at a time: a client that never sends must not hold up the next.
        stream
            .set_read_timeout(Some(REQUEST_TIMEOUT))
            .map_err(|e| format!("cannot read the request: {e}"))?;
        let mut line = String::new();
        BufReader::new(stream)
            .read_line(&mut line)
            .map_err(|e| format!("cannot read the request: {e}"))?;
        self.allowed(stream)?;
        match line.trim_end().split_once(' ') {
            Some((REMOUNT, options)) => self.remount(options),
            _ => Err(format!("unknown request {:?}", line.trim_end())),
        }
    }

    /// Applies a remount. Going read-only, the kernel refuses writes first (it fails
    /// with "busy" while a file is open for writing), then every file is persisted and
    /// the file system turns read-only; going read-write, the file system first, then
    /// the kernel. Each step that fails undoes the one before, so the kernel's flag and
    /// the daemon's state never disagree.
    fn remount(&self, options: &str) -> Result<(), String> {
        let fs = self
            .fs
            .upgrade()
            .ok_or("the file system is being unmounted")?;
        let mut config = self.config.lock().expect("not poisoned");
        let change = remount_options(&config, options).map_err(|e| e.to_string())?;
        let mut words = change.kernel_flags.clone();
        words.push(if change.read_only { "ro" } else { "rw" }.to_string());
        let was_read_only = fs.is_read_only();
        match (was_read_only, change.read_only) {
            (false, true) => {
                remount_kernel(&self.mountpoint, &words)?;
                if let Err(reason) = fs.set_read_only(true) {
                    self.undo_kernel(false);
                    return Err(reason);
                }
            }
            (true, false) => {
                fs.set_read_only(false)?;
                if let Err(reason) = remount_kernel(&self.mountpoint, &words) {
                    let _ = fs.set_read_only(true);
                    return Err(reason);
                }
            }
            _ => remount_kernel(&self.mountpoint, &words)?,
        }
        config.read_only = change.read_only;
        config.kernel_flags.extend(change.kernel_flags);
        tracing::info!("remounted {} with {options}", self.mountpoint.display());
        Ok(())
    }

    /// Puts the kernel's read-only flag back after a later step failed.
    fn undo_kernel(&self, read_only: bool) {
        let word = if read_only { "ro" } else { "rw" };
        if let Err(e) = remount_kernel(&self.mountpoint, &[word.to_string()]) {
            tracing::error!("cannot put the mount back to {word}: {e}");
        }
    }
}
