//! containerd 2.3 (`../shared/containerd-2.3`, or `$ISOLA_CONTAINERD2_DIR`) with the
//! shim: the bootstrap protocol picks task API v3, `-info` is answered, and the v3
//! socket goes with the shim. The ctr flows themselves run on 2.3 as well:
//! scripts/test.sh runs `containerd_ctr` again with `ISOLA_CONTAINERD=2.3`.

use std::path::Path;

use isola_e2e::containerd::{Containerd, IMAGE, RUNTIME};

/// The address containerd logged for `id` ("connecting to shim ID" address=… version=N).
fn connection(log: &str, id: &str) -> Option<(String, String)> {
    let line = log.lines().find(|l| l.contains(&format!("connecting to shim {id}\"")))?;
    let field = |name: &str| {
        line.split_whitespace().find_map(|w| w.strip_prefix(&format!("{name}=")).map(|v| v.trim_matches('"').to_string()))
    };
    Some((field("address")?, field("version")?))
}

#[test]
fn containerd_2_3_speaks_task_api_v3_to_the_shim_and_learns_its_features() {
    let c = Containerd::start_2_3();
    c.import_image("default");
    let o = c.ctr(&["run", "--rm", "--runtime", RUNTIME, IMAGE, "v3", "sh", "-c", "echo hi; exit 42"]);
    assert_eq!(o.code, 42, "{}{}\n{}", o.stdout, o.stderr, c.log());
    assert_eq!(o.stdout, "hi\n");
    let log = c.log();
    let (address, version) = connection(&log, "v3").unwrap_or_else(|| panic!("no shim connection logged:\n{log}"));
    assert_eq!(version, "3", "task API version containerd chose:\n{log}");
    assert!(address.ends_with("-v3"), "{address}");
    assert!(!log.contains("failed to load runtime info"), "-info was not answered:\n{log}");
    c.assert_nothing_left();
    let socket = address.trim_start_matches("unix://");
    assert!(!Path::new(socket).exists(), "the v3 socket {socket} is left");
}
