//! The containerd shim and templates. On hardware KVM (nested: scripts/nested/tests.sh
//! shim_templates): the first task of a configuration boots cold and the shim has a
//! detached copy of itself make the template; the next task's VM is restored from it.
//! Elsewhere (QEMU here): the shim makes no template. Nothing is left either way.

use std::path::Path;
use std::time::{Duration, Instant};

use isola_e2e::containerd::{Containerd, IMAGE, RUNTIME};
use isola_sandbox::{detect_kvm, KvmKind};

/// The keys of the templates made under `dir`.
fn templates(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| e.path().join("template.json").is_file())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect()
}

#[test]
fn the_next_task_restores_from_the_template_the_shim_made_for_the_first() {
    let dir = tempfile::tempdir().expect("tmp");
    let (tpl, config) = (dir.path().join("templates"), dir.path().join("config.toml"));
    let hardware = detect_kvm() == KvmKind::Hardware;
    let backend = if hardware { "hypervisor = \"isola-vmm\"\n" } else { "hypervisor = \"qemu\"\n" };
    std::fs::write(&config, format!("{backend}templates = true\n")).expect("config");
    // containerd inherits this process's environment, and its shims inherit containerd's.
    std::env::set_var("ISOLA_TEMPLATE_DIR", &tpl);
    std::env::set_var("ISOLA_CONFIG", &config);
    let c = Containerd::start();
    c.import_image("default");
    let first = c.ctr(&["run", "--rm", "--runtime", RUNTIME, IMAGE, "tpl1", "echo", "first"]);
    assert_eq!((first.code, first.stdout.as_str()), (0, "first\n"), "{}", first.stderr);
    if !hardware {
        eprintln!("NOT RUN HERE: templates are isola-vmm's, which boots Linux on hardware KVM only");
        std::thread::sleep(Duration::from_secs(2));
        assert!(templates(&tpl).is_empty(), "a template for QEMU: {:?}", templates(&tpl));
        c.assert_nothing_left();
        return;
    }
    let until = Instant::now() + Duration::from_secs(240);
    while templates(&tpl).is_empty() {
        assert!(Instant::now() < until, "the shim made no template within 240 s\n{}", c.log());
        std::thread::sleep(Duration::from_millis(500));
    }
    let key = templates(&tpl).remove(0);
    let second = c.ctr(&["run", "-d", "--runtime", RUNTIME, IMAGE, "tpl2", "sh", "-c", "sleep 600"]);
    assert_eq!(second.code, 0, "{}", second.stderr);
    let restored = std::fs::read_dir(&c.isola_state)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| std::fs::read_to_string(e.path().join("state.json")).ok())
        .filter_map(|st| serde_json::from_str::<serde_json::Value>(&st).ok())
        .any(|st| st["template"].as_str() == Some(key.as_str()));
    assert!(restored, "the second task's VM was not restored from template {key}\n{}", c.log());
    for args in
        [&["task", "kill", "-s", "9", "tpl2"][..], &["task", "delete", "-f", "tpl2"], &["container", "rm", "tpl2"]]
    {
        let _ = c.ctr(args);
    }
    c.assert_nothing_left();
}
