//! Test support of the processor's integration tests: the peers it talks to
//! (moto behind its fault proxy, the scoring API stand-in) from `testkit`, and
//! the processor's dependencies built from them through the settings code its
//! binary runs.
#![allow(dead_code)] // each test binary uses its own part of this module

use assessment_processor::{ProcessorDeps, ProcessorSettings};
use assessments_common::config::Env;
use testkit::services::{LocalServices, ServicesOptions};

/// The processor's binary, built for this test run.
pub const PROCESSOR_BINARY: &str = env!("CARGO_BIN_EXE_assessment-processor");

/// The peers, and the processor built over them.
pub struct ProcessorStack {
    services: LocalServices,
    processor: ProcessorDeps,
}

impl ProcessorStack {
    /// `overrides` are settings applied on top of the peers' own.
    pub async fn start(overrides: &[(&str, &str)]) -> ProcessorStack {
        let services = LocalServices::start(ServicesOptions {
            scoring_track_ids: true,
            // The scoring stand-in speaks plain http and the key is in the
            // environment: refused on Lambda unless allowed, as for every test stack.
            settings: [("ALLOW_INSECURE_SETTINGS", "true")]
                .iter()
                .chain(overrides)
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
            ..Default::default()
        })
        .await
        .expect("local services");
        let settings = ProcessorSettings::from_env(&Env::from_pairs(services.process_env()))
            .expect("processor settings");
        let processor = ProcessorDeps::init(settings).await.expect("processor");
        ProcessorStack {
            services,
            processor,
        }
    }

    pub fn processor(&self) -> &ProcessorDeps {
        &self.processor
    }

    pub fn scoring(&self) -> &testkit::scoring::ScoringStandIn {
        self.services
            .scoring()
            .expect("the stack runs the scoring stand-in")
    }

    pub fn dynamo(&self) -> &testkit::dynamo::LocalDynamo {
        self.services.dynamo().expect("the stack runs moto")
    }

    /// The settings of a processor process pointed at these peers.
    pub fn env(&self) -> Vec<(String, String)> {
        self.services.env().to_vec()
    }
}
