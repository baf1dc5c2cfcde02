//! `isola-console MAX_BYTES`: a QEMU sandbox's console pump (see
//! `isola_sandbox::backend::console`).

fn main() {
    std::process::exit(isola_sandbox::backend::console::pump_main());
}
