//! The capability sets a step gets.
//!
//! Docker's default set (moby `oci/caps/defaults.go`, the same list BuildKit applies to RUN):
//! CHOWN, DAC_OVERRIDE, FSETID, FOWNER, MKNOD, NET_RAW, SETGID, SETUID, SETFCAP, SETPCAP,
//! NET_BIND_SERVICE, SYS_CHROOT, KILL, AUDIT_WRITE. Every other capability is dropped from the
//! bounding set, so nothing the step execs can regain it. The inheritable and ambient sets are
//! empty (as in moby since CVE-2022-24769). A root step has the set as permitted and effective;
//! for a non-root user the kernel clears both at `setuid`, as it does under runc.

/// Capability numbers (`linux/capability.h`) of Docker's default set.
pub const DEFAULT_CAPABILITIES: [u32; 14] = [
    0,  // CHOWN
    1,  // DAC_OVERRIDE
    3,  // FOWNER
    4,  // FSETID
    5,  // KILL
    6,  // SETGID
    7,  // SETUID
    8,  // SETPCAP
    10, // NET_BIND_SERVICE
    13, // NET_RAW
    18, // SYS_CHROOT
    27, // MKNOD
    29, // AUDIT_WRITE
    31, // SETFCAP
];

/// The default set as a bit mask (`0xa80425fb`, what `CapEff` shows for root in `docker run`).
pub fn default_mask() -> u64 {
    DEFAULT_CAPABILITIES.iter().fold(0, |m, c| m | (1u64 << c))
}

/// Every capability this kernel knows, as a mask (`--security=insecure`).
pub fn all_mask(last_cap: u32) -> u64 {
    if last_cap >= 63 {
        u64::MAX
    } else {
        (1u64 << (last_cap + 1)) - 1
    }
}

/// The highest capability number of the running kernel (`/proc/sys/kernel/cap_last_cap`).
pub fn last_cap() -> std::io::Result<u32> {
    let text = std::fs::read_to_string("/proc/sys/kernel/cap_last_cap")?;
    text.trim()
        .parse()
        .map_err(|_| std::io::Error::other(format!("unreadable cap_last_cap `{}`", text.trim())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_mask_is_dockers() {
        assert_eq!(default_mask(), 0xa804_25fb);
    }

    #[test]
    fn all_mask_covers_every_capability_up_to_the_last() {
        assert_eq!(all_mask(40), 0x1ff_ffff_ffff);
        assert_eq!(all_mask(63), u64::MAX);
    }
}
