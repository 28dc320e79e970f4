//! assessments-resolver: the AppSync direct Lambda resolver for `getAssessments`.
//!
//! One module per boundary:
//! * [`legacy`]: the legacy native assessment component (libloading, C ABI);
//! * [`config`]: settings from the environment.

pub mod config;
pub mod legacy;
