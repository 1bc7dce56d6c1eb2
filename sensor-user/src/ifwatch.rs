//! Watches the interface the sensor is attached to. XDP is attached by ifindex through a
//! bpf_link, so the program stays attached while the link is down and after a rename: the agent
//! keeps running (and logs the transitions). When the interface is deleted the kernel releases
//! the link and no frame will ever arrive again: the watch resolves, the agent stops (reporting
//! every flow and a last summary) and `rds-sensor run` exits non-zero saying why.

use anyhow::{Result, bail};
use std::{
    ffi::{CStr, CString},
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

/// The ifindex of `name`, if it exists in this network namespace.
pub fn ifindex(name: &str) -> Option<u32> {
    let c = CString::new(name).ok()?;
    // SAFETY: `c` is a valid NUL-terminated string.
    let i = unsafe { libc::if_nametoindex(c.as_ptr()) };
    (i != 0).then_some(i)
}

/// The current name of the interface with this index; `None` once it is gone.
pub fn ifname(index: u32) -> Option<String> {
    let mut buf = [0 as libc::c_char; libc::IF_NAMESIZE];
    // SAFETY: `buf` has the IF_NAMESIZE bytes if_indextoname may write.
    let p = unsafe { libc::if_indextoname(index, buf.as_mut_ptr()) };
    if p.is_null() {
        return None;
    }
    // SAFETY: on success `buf` holds a NUL-terminated name.
    Some(
        unsafe { CStr::from_ptr(buf.as_ptr()) }
            .to_string_lossy()
            .into_owned(),
    )
}

fn is_up(name: &str) -> Option<bool> {
    let s = std::fs::read_to_string(format!("/sys/class/net/{name}/flags")).ok()?;
    let flags = u32::from_str_radix(s.trim().trim_start_matches("0x"), 16).ok()?;
    Some(flags & libc::IFF_UP as u32 != 0)
}

/// The interface has gone; set by the future [`watch`] returns.
#[derive(Clone, Default)]
pub struct Gone(Arc<AtomicBool>);

impl Gone {
    pub fn is_set(&self) -> bool {
        self.0.load(Ordering::Acquire)
    }

    /// An error naming the interface if it has gone.
    pub fn check(&self, iface: &str) -> Result<()> {
        if self.is_set() {
            bail!(
                "interface {iface} was deleted: the XDP program went with it; stopped after \
                 reporting every flow (restart rds-sensor once the interface is back)"
            );
        }
        Ok(())
    }
}

/// A future that resolves when `iface` is deleted, polling every `every`; logs down/up and
/// renames on the way.
pub fn watch(
    iface: &str,
    every: Duration,
) -> Result<(impl std::future::Future<Output = ()> + use<>, Gone)> {
    let Some(index) = ifindex(iface) else {
        bail!("no interface named {iface}");
    };
    let gone = Gone::default();
    let flag = gone.0.clone();
    let mut name = iface.to_string();
    let mut up = is_up(&name);
    Ok((
        async move {
            let mut t = tokio::time::interval(every);
            loop {
                t.tick().await;
                let Some(now) = ifname(index) else {
                    tracing::error!(iface = %name, index, "interface deleted: stopping");
                    flag.store(true, Ordering::Release);
                    return;
                };
                if now != name {
                    tracing::warn!(from = %name, to = %now, "interface renamed: still attached");
                    name = now;
                }
                let u = is_up(&name);
                if u != up {
                    match u {
                        Some(false) => tracing::warn!(
                            iface = %name,
                            "interface down: still attached, no traffic until it is up again"
                        ),
                        Some(true) => tracing::info!(iface = %name, "interface up again"),
                        None => {}
                    }
                    up = u;
                }
            }
        },
        gone,
    ))
}
