//! Latency samples and how they are reported.

use std::time::Duration;

#[derive(Debug, Clone, Default)]
pub struct Samples(Vec<Duration>);

impl Samples {
    pub fn push(&mut self, took: Duration) {
        self.0.push(took);
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The value below which `p` percent of samples fall (nearest rank).
    pub fn percentile(&self, p: f64) -> Duration {
        if self.0.is_empty() {
            return Duration::ZERO;
        }
        let mut sorted = self.0.clone();
        sorted.sort();
        let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
        sorted[rank.clamp(1, sorted.len()) - 1]
    }

    pub fn mean(&self) -> Duration {
        if self.0.is_empty() {
            return Duration::ZERO;
        }
        self.0.iter().sum::<Duration>() / self.0.len() as u32
    }

    pub fn max(&self) -> Duration {
        self.0.iter().max().copied().unwrap_or_default()
    }
}

impl FromIterator<Duration> for Samples {
    fn from_iter<I: IntoIterator<Item = Duration>>(iter: I) -> Self {
        Samples(iter.into_iter().collect())
    }
}

impl Extend<Duration> for Samples {
    fn extend<I: IntoIterator<Item = Duration>>(&mut self, iter: I) {
        self.0.extend(iter)
    }
}

pub fn us(d: Duration) -> String {
    format!("{:.0}", d.as_secs_f64() * 1e6)
}

pub fn ms(d: Duration) -> String {
    format!("{:.1}", d.as_secs_f64() * 1000.0)
}

/// A Markdown table, printed as the benchmark goes so a long run shows progress.
pub struct Table {
    widths: Vec<usize>,
}

impl Table {
    pub fn start(title: &str, headers: &[&str]) -> Table {
        println!("\n### {title}\n");
        let widths: Vec<usize> = headers.iter().map(|h| h.len().max(10)).collect();
        let table = Table { widths };
        table.row(&headers.iter().map(|h| h.to_string()).collect::<Vec<_>>());
        println!(
            "|{}|",
            table
                .widths
                .iter()
                .map(|w| format!("{}:", "-".repeat(w + 1)))
                .collect::<Vec<_>>()
                .join("|")
        );
        table
    }

    pub fn row(&self, cells: &[String]) {
        let cells: Vec<String> = cells
            .iter()
            .zip(&self.widths)
            .map(|(c, w)| format!(" {c:>w$} "))
            .collect();
        println!("|{}|", cells.join("|"));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_use_the_nearest_rank() {
        let mut samples = Samples::default();
        for ms in 1..=100 {
            samples.push(Duration::from_millis(ms));
        }
        assert_eq!(samples.percentile(50.0), Duration::from_millis(50));
        assert_eq!(samples.percentile(99.0), Duration::from_millis(99));
        assert_eq!(samples.percentile(100.0), Duration::from_millis(100));
        assert_eq!(samples.max(), Duration::from_millis(100));
        assert_eq!(samples.mean(), Duration::from_micros(50_500));
    }
}
