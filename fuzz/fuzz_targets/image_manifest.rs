//! A registry's (or an archive's) manifests and indexes: any bytes are parsed or
//! refused; an index's platform selection never panics.
#![no_main]

use isola_image::manifest::{parse, select, Fetched};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(Fetched::Index(index)) = parse(data) {
        let _ = select(&index);
    }
});
