//! `containerd-shim-isola-v2 delete` run by hand, outside containerd's environment
//! (no TTRPC_ADDRESS, no namespace): it still cleans up from the bundle's record.

use std::process::Command;

#[test]
fn delete_outside_containerd_cleans_up_from_the_bundle() {
    let bundle = tempfile::tempdir().expect("bundle");
    let vm = tempfile::tempdir().expect("vm state");
    let vm_dir = vm.path().join("c1");
    std::fs::create_dir_all(vm_dir.join("vsock")).expect("vm dir");
    let record = serde_json::json!({ "vm": vm_dir, "owner": true, "shared_dir": null });
    std::fs::write(bundle.path().join("isola.json"), record.to_string()).expect("record");
    let out = Command::new(env!("CARGO_BIN_EXE_containerd-shim-isola-v2"))
        .args(["-id", "c1", "delete"])
        .current_dir(bundle.path())
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .output()
        .expect("run the shim");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(!out.stdout.is_empty(), "a DeleteResponse on stdout");
    assert!(!vm_dir.exists(), "the VM's state directory was cleaned");
    // Without an id it says what it needs.
    let out = Command::new(env!("CARGO_BIN_EXE_containerd-shim-isola-v2"))
        .arg("delete")
        .env_clear()
        .output()
        .expect("run the shim");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("-id"), "{}", String::from_utf8_lossy(&out.stderr));
}
