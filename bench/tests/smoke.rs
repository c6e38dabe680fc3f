//! Each benchmark scenario run small, so that the shipped benchmark cannot rot. Figures
//! are not asserted here (a test is no place for timing); what a scenario checks is.

use bench::stats::{self, StatsOptions};

#[tokio::test]
async fn the_statistics_benchmark_runs_and_its_answer_matches_the_orders() {
    let result = stats::run(&StatsOptions {
        orders: 3_000,
        days: 60,
        requests: 2,
        changes_between: 5,
    })
    .await
    .expect("the stats scenario runs");
    assert!(result.matches_count_of_orders);
    assert_eq!(result.ranges.len(), 3);
    for range in &result.ranges {
        assert_eq!(range.samples.len(), 2, "{}", range.label);
    }
    let year = result.ranges.last().unwrap();
    assert_eq!(
        year.orders_in_range, 3_000,
        "every seeded order is in the year"
    );
}
