//! assessments-resolver: the AppSync direct Lambda resolver for `getAssessments`.
//!
//! One module per boundary:
//! * [`appsync`]: the event format: direct resolver events in, values or errors out;
//! * [`resolver`]: the business rules (validation, paging, enrichment);
//! * [`authz`]: who may read which student (the policy over AppSync's `identity`);
//! * [`audit`]: the audit line of each item (who read which student, hashed);
//! * [`profiles`]: student profiles in DynamoDB;
//! * [`sqlserver`]: the legacy SQL Server database (deadpool of tiberius connections);
//! * the legacy native assessment component is the `legacy-bridge` crate's
//!   (every raw pointer, the worker processes, their sandbox);
//! * [`deps`]: settings and the dependencies built once per execution environment;
//! * [`report`]: what one invocation did, as a log line and EMF metrics.
//!
//! Settings, the AWS SDK, the time budget, DynamoDB error classification and
//! the EMF builder are shared with the assessment processor
//! (`processor/`) through `assessments-common` (`common/`).

#![forbid(unsafe_code)]

pub mod appsync;
pub mod audit;
pub mod authz;
pub mod deps;
pub mod profiles;
pub mod report;
pub mod resolver;
pub mod sqlserver;
