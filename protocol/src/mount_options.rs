//! OCI mount options that are mount flags or propagation, not filesystem data: one
//! table for the host (rootfs mounts), the guest agent (container mounts) and the
//! features the host advertises. Any other option goes to the filesystem as data.

/// What an option sets.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MountFlag {
    /// `rw`, `defaults`: nothing to set.
    None,
    ReadOnly,
    NoSuid,
    NoDev,
    NoExec,
    NoAtime,
    RelAtime,
    StrictAtime,
    Bind,
    RecursiveBind,
    /// Propagation (`private`, `rshared`…): applied after the mount, never data.
    Propagation,
}

impl MountFlag {
    /// The `mount(2)` flags it sets, as Linux numbers them (`MS_*`; propagation is
    /// applied after the mount, so it sets none here).
    pub const fn ms_bits(self) -> u64 {
        match self {
            MountFlag::None | MountFlag::Propagation => 0,
            MountFlag::ReadOnly => 1,
            MountFlag::NoSuid => 2,
            MountFlag::NoDev => 4,
            MountFlag::NoExec => 8,
            MountFlag::NoAtime => 1 << 10,
            MountFlag::Bind => 1 << 12,
            MountFlag::RecursiveBind => (1 << 12) | (1 << 14),
            MountFlag::RelAtime => 1 << 21,
            MountFlag::StrictAtime => 1 << 24,
        }
    }
}

/// Every option that is not filesystem data, and what it sets.
pub const MOUNT_OPTION_TABLE: &[(&str, MountFlag)] = &[
    ("bind", MountFlag::Bind),
    ("defaults", MountFlag::None),
    ("nodev", MountFlag::NoDev),
    ("noexec", MountFlag::NoExec),
    ("nosuid", MountFlag::NoSuid),
    ("noatime", MountFlag::NoAtime),
    ("private", MountFlag::Propagation),
    ("rbind", MountFlag::RecursiveBind),
    ("relatime", MountFlag::RelAtime),
    ("ro", MountFlag::ReadOnly),
    ("rprivate", MountFlag::Propagation),
    ("rshared", MountFlag::Propagation),
    ("rslave", MountFlag::Propagation),
    ("rw", MountFlag::None),
    ("shared", MountFlag::Propagation),
    ("slave", MountFlag::Propagation),
    ("strictatime", MountFlag::StrictAtime),
];

/// The options of [`MOUNT_OPTION_TABLE`] by name, as the host advertises them.
pub const MOUNT_OPTIONS: [&str; MOUNT_OPTION_TABLE.len()] = {
    let mut names = [""; MOUNT_OPTION_TABLE.len()];
    let mut i = 0;
    while i < names.len() {
        names[i] = MOUNT_OPTION_TABLE[i].0;
        i += 1;
    }
    names
};

/// OCI mount options as `mount(2)` takes them: the `MS_*` bits they set, and the rest
/// (filesystem data) in order. Each side turns the bits into its own flags type.
pub fn split<S: AsRef<str>>(options: &[S]) -> (u64, Vec<&str>) {
    let mut bits = 0;
    let mut data = Vec::new();
    for o in options {
        match mount_option(o.as_ref()) {
            Some(f) => bits |= f.ms_bits(),
            None => data.push(o.as_ref()),
        }
    }
    (bits, data)
}

/// What `opt` sets, or None when it is filesystem data.
pub fn mount_option(opt: &str) -> Option<MountFlag> {
    MOUNT_OPTION_TABLE.iter().find(|(name, _)| *name == opt).map(|(_, f)| *f)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_and_data_is_not_an_option() {
        let mut names = MOUNT_OPTIONS.to_vec();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), MOUNT_OPTIONS.len());
        assert_eq!(mount_option("rshared"), Some(MountFlag::Propagation));
        assert_eq!(mount_option("strictatime"), Some(MountFlag::StrictAtime));
        assert_eq!(mount_option("mode=755"), None);
        assert_eq!(mount_option("lowerdir=/a"), None);
    }
}
