//! A process's Prometheus `/metrics`, read as the operators' scraper reads it: what a test
//! waits for before it asserts that something did not happen (a message settled, a round
//! of a job over). Only a process of the test's own has counters that count for the test
//! alone: services started inside the test binary share one recorder with every test
//! running beside them.

use std::time::{Duration, Instant};

/// How long a wait for a counter lasts before the test fails: generous, for a slow machine.
pub const WAIT_AT_MOST: Duration = Duration::from_secs(30);

/// The `/metrics` of one process.
#[derive(Clone)]
pub struct Metrics {
    url: String,
    http: reqwest::Client,
}

impl Metrics {
    /// `base` is where the process serves `/metrics` (`http://127.0.0.1:9100`).
    pub fn at(base: &str) -> Metrics {
        Metrics {
            url: format!("{}/metrics", base.trim_end_matches('/')),
            http: reqwest::Client::new(),
        }
    }

    /// The text of `/metrics`; `None` while the process does not answer.
    async fn scrape(&self) -> Option<String> {
        let response = self.http.get(&self.url).send().await.ok()?;
        if !response.status().is_success() {
            return None;
        }
        response.text().await.ok()
    }

    /// The sum of the series of `name` that carry all of `labels`; 0 before the first
    /// increment (an unused counter is not rendered). `None` while the process does not
    /// answer yet.
    pub async fn try_counter(&self, name: &str, labels: &[(&str, &str)]) -> Option<u64> {
        Some(sum(&self.scrape().await?, name, labels))
    }

    /// The counter now, waiting for the process to serve `/metrics` if it is starting.
    pub async fn counter(&self, name: &str, labels: &[(&str, &str)]) -> u64 {
        let deadline = Instant::now() + WAIT_AT_MOST;
        loop {
            if let Some(count) = self.try_counter(name, labels).await {
                return count;
            }
            assert!(
                Instant::now() < deadline,
                "{} did not answer within {WAIT_AT_MOST:?}",
                self.url
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Waits until the counter reaches `at_least`; fails the test, saying `what` did not
    /// happen, after [`WAIT_AT_MOST`].
    pub async fn wait_for_counter(
        &self,
        name: &str,
        labels: &[(&str, &str)],
        at_least: u64,
        what: &str,
    ) {
        let deadline = Instant::now() + WAIT_AT_MOST;
        loop {
            let now = self.try_counter(name, labels).await;
            if now.is_some_and(|count| count >= at_least) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{what}: {name}{labels:?} is {now:?} after {WAIT_AT_MOST:?}, expected at least {at_least} ({})",
                self.url
            );
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    /// Rounds of `job` (`recharge_sweep`, `refund_sweep`, `alerts`, ...) this process has
    /// finished.
    pub async fn rounds(&self, job: &str) -> u64 {
        self.counter("job_rounds_total", &[("job", job), ("outcome", "done")])
            .await
    }

    /// Waits until this process has finished `n` more rounds of `job` than when called.
    /// With `n` = 2 the second started after the call: whatever the caller did before is
    /// seen by a whole round, even if one was under way meanwhile.
    pub async fn wait_for_rounds(&self, job: &str, n: u64) {
        let from = self.rounds(job).await;
        self.wait_for_counter(
            "job_rounds_total",
            &[("job", job), ("outcome", "done")],
            from + n,
            &format!("{n} more rounds of {job}"),
        )
        .await;
    }

    /// Waits until this process has settled every message it took from RabbitMQ, having
    /// taken at least `n`: one it was working on when the test looked has been finished.
    pub async fn wait_until_settled(&self, n: u64) {
        let deadline = Instant::now() + WAIT_AT_MOST;
        loop {
            let counts = self.scrape().await.map(|text| {
                (
                    sum(&text, "messages_consumed_total", &[]),
                    sum(&text, "messages_settled_total", &[]),
                )
            });
            if counts.is_some_and(|(consumed, settled)| consumed >= n && settled == consumed) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "(consumed, settled) messages are {counts:?} after {WAIT_AT_MOST:?}, expected at least {n}, all settled ({})",
                self.url
            );
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    /// Waits until this process has settled `n` messages in all as `disposition` (`ack`,
    /// `requeue`, `dead_letter`) with RabbitMQ.
    pub async fn wait_for_settled(&self, disposition: &str, n: u64) {
        self.wait_for_counter(
            "messages_settled_total",
            &[("disposition", disposition)],
            n,
            &format!("{n} messages settled as {disposition}"),
        )
        .await;
    }
}

/// The sum of the samples of `name` carrying every pair of `labels`, in Prometheus' text
/// format.
fn sum(text: &str, name: &str, labels: &[(&str, &str)]) -> u64 {
    text.lines()
        .filter(|line| !line.starts_with('#'))
        .filter_map(|line| {
            let (series, value) = line.rsplit_once(' ')?;
            let (series_name, series_labels) = match series.split_once('{') {
                Some((n, rest)) => (n, rest.trim_end_matches('}')),
                None => (series, ""),
            };
            let matches = series_name == name
                && labels.iter().all(|(label, wanted)| {
                    series_labels
                        .split(',')
                        .any(|pair| pair == format!("{label}=\"{wanted}\""))
                });
            matches.then(|| value.parse::<f64>().ok()).flatten()
        })
        .sum::<f64>() as u64
}

#[cfg(test)]
mod tests {
    use super::sum;

    const TEXT: &str = "# TYPE job_rounds_total counter
job_rounds_total{job=\"alerts\",outcome=\"done\"} 7
job_rounds_total{job=\"alerts\",outcome=\"skipped\"} 2
job_rounds_total{job=\"refund_sweep\",outcome=\"done\"} 3
messages_consumed_total 4
";

    #[test]
    fn series_are_picked_by_name_and_labels_and_summed() {
        assert_eq!(
            sum(
                TEXT,
                "job_rounds_total",
                &[("job", "alerts"), ("outcome", "done")]
            ),
            7
        );
        assert_eq!(sum(TEXT, "job_rounds_total", &[("job", "alerts")]), 9);
        assert_eq!(sum(TEXT, "job_rounds_total", &[("outcome", "done")]), 10);
        assert_eq!(sum(TEXT, "messages_consumed_total", &[]), 4);
        assert_eq!(
            sum(TEXT, "job_rounds_total", &[("job", "stats_refresh")]),
            0
        );
        assert_eq!(sum(TEXT, "job_rounds", &[]), 0, "a name is matched whole");
    }
}
