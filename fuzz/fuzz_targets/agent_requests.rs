//! What the host (or anyone who reached the agent) sends: any frame payload as a
//! request; a CreateContainer's spec through the whole config and setup path, on the
//! recording syscalls (nothing is really mounted or executed). Errors, never panics.
#![no_main]

use std::path::Path;

use isola_guest_agent::config::{for_create, for_exec};
use isola_guest_agent::setup;
use isola_guest_agent::recording::Recording;
use isola_protocol::Request;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(req) = serde_json::from_slice::<Request>(data) else { return };
    let sys = Recording::default();
    match req {
        Request::CreateContainer { spec, .. } => {
            let etc = vec![("/etc/hosts".to_string(), "127.0.0.1 localhost\n".to_string())];
            let Ok(mut cfg) = for_create(&spec, Path::new("/run/fuzz/rootfs"), None, etc) else { return };
            let _ = setup::prepare_for_user_ns(&sys, &mut cfg);
            let _ = setup::enter(&sys, &cfg);
            let _ = setup::prepare(&sys, &cfg, &mut || {});
        }
        Request::Exec { process, .. } => {
            let _ = for_exec(&process, 1, None, None, None);
        }
        _ => {}
    }
});
