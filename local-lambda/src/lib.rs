//! local-lambda: a Lambda function binary run on this machine as Lambda runs
//! it. [`runtime_api`] serves the Lambda Runtime API (and the Extensions API's
//! registration) on loopback; [`function`] starts the binary against it and
//! collects what it prints; [`loopback`] keeps browsers out of them and of
//! every other local server of the workspace.
//!
//! Used by `parity`'s local targets (an operations tool) and by the tests
//! that run the functions' real binaries; it knows nothing of either
//! function, and nothing of the test stand-ins.

#![forbid(unsafe_code)]

pub mod function;
pub mod loopback;
pub mod runtime_api;
