//! assessments-resolver: the AppSync direct Lambda resolver for `getAssessments`.
//!
//! One module per boundary:
//! * [`appsync`]: the event format: direct resolver events in, values or errors out;
//! * [`budget`]: the invocation's time budget that bounds every wait;
//! * [`resolver`]: the business rules (validation, paging, enrichment);
//! * [`profiles`]: student profiles in DynamoDB;
//! * [`sqlserver`]: the legacy SQL Server database (deadpool of tiberius connections);
//! * [`legacy`]: the legacy native assessment component (libloading, C ABI);
//! * [`deps`]: settings and the dependencies built once per execution environment;
//! * [`observability`]: JSON logs and EMF metrics;
//! * [`config`]: reading settings from the environment.

pub mod appsync;
pub mod aws;
pub mod budget;
pub mod config;
pub mod deps;
pub mod dynamo;
pub mod fuzzing;
pub mod legacy;
pub mod observability;
pub mod processor;
pub mod profiles;
pub mod resolver;
pub mod sqlserver;
