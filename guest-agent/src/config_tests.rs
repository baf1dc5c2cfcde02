//! Scenarios for `config`: a spec in, what init is told to do out.

use super::*;

#[test]
fn paths_never_leave_the_root() {
    let r = Path::new("/run/c/rootfs");
    assert_eq!(join_inside(r, "/etc/hosts").expect("ok"), Path::new("/run/c/rootfs/etc/hosts"));
    assert_eq!(join_inside(r, "/./a//b").expect("ok"), Path::new("/run/c/rootfs/a/b"));
    for bad in ["../etc", "/a/../../etc/shadow", "relative", "/.."] {
        assert!(join_inside(r, bad).is_err(), "{bad}");
    }
}

fn spec_with(devices: serde_json::Value, readonly: bool) -> Spec {
    let mut v = serde_json::to_value(Spec::default()).expect("json");
    v["linux"]["devices"] = devices;
    v["root"]["readonly"] = serde_json::Value::Bool(readonly);
    serde_json::from_value(v).expect("spec")
}

#[test]
fn devices_and_a_readonly_root_come_from_the_spec() {
    let dir = tempfile::tempdir().expect("tmp");
    let spec = spec_with(
        serde_json::json!([
            {"path": "/dev/fuse", "type": "c", "major": 10, "minor": 229, "fileMode": 0o600, "uid": 5, "gid": 6},
            {"path": "/dev/loop9", "type": "b", "major": 7, "minor": 9},
            {"path": "/dev/fifo", "type": "p"}
        ]),
        true,
    );
    let cfg = for_create(&spec, dir.path(), None, vec![]).expect("config");
    let Mode::Create { devices, root_readonly, .. } = cfg.mode else { panic!("create mode") };
    assert!(root_readonly);
    let d = |path: &str, kind, major, minor, mode, uid, gid| DeviceSpec {
        path: path.into(),
        kind,
        major,
        minor,
        mode,
        uid,
        gid,
    };
    assert_eq!(
        devices,
        [
            d("/dev/fuse", 'c', 10, 229, 0o600, 5, 6),
            d("/dev/loop9", 'b', 7, 9, 0o666, 0, 0),
            d("/dev/fifo", 'p', 0, 0, 0o666, 0, 0)
        ]
    );
    let cfg = for_create(&spec_with(serde_json::json!([]), false), dir.path(), None, vec![]).expect("config");
    assert!(matches!(cfg.mode, Mode::Create { root_readonly: false, .. }));
}

#[test]
fn a_bad_device_is_refused_by_its_path_and_reason() {
    let dir = tempfile::tempdir().expect("tmp");
    for (dev, want) in [
        (serde_json::json!({"path": "/dev/../etc/x", "type": "c", "major": 1, "minor": 3}), "/dev/../etc/x"),
        (serde_json::json!({"path": "/dev/x", "type": "c", "major": -1, "minor": 3}), "major -1 is negative"),
        (serde_json::json!({"path": "/dev/x", "type": "a"}), "cgroup rules"),
        (serde_json::json!({"path": "/dev/x", "type": "c", "major": 1, "minor": 3, "fileMode": 0o170000}), "fileMode"),
    ] {
        let e = for_create(&spec_with(serde_json::json!([dev]), false), dir.path(), None, vec![]).expect_err("bad");
        let e = e.to_string();
        assert!(e.starts_with("linux.devices: ") && e.contains(want), "{e}");
    }
}

#[test]
fn in_place_files_become_binds_from_the_agents_dir() {
    let dir = tempfile::tempdir().expect("tmp");
    let files = vec![("/etc/hosts".to_string(), "127.0.0.1 localhost\n".to_string())];
    let mut cfg = for_create(&Spec::default(), dir.path(), None, files).expect("config");
    files_as_binds(&mut cfg, &dir.path().join("files")).expect("binds");
    let Mode::Create { files, mounts, .. } = &cfg.mode else { panic!("create mode") };
    assert!(files.is_empty(), "nothing written into the rootfs");
    let m = mounts.iter().find(|m| m.destination == "/etc/hosts").expect("a bind");
    assert!(m.file_bind && MsFlags::from_bits_truncate(m.flags).contains(MsFlags::MS_BIND));
    assert_eq!(std::fs::read_to_string(&m.source).expect("source"), "127.0.0.1 localhost\n");
}

#[test]
fn options_split_into_flags_and_data() {
    let (f, d) = mount_flags(&["nosuid".into(), "strictatime".into(), "mode=755".into(), "size=65536k".into()]);
    assert!(f.contains(MsFlags::MS_NOSUID | MsFlags::MS_STRICTATIME));
    assert_eq!(d.as_deref(), Some("mode=755,size=65536k"));
    let (f, d) = mount_flags(&["rbind".into(), "ro".into(), "rprivate".into()]);
    assert!(f.contains(MsFlags::MS_BIND | MsFlags::MS_REC | MsFlags::MS_RDONLY));
    assert_eq!(d, None);
}

