//! containerd starts this binary for `--runtime io.containerd.isola.v2`.

fn main() {
    let config = containerd_shim::Config {
        // The sandbox waits for its own children (VMM, virtiofsd…); a global reaper
        // would take their exit statuses away.
        no_reaper: true,
        no_sub_reaper: true,
        ..Default::default()
    };
    containerd_shim_isola::service::run(config);
}
