//! Test support shared by the integration tests.
#![allow(dead_code)] // each test binary uses its own part of this module

pub mod mixed;

use std::path::Path;
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use assessments_resolver::legacy::{
    AssessmentRow, AssessmentType, LegacySettings, NativeStats, StudentContext, library_stats,
};

/// The shim's handle counters are process-wide: tests that assert them take
/// this lock so that no other test's calls are in flight meanwhile.
pub fn native_counters_lock() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    // A test that failed while holding the lock poisons it; the counters are
    // still meaningful for the next test, so carry on.
    LOCK.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// The message of panics that tests inject on purpose.
/// Each `malformed=` mode of the component's config, and the error the bridge
/// gives for it (three rows scored).
pub const MALFORMED_MODES: [(&str, &str); 5] = [
    (
        "nan",
        "entry 0: scaled_score is not a number within 100..900",
    ),
    ("range", "entry 0: percentile is not a number within 1..99"),
    ("utf8", "entry 0: id is not valid UTF-8"),
    ("id_len", "entry 0: id length is outside 1..=64 bytes"),
    ("count", "result holds 1099511627776 entries for 3 rows"),
];

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

/// A budget for calls made outside an invocation: generous, so that what a
/// test sees is the call's own limits.
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

pub fn budget() -> assessments_common::budget::Budget {
    assessments_common::budget::Budget::after(Duration::from_secs(60))
}

/// Settings for the mocked shim (the `legacy-shim` crate built it), with `config`.
pub fn shim_settings(config: &str) -> LegacySettings {
    LegacySettings {
        lib_path: std::path::PathBuf::from(legacy_shim::SHIM_PATH),
        engine_config: config.to_owned(),
        ..LegacySettings::default()
    }
}

pub fn settings_with(
    config: &str,
    max_concurrency: usize,
    call_timeout: Duration,
) -> LegacySettings {
    LegacySettings {
        max_concurrency,
        call_timeout,
        ..shim_settings(config)
    }
}

pub fn grade3() -> StudentContext {
    StudentContext {
        grade: 3,
        reading_level: 3.2,
    }
}

/// A valid row of the given type.
pub fn row(
    id: &str,
    assessment_type: AssessmentType,
    attempted: i32,
    correct: i32,
    seconds: i32,
) -> AssessmentRow {
    AssessmentRow {
        id: id.to_owned(),
        assessment_type,
        administered_at_unix_ms: 1_700_000_000_000,
        raw_score: f64::from(correct),
        items_attempted: attempted,
        items_correct: correct,
        duration_seconds: seconds,
    }
}

/// `n` valid rows cycling through the assessment types.
pub fn rows(n: usize) -> Vec<AssessmentRow> {
    (0..n)
        .map(|i| {
            let t = AssessmentType::ALL[i % AssessmentType::ALL.len()];
            row(
                &format!("asm-{i:05}"),
                t,
                100,
                90 + (i % 10) as i32,
                60 + i as i32,
            )
        })
        .collect()
}

/// The shim's process-wide counters.
pub fn shim_stats() -> NativeStats {
    library_stats(Path::new(legacy_shim::SHIM_PATH))
        .expect("the shim loads")
        .expect("the shim exports la_stats_get")
}

/// Asserts the shim holds no live handle and saw no violation.
pub fn assert_native_clean(context: &str) {
    let stats = shim_stats();
    assert_eq!(stats.violations, 0, "{context}: violations in {stats:?}");
    assert_eq!(
        stats.live_results(),
        0,
        "{context}: live results in {stats:?}"
    );
    assert_eq!(
        stats.live_engines(),
        0,
        "{context}: live engines in {stats:?}"
    );
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
    let mut settings =
        assessments_resolver::sqlserver::SqlSettings::new(server.connection_string());
    tweak(&mut settings);
    settings
}

/// The resolver's binary, built for this test run.
pub const RESOLVER_BINARY: &str = env!("CARGO_BIN_EXE_assessments-resolver");

/// The HMAC key the local stack signs `nextToken` with.
pub const TEST_TOKEN_KEY: &str = devstack::stack::LOCAL_TOKEN_KEY;

/// Every dependency running locally (the playground's stack: TDS server, moto
/// behind its fault proxy, the mocked shim, the scoring API stand-in) and
/// both functions' dependencies built from them through the settings code
/// the Lambda binaries use.
pub struct Stack {
    local: devstack::stack::LocalStack,
}

impl Stack {
    /// `overrides` are settings applied on top of the stack's own.
    /// The legacy component runs in process (its handle counters are checked
    /// after every test); `LEGACY_ISOLATION=process` in `overrides` isolates it.
    pub async fn start(overrides: &[(&str, &str)]) -> Stack {
        let defaults = [("LEGACY_ISOLATION", "in-process")];
        let options = devstack::stack::StackOptions {
            overrides: defaults
                .iter()
                .chain(overrides)
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
            services: testkit::services::ServicesOptions {
                scoring_track_ids: true,
                ..Default::default()
            },
            ..Default::default()
        };
        Stack {
            local: devstack::stack::LocalStack::start(options)
                .await
                .expect("local stack"),
        }
    }

    pub fn deps(&self) -> &assessments_resolver::deps::Deps {
        &self.local.deps
    }

    pub fn scoring(&self) -> &testkit::scoring::ScoringStandIn {
        self.local
            .scoring()
            .expect("the stack runs the scoring stand-in")
    }

    pub fn tds(&self) -> &testkit::tds::TdsServer {
        self.local.tds().expect("the stack runs a TDS server")
    }

    pub fn dynamo(&self) -> &testkit::dynamo::LocalDynamo {
        self.local.dynamo().expect("the stack runs moto")
    }

    /// The settings the stack gave the resolver: the environment of a function process.
    pub fn env(&self) -> Vec<(String, String)> {
        self.local.env().to_vec()
    }

    /// Invokes the handler like Lambda does.
    pub async fn invoke(
        &self,
        payload: serde_json::Value,
    ) -> Result<serde_json::Value, assessments_resolver::appsync::AppSyncError> {
        let budget = devstack::stack::invocation_budget(self.deps());
        assessments_resolver::appsync::handle(self.deps(), payload, "test-request", budget)
            .await
            .map(|response| response.to_value())
    }

    /// After a test: no native result alive, no violation, the pool within its bound.
    pub async fn assert_clean(&self) {
        let legacy = self.deps().resolver.legacy();
        // Timed-out native calls finish in the background: wait for them.
        let mut waited = 0;
        while legacy.in_flight() > 0 && waited < 200 {
            tokio::time::sleep(Duration::from_millis(25)).await;
            waited += 1;
        }
        let native = legacy
            .native_stats()
            .expect("the shim exports its counters");
        assert_eq!(native.live_results(), 0, "live native results: {native:?}");
        assert_eq!(native.violations, 0, "native violations: {native:?}");
        let pool = self.deps().resolver.sql().status();
        assert!(pool.peak_in_use <= pool.max_size, "{pool:?}");
        assert!(
            self.tds().stats().peak_connections <= pool.max_size,
            "{:?}",
            self.tds().stats()
        );
        assert_eq!(pool.in_use, 0, "{pool:?}");
    }
}
