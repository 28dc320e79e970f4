//! Test support shared by the integration tests.
#![allow(dead_code, unused_imports)] // each test binary uses its own part of this module

pub use testkit::budget;
pub use testkit::legacy::{MALFORMED_MODES, native_counters_lock};

/// The first page of a student's rows, newest first, any type and date.
pub fn first_page(
    student_id: &str,
    page_size: u32,
) -> assessments_resolver::sqlserver::PageRequest {
    assessments_resolver::sqlserver::PageRequest {
        student_id: student_id.to_owned(),
        assessment_type: None,
        from: None,
        to: None,
        after: None,
        page_size,
    }
}

/// A TDS server over the demo fixtures, on a free loopback port.
pub async fn start_tds_server() -> testkit::tds::TdsServer {
    testkit::tds::TdsServer::start(testkit::tds::TdsServerConfig::default())
        .await
        .expect("TDS server starts")
}

/// Pool settings for `server`, adjusted by `tweak`.
pub fn pool_settings(
    server: &testkit::tds::TdsServer,
    tweak: impl FnOnce(&mut assessments_resolver::sqlserver::SqlSettings),
) -> assessments_resolver::sqlserver::SqlSettings {
    let mut settings = assessments_resolver::sqlserver::SqlSettings::new(
        server.connection_string(),
        assessments_common::config::InsecureSettings::ALLOWED,
    );
    tweak(&mut settings);
    settings
}

/// The resolver's binary, built for this test run.
pub const RESOLVER_BINARY: &str = env!("CARGO_BIN_EXE_assessments-resolver");

/// The binary a test of what ships runs: `RESOLVER_BINARY` from the
/// environment (the release bootstrap, in the test command's last step), or
/// [`RESOLVER_BINARY`].
pub fn binary_under_test() -> String {
    std::env::var("RESOLVER_BINARY").unwrap_or_else(|_| RESOLVER_BINARY.to_owned())
}

/// The HMAC key the test stack signs `nextToken` with.
pub const TEST_TOKEN_KEY: &str = testkit::services::LOCAL_TOKEN_KEY;

/// The test stack (TDS server, moto behind its fault proxy, the mocked
/// shim, the scoring API stand-in: [`testkit::services`]) and the
/// resolver's dependencies built from it through the settings code the
/// Lambda binary runs.
pub struct Stack {
    services: testkit::services::LocalServices,
    deps: assessments_resolver::deps::Deps,
    /// Invocations answered through [`Stack::invoke`], by their reports.
    invocations: std::sync::atomic::AtomicU64,
}

impl Stack {
    /// `overrides` are settings applied on top of the stack's own.
    /// The legacy component runs in process (its handle counters are checked
    /// after every test); `LEGACY_ISOLATION=process` in `overrides` isolates it.
    pub async fn start(overrides: &[(&str, &str)]) -> Stack {
        let defaults = [("LEGACY_ISOLATION", "in-process")];
        let services =
            testkit::services::LocalServices::start(testkit::services::ServicesOptions {
                scoring_track_ids: true,
                settings: (defaults.iter().chain(overrides))
                    .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                    .collect(),
                ..Default::default()
            })
            .await
            .expect("the test stack");
        let env = assessments_common::config::Env::from_pairs(services.process_env());
        let settings = assessments_resolver::deps::Settings::load(&env)
            .await
            .expect("the resolver's settings");
        let deps = assessments_resolver::deps::Deps::init(settings)
            .await
            .expect("the resolver's dependencies");
        Stack {
            services,
            deps,
            invocations: Default::default(),
        }
    }

    pub fn deps(&self) -> &assessments_resolver::deps::Deps {
        &self.deps
    }

    pub fn scoring(&self) -> &testkit::scoring::ScoringStandIn {
        self.services
            .scoring()
            .expect("the stack runs the scoring stand-in")
    }

    pub fn tds(&self) -> &testkit::tds::TdsServer {
        self.services.tds().expect("the stack runs a TDS server")
    }

    pub fn dynamo(&self) -> &testkit::dynamo::LocalDynamo {
        self.services.dynamo().expect("the stack runs moto")
    }

    /// The settings the stack gave the resolver: the environment of a function process.
    pub fn env(&self) -> Vec<(String, String)> {
        self.services.env().to_vec()
    }

    /// Invocations answered through [`Stack::invoke`].
    pub fn invocations(&self) -> u64 {
        self.invocations.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Invokes the handler like Lambda does.
    pub async fn invoke(
        &self,
        payload: serde_json::Value,
    ) -> Result<serde_json::Value, assessments_resolver::appsync::AppSyncError> {
        let budget = self
            .deps
            .invocation_budget(testkit::services::lambda_deadline_ms());
        let (answer, _report) = assessments_resolver::appsync::handle_with_report(
            self.deps(),
            payload,
            "test-request",
            budget,
        )
        .await;
        self.invocations
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        answer.map(|response| response.to_value())
    }

    /// After a test: no native result alive, no violation, the pool within its bound.
    pub async fn assert_clean(&self) {
        // Timed-out native calls finish in the background: wait for them.
        testkit::wait_until("the native calls still running to return", || {
            self.deps.resolver.resources().legacy.in_flight == 0
        })
        .await;
        let resources = self.deps.resolver.resources();
        let native = (resources.legacy.native).expect("the shim exports its counters");
        assert_eq!(native.live_results(), 0, "live native results: {native:?}");
        assert_eq!(native.violations, 0, "native violations: {native:?}");
        let pool = resources.pool;
        assert!(pool.peak_in_use <= pool.max_size, "{pool:?}");
        assert!(
            self.tds().stats().peak_connections <= pool.max_size,
            "{:?}",
            self.tds().stats()
        );
        assert_eq!(pool.in_use, 0, "{pool:?}");
    }
}
