//! The demo data: student profiles (for the DynamoDB side) and legacy
//! assessment rows (for the TDS server), from `fixtures/demo.json`.

use std::path::Path;

use chrono::NaiveDateTime;
use serde::{Deserialize, Serialize};

/// The demo fixture file, embedded so every binary and test has it.
const DEMO_JSON: &str = include_str!("../fixtures/demo.json");

/// A row of the legacy `dbo.assessments` table.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AssessmentFixture {
    pub assessment_id: i64,
    pub student_id: String,
    pub assessment_type: String,
    /// UTC, millisecond precision (the column is DATETIME2(3)).
    pub administered_at: NaiveDateTime,
    pub raw_score: f64,
    pub items_attempted: i32,
    pub items_correct: i32,
    pub duration_seconds: i32,
}

/// A student's profile, as the Students table holds it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StudentFixture {
    pub student_id: String,
    pub first_name: String,
    pub last_name: String,
    pub grade: u8,
    pub reading_level: f64,
    /// The school the student is enrolled in (`schoolId`); `None` writes no attribute.
    #[serde(default)]
    pub school_id: Option<String>,
}

/// The demo's two schools: stu-0001 and the odd students from stu-0003 are in
/// school A, stu-0002 and the even ones in school B.
pub const DEMO_SCHOOL_A: &str = "sch-001";
pub const DEMO_SCHOOL_B: &str = "sch-002";

/// An already-scored item of the Assessments table (the processor's history).
#[derive(Debug, Clone, PartialEq)]
pub struct HistoryFixture {
    pub student_id: String,
    pub assessment_id: String,
    pub assessment_type: String,
    /// RFC 3339, UTC.
    pub taken_at: String,
    pub score: f64,
    pub related_id: Option<String>,
}

/// Linked student records in the demo history (`relatedId` on the student's
/// earliest item): stu-0003 and stu-0004 are one transferred student whose
/// records point at each other (a cycle); stu-0005 points at stu-0006.
pub const DEMO_HISTORY_LINKS: [(&str, &str); 3] = [
    ("stu-0003", "stu-0004"),
    ("stu-0004", "stu-0003"),
    ("stu-0005", "stu-0006"),
];

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Fixtures {
    pub students: Vec<StudentFixture>,
    pub assessments: Vec<AssessmentFixture>,
}

impl Fixtures {
    /// The demo data shipped in the repository.
    pub fn demo() -> Self {
        // The embedded file is checked by this crate's tests; failing here
        // means the repository itself is broken.
        serde_json::from_str(DEMO_JSON).expect("testkit/fixtures/demo.json is valid")
    }

