//! The PreTraffic hook Lambda (see the library's documentation).

fn main() -> Result<(), lambda_runtime::Error> {
    assessments_common::lambda::run::<pre_traffic_hook::Hook>()
}
