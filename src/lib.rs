//! assessments-resolver: the AppSync direct Lambda resolver for `getAssessments`.
//!
//! One module per boundary:
//! * [`legacy`]: the legacy native assessment component (libloading, C ABI);
//! * [`sqlserver`]: the legacy SQL Server database (deadpool of tiberius connections);
//! * [`config`]: settings from the environment.

pub mod config;
pub mod legacy;
pub mod sqlserver;
