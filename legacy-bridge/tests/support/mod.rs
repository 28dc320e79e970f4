//! Test support of the bridge's integration tests: the component's fixtures
//! (testkit's), and the mixed workload its stress tests share.
#![allow(dead_code, unused_imports)] // each test binary uses its own part of this module

pub mod mixed;

pub use testkit::budget;
pub use testkit::legacy::*;

/// The message of panics that tests inject on purpose.
pub const INJECTED_PANIC: &str = "injected panic in the calling task";

/// Keeps the panics a test injects on purpose out of the output; every other
/// panic is reported as usual.
pub fn quiet_injected_panics() {
    static INSTALLED: std::sync::Once = std::sync::Once::new();
    INSTALLED.call_once(|| {
        let default_hook = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if info.payload().downcast_ref::<&str>() != Some(&INJECTED_PANIC) {
                default_hook(info);
            }
        }));
    });
}