    pub fn load(path: &Path) -> Result<Self, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        serde_json::from_str(&text)
            .map_err(|e| format!("{} is not a fixture file: {e}", path.display()))
    }

    /// The assessments of one student.
    pub fn assessments_of<'a>(
        &'a self,
        student_id: &'a str,
    ) -> impl Iterator<Item = &'a AssessmentFixture> + 'a {
        self.assessments
            .iter()
            .filter(move |a| a.student_id == student_id)
    }

    /// The Assessments table's demo content: every legacy assessment, as
    /// already scored (`legacy-{id}`, score = its raw score), with the
    /// [`DEMO_HISTORY_LINKS`].
    pub fn history(&self) -> Vec<HistoryFixture> {
        let mut linked = std::collections::HashSet::new();
        let mut ordered: Vec<&AssessmentFixture> = self.assessments.iter().collect();
        ordered.sort_by_key(|a| (a.student_id.clone(), a.administered_at));
        ordered
            .into_iter()
            .map(|a| {
                let related_id = DEMO_HISTORY_LINKS
                    .iter()
                    .find(|(from, _)| *from == a.student_id)
                    .filter(|_| linked.insert(a.student_id.clone()))
                    .map(|(_, to)| (*to).to_owned());
                HistoryFixture {
                    student_id: a.student_id.clone(),
                    assessment_id: format!("legacy-{}", a.assessment_id),
                    assessment_type: a.assessment_type.clone(),
                    taken_at: a
                        .administered_at
                        .format("%Y-%m-%dT%H:%M:%S%.3fZ")
                        .to_string(),
                    score: a.raw_score,
                    related_id,
                }
            })
            .collect()
    }

    /// T-SQL that loads these assessments into `dbo.assessments` (idempotent).
    /// `infra/sql/002_seed_demo.sql` is this, for the demo data.
    pub fn seed_sql(&self) -> String {
        let mut sql = String::from(
            "-- Demo data for dbo.assessments. Generated from testkit/fixtures/demo.json by\n\
             --   cargo run -p testkit --bin tds-server -- --print-seed-sql > infra/sql/002_seed_demo.sql\n\
             -- Do not edit by hand; a test checks the two agree.\n\
             DELETE FROM dbo.assessments WHERE assessment_id IN (SELECT assessment_id FROM (VALUES\n",
        );
        let ids: Vec<String> = self
            .assessments
            .iter()
            .map(|a| format!("    ({})", a.assessment_id))
            .collect();
        sql.push_str(&ids.join(",\n"));
        sql.push_str("\n) AS seed(assessment_id));\n");
        for chunk in self.assessments.chunks(100) {
            sql.push_str(
                "INSERT INTO dbo.assessments (assessment_id, student_id, assessment_type, administered_at, \
                 raw_score, items_attempted, items_correct, duration_seconds) VALUES\n",
            );
            let rows: Vec<String> = chunk
                .iter()
                .map(|a| {
                    format!(
                        "    ({}, N'{}', N'{}', '{}', {:?}, {}, {}, {})",
                        a.assessment_id,
                        a.student_id.replace('\'', "''"),
                        a.assessment_type.replace('\'', "''"),
                        a.administered_at.format("%Y-%m-%dT%H:%M:%S%.3f"),
                        a.raw_score,
                        a.items_attempted,
                        a.items_correct,
                        a.duration_seconds
                    )
                })
                .collect();
            sql.push_str(&rows.join(",\n"));
            sql.push_str(";\n");
        }
        sql
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_demo_data_has_what_the_playground_and_tests_rely_on() {
        let demo = Fixtures::demo();
        let first: Vec<_> = demo.assessments_of("stu-0001").collect();
        assert!(first.len() >= 60, "stu-0001 has {}", first.len());
        let types: std::collections::HashSet<_> =
            first.iter().map(|a| a.assessment_type.as_str()).collect();
        assert!(types.len() >= 2);
        let span = first.iter().map(|a| a.administered_at).max().expect("rows")
            - first.iter().map(|a| a.administered_at).min().expect("rows");
        assert!(span.num_days() > 365, "{} days", span.num_days());
        assert!(demo.students.iter().any(|s| s.student_id == "stu-0002"));
        assert_eq!(demo.assessments_of("stu-0002").count(), 0);
        assert!(demo.students.iter().all(|s| s.student_id != "stu-9999"));
        assert!(
            demo.students.len() >= 31,
            "the batch tests need 30 students with profiles"
        );
        // The schools the authorization tests and the playground's personas rely on.
        for s in &demo.students {
            let n: u32 = s.student_id[4..].parse().expect("stu-NNNN");
            let school = if n == 1 || (n >= 3 && n % 2 == 1) {
                DEMO_SCHOOL_A
            } else {
                DEMO_SCHOOL_B
            };
            assert_eq!(s.school_id.as_deref(), Some(school), "{}", s.student_id);
        }
        let mut ids: Vec<_> = demo.assessments.iter().map(|a| a.assessment_id).collect();
        ids.sort_unstable();
        ids.dedup();
        assert_eq!(
            ids.len(),
            demo.assessments.len(),
            "assessment ids are unique"
        );
    }

    #[test]
    fn the_demo_history_links_linked_students_once() {
        let demo = Fixtures::demo();
        let history = demo.history();
        assert_eq!(history.len(), demo.assessments.len());
        for (from, to) in DEMO_HISTORY_LINKS {
            let links: Vec<_> = history
                .iter()
                .filter(|h| h.student_id == from && h.related_id.is_some())
                .collect();
            assert_eq!(links.len(), 1, "{from}");
            assert_eq!(links[0].related_id.as_deref(), Some(to));
            assert!(demo.assessments_of(to).count() > 0, "{to} has history");
        }
    }

    #[test]
    fn the_committed_seed_sql_matches_the_fixtures() {
        let committed = include_str!("../../infra/sql/002_seed_demo.sql");
        assert!(
            committed == Fixtures::demo().seed_sql(),
            "infra/sql/002_seed_demo.sql is stale: regenerate it with \
             `cargo run -p testkit --bin tds-server -- --print-seed-sql > infra/sql/002_seed_demo.sql`"
        );
    }
}
