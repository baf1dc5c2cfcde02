//! Hostile image layers: any bytes as a (gzip or plain) tar applied onto a rootfs;
//! entries that escape it, links through links, whiteouts of anything, are refused or
//! contained, never a panic or a file outside the root.
#![no_main]

use isola_image::unpack::apply_layer;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(outer) = tempfile::tempdir() else { return };
    let root = outer.path().join("root");
    if std::fs::create_dir(&root).is_err() {
        return;
    }
    let _ = apply_layer(data, &root, &mut (64 << 20));
    // Nothing may appear beside the root.
    let beside: Vec<_> = std::fs::read_dir(outer.path()).map(|d| d.flatten().collect()).unwrap_or_default();
    assert_eq!(beside.len(), 1, "a layer wrote outside its root: {beside:?}");
});
