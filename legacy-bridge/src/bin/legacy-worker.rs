//! The worker role alone: `legacy-worker --legacy-worker`, what a supervisor
//! starts when `LEGACY_WORKER_PATH` names this executable instead of the
//! function's own (the default). It links nothing but the bridge.

fn main() {
    legacy_bridge::run_worker_if_requested();
    eprintln!(
        "legacy-worker: started by a supervisor only (as `{} {}`)",
        std::env::args().next().unwrap_or_default(),
        legacy_bridge::worker::WORKER_ARG
    );
    std::process::exit(2);
}