#[test]
fn default_spec_translates_with_its_mounts_and_caps() {
    let mut spec = Spec::default();
    let mut p = spec.process().clone().expect("default process");
    p.set_args(Some(vec!["/bin/echo".into(), "hi".into()]));
    spec.set_process(Some(p));
    let cfg = for_create(&spec, Path::new("/r"), None, vec![]).expect("config");
    let Mode::Create { mounts, masked, .. } = &cfg.mode else { panic!("create mode") };
    assert!(mounts.iter().any(|m| m.destination == "/proc" && m.fstype == "proc"));
    assert!(mounts
        .iter()
        .any(|m| m.destination == "/dev/pts" && m.data.as_deref().is_some_and(|d| d.contains("newinstance"))));
    assert!(masked.iter().any(|m| m == "/proc/kcore"));
    assert!(mounts.iter().any(|m| m.destination == "/sys/fs/cgroup" && m.fstype == "cgroup2"));
    let caps = cfg.process.caps.expect("caps");
    assert!(caps.bounding.contains(&"CAP_KILL".to_string()), "{:?}", caps.bounding);
    assert_eq!(cfg.process.args, ["/bin/echo", "hi"]);
    assert!(cfg.process.rlimits.iter().any(|r| r.0 == "RLIMIT_NOFILE"), "{:?}", cfg.process.rlimits);
}

#[test]
fn the_shared_option_table_sets_the_flags_linux_names() {
    let want = [
        ("ro", MsFlags::MS_RDONLY),
        ("nosuid", MsFlags::MS_NOSUID),
        ("nodev", MsFlags::MS_NODEV),
        ("noexec", MsFlags::MS_NOEXEC),
        ("noatime", MsFlags::MS_NOATIME),
        ("relatime", MsFlags::MS_RELATIME),
        ("strictatime", MsFlags::MS_STRICTATIME),
        ("bind", MsFlags::MS_BIND),
        ("rbind", MsFlags::MS_BIND | MsFlags::MS_REC),
        ("rshared", MsFlags::empty()),
        ("defaults", MsFlags::empty()),
    ];
    for (o, f) in want {
        assert_eq!(mount_flags(&[o.to_string()]), (f, None), "{o}");
    }
}

#[test]
fn every_advertised_mount_option_is_a_flag_not_filesystem_data() {
    for o in isola_protocol::MOUNT_OPTIONS {
        assert_eq!(mount_flags(&[o.to_string()]).1, None, "{o} is advertised but would reach the filesystem as data");
    }
}

#[test]
fn namespaces_given_by_path_are_the_pods_and_the_rest_are_new() {
    use oci_spec::runtime::LinuxNamespaceBuilder;
    let dir = tempfile::tempdir().expect("tmp");
    let mut spec = Spec::default();
    let mut linux = spec.linux().clone().expect("linux");
    let ns = |t, path: Option<&str>| {
        let mut b = LinuxNamespaceBuilder::default().typ(t);
        if let Some(p) = path {
            b = b.path(p);
        }
        b.build().expect("ns")
    };
    linux.set_namespaces(Some(vec![
        ns(LinuxNamespaceType::Mount, None),
        ns(LinuxNamespaceType::Pid, None),
        ns(LinuxNamespaceType::Ipc, Some("/proc/42/ns/ipc")),
        ns(LinuxNamespaceType::Uts, None),
    ]));
    spec.set_linux(Some(linux));
    let cfg = for_create(&spec, dir.path(), None, vec![]).expect("config");
    let Mode::Create { share_ipc, share_uts, .. } = cfg.mode else { panic!("create mode") };
    assert!(share_ipc && !share_uts);
    let cfg = for_create(&Spec::default(), dir.path(), None, vec![]).expect("config");
    let Mode::Create { share_ipc, share_uts, .. } = cfg.mode else { panic!("create mode") };
    assert!(!share_ipc && !share_uts, "the default spec asks for new ones");
}

#[test]
fn files_the_spec_mounts_are_not_written_and_a_hostname_needs_uts() {
    use oci_spec::runtime::MountBuilder;
    let mut spec = Spec::default();
    let mut mounts = spec.mounts().clone().unwrap_or_default();
    for f in ["/etc/resolv.conf", "/etc//hosts"] {
        let m = MountBuilder::default()
            .destination(f)
            .source("/host/file")
            .typ("bind")
            .options(vec!["rbind".into(), "ro".into()]);
        mounts.push(m.build().expect("mount"));
    }
    spec.set_mounts(Some(mounts));
    let files = ["/etc/hosts", "/etc/resolv.conf", "/etc/hostname"].map(|f| (f.to_string(), "x".to_string()));
    let cfg = for_create(&spec, Path::new("/r"), None, files.to_vec()).expect("config");
    let Mode::Create { files, .. } = &cfg.mode else { panic!("create mode") };
    assert_eq!(files.iter().map(|(p, _)| p.as_str()).collect::<Vec<_>>(), ["/etc/hostname"]);

    let mut spec = Spec::default();
    spec.set_hostname(Some("box".into()));
    assert!(for_create(&spec, Path::new("/r"), None, vec![]).is_ok(), "the default spec has a UTS namespace");
    let mut linux = spec.linux().clone().expect("linux");
    let ns = linux.namespaces().clone().unwrap_or_default();
    linux.set_namespaces(Some(ns.into_iter().filter(|n| n.typ() != LinuxNamespaceType::Uts).collect()));
    spec.set_linux(Some(linux));
    assert_eq!(for_create(&spec, Path::new("/r"), None, vec![]), Err(ConfigError::HostnameWithoutUts));
    spec.set_hostname(None);
    assert!(for_create(&spec, Path::new("/r"), None, vec![]).is_ok(), "no hostname, no UTS: the VM's");
}

