//! Why native XDP may refuse an interface, and the fix, for the message that says so.
//!
//! ENA (every current EC2 instance) runs native XDP only when a frame fits one page with its
//! headroom (MTU at most 3498: the driver's `ENA_XDP_MAX_MTU`) and when half its queues are free
//! for XDP's transmit rings (`ethtool -L … combined` at most half the maximum). The mirror
//! target's default MTU inside a VPC is 9001, which native XDP on ENA never takes.

/// ENA's largest MTU with an XDP program (`ENA_XDP_MAX_MTU` for 4 KiB pages).
pub const ENA_XDP_MAX_MTU: u32 = 3498;
/// A mirrored 1500-byte frame: VXLAN's 50 bytes and AWS's 4 more.
pub const MIRRORED_1500: u32 = 1554;

const ETHTOOL_GCHANNELS: u32 = 0x3c;

/// The fix for a native attach the driver refused, when the interface says what it is.
pub fn refusal_hint(iface: &str) -> Option<String> {
    let sys = std::path::Path::new("/sys/class/net").join(iface);
    let driver = std::fs::read_link(sys.join("device/driver"))
        .ok()?
        .file_name()?
        .to_string_lossy()
        .into_owned();
    let mtu = std::fs::read_to_string(sys.join("mtu"))
        .ok()?
        .trim()
        .parse()
        .ok()?;
    hint(iface, &driver, mtu, channels(iface))
}

/// `(combined in use, combined at most)` of the interface's queues.
fn channels(iface: &str) -> Option<(u32, u32)> {
    // SAFETY: a plain datagram socket, closed below.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return None;
    }
    // struct ethtool_channels: cmd, max_rx, max_tx, max_other, max_combined, rx_count,
    // tx_count, other_count, combined_count (u32 each).
    let mut data = [0u8; 36];
    data[..4].copy_from_slice(&ETHTOOL_GCHANNELS.to_ne_bytes());
    let ok = super::ifstats::ethtool(fd, iface, &mut data);
    // SAFETY: closing the socket opened above.
    unsafe { libc::close(fd) };
    let word = |i: usize| {
        u32::from_ne_bytes([
            data[4 * i],
            data[4 * i + 1],
            data[4 * i + 2],
            data[4 * i + 3],
        ])
    };
    ok.then(|| (word(8), word(4)))
}

/// The hint for `driver` with `mtu` and `channels` (in use, maximum); `None` when nothing
/// known stands in the way.
pub fn hint(iface: &str, driver: &str, mtu: u32, channels: Option<(u32, u32)>) -> Option<String> {
    if driver != "ena" {
        return None;
    }
    let mut fixes = Vec::new();
    if mtu > ENA_XDP_MAX_MTU {
        fixes.push(format!(
            "its MTU is {mtu} and ENA runs native XDP only up to {ENA_XDP_MAX_MTU}: `ip link set dev {iface} mtu {ENA_XDP_MAX_MTU}` (mirrored 1500-byte frames need {MIRRORED_1500})"
        ));
    }
    if let Some((used, max)) = channels
        && max > 1
        && used > max / 2
    {
        fixes.push(format!(
            "it uses {used} of {max} queues and ENA needs half free for XDP: `ethtool -L {iface} combined {}`",
            max / 2
        ));
    }
    (!fixes.is_empty()).then(|| format!("native XDP on {iface} (ENA): {}", fixes.join("; ")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ena_at_9001_with_all_queues_gets_both_fixes() {
        let h = hint("ens6", "ena", 9001, Some((8, 8))).unwrap();
        assert!(h.contains("ip link set dev ens6 mtu 3498"), "{h}");
        assert!(h.contains("ethtool -L ens6 combined 4"), "{h}");
        assert!(h.contains("1554"), "{h}");
    }

    #[test]
    fn ena_within_its_limits_or_another_driver_gets_none() {
        assert_eq!(hint("ens6", "ena", 3498, Some((4, 8))), None);
        assert_eq!(hint("eth0", "virtio_net", 9001, Some((8, 8))), None);
        let h = hint("ens6", "ena", 1554, Some((8, 8))).unwrap();
        assert!(!h.contains("mtu") && h.contains("combined 4"), "{h}");
    }

    #[test]
    fn a_veth_says_nothing() {
        // No device/driver link on a veth (or on lo): nothing to say.
        assert_eq!(refusal_hint("lo"), None);
    }
}