#[test]
fn namespaced_sysctls_become_proc_sys_writes_and_the_rest_is_refused() {
    let with = |pairs: &[(&str, &str)]| {
        let mut spec = Spec::default();
        let mut linux = spec.linux().clone().expect("linux");
        linux.set_sysctl(Some(pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()));
        spec.set_linux(Some(linux));
        for_create(&spec, Path::new("/r"), None, vec![])
    };
    let cfg = with(&[("kernel.shm_rmid_forced", "1"), ("fs.mqueue.msg_max", "100"), ("net/ipv4/ip_forward", "1")])
        .expect("namespaced");
    let Mode::Create { sysctls, .. } = &cfg.mode else { panic!("create mode") };
    assert_eq!(
        sysctls,
        &[
            ("/proc/sys/fs/mqueue/msg_max".to_string(), "100".to_string()),
            ("/proc/sys/kernel/shm_rmid_forced".into(), "1".into()),
            ("/proc/sys/net/ipv4/ip_forward".into(), "1".into()),
        ]
    );
    for bad in ["kernel.pid_max", "vm.overcommit_memory", "../../etc/passwd", "net..x", "kernel.shm_rmid_forced\n"] {
        let e = with(&[(bad, "1")]).expect_err(bad);
        assert!(matches!(e, ConfigError::Sysctl(..)), "{bad}: {e}");
    }
    assert!(with(&[("kernel.hostname", "x")]).is_ok(), "the default spec has its own UTS namespace");
    assert!(with(&[("net.core.somaxconn", "1\n2")]).is_err(), "one value, one line");
}

#[test]
fn a_user_namespace_needs_mappings_and_binds_sysfs_and_cgroup() {
    use oci_spec::runtime::{LinuxIdMappingBuilder, LinuxNamespaceBuilder};
    let mut spec = Spec::default();
    let mut linux = spec.linux().clone().expect("linux");
    let mut ns = linux.namespaces().clone().expect("ns");
    ns.push(LinuxNamespaceBuilder::default().typ(LinuxNamespaceType::User).build().expect("ns"));
    linux.set_namespaces(Some(ns));
    spec.set_linux(Some(linux.clone()));
    let e = for_create(&spec, Path::new("/r"), None, vec![]).expect_err("no maps");
    assert_eq!(e.to_string(), "user namespace: uidMappings must have 1-340 non-empty entries");
    let map = LinuxIdMappingBuilder::default().container_id(0u32).host_id(1000u32).size(10u32).build().expect("m");
    linux.set_uid_mappings(Some(vec![map]));
    linux.set_gid_mappings(Some(vec![map]));
    spec.set_linux(Some(linux));
    let cfg = for_create(&spec, Path::new("/r"), None, vec![]).expect("config");
    let u = cfg.user_ns.as_ref().expect("user ns");
    assert_eq!(UserNs::map_text(&u.uid_map), "0 1000 10\n");
    let Mode::Create { mounts, .. } = &cfg.mode else { panic!("create mode") };
    let sys = mounts.iter().find(|m| m.destination == "/sys").expect("/sys");
    assert_eq!((sys.source.as_str(), sys.fstype.as_str()), ("/sys", ""));
    assert!(MsFlags::from_bits_truncate(sys.flags).contains(MsFlags::MS_BIND | MsFlags::MS_RDONLY));
}

#[test]
fn specs_without_a_runnable_process_or_with_escaping_mounts_are_refused() {
    let mut spec = Spec::default();
    spec.set_process(None);
    assert_eq!(for_create(&spec, Path::new("/r"), None, vec![]), Err(ConfigError::NoProcess));
    let spec = Spec::default();
    let mut p = spec.process().clone().expect("process");
    p.set_args(Some(vec![]));
    assert_eq!(for_exec(&p, 1, None, None, None), Err(ConfigError::NoArgs));
    let mut spec = Spec::default();
    let mut p = spec.process().clone().expect("process");
    p.set_args(Some(vec!["sh".into()]));
    spec.set_process(Some(p));
    let mut mounts = spec.mounts().clone().expect("mounts");
    mounts[0].set_destination("/../../host".into());
    spec.set_mounts(Some(mounts));
    assert!(matches!(for_create(&spec, Path::new("/r"), None, vec![]), Err(ConfigError::BadPath(_))));
}
