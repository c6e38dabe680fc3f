//! Where the machine's CPU time goes during a measured run: user + system time of every
//! process on the machine from `/proc`, grouped by program, before and after. Divided by
//! the requests served, it says which program a request spends its time in.

use std::collections::BTreeMap;

/// CPU seconds consumed so far, by program name (`postgres`, `beam.smp`, `payment-api`…).
#[derive(Debug, Clone, Default)]
pub struct CpuSnapshot(BTreeMap<String, f64>);

impl CpuSnapshot {
    pub fn take() -> CpuSnapshot {
        let mut by_program = BTreeMap::new();
        let Ok(entries) = std::fs::read_dir("/proc") else {
            return CpuSnapshot(by_program);
        };
        for entry in entries.flatten() {
            let name = entry.file_name();
            if !name.to_string_lossy().bytes().all(|b| b.is_ascii_digit()) {
                continue;
            }
            let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
                continue;
            };
            if let Some((program, seconds)) = parse_stat(&stat, TICKS_PER_SECOND) {
                *by_program.entry(program).or_insert(0.0) += seconds;
            }
        }
        CpuSnapshot(by_program)
    }

    /// CPU seconds each program used since `earlier`, largest first; a process that
    /// exited in between is not counted.
    pub fn since(&self, earlier: &CpuSnapshot) -> Vec<(String, f64)> {
        let mut used: Vec<(String, f64)> = self
            .0
            .iter()
            .map(|(program, now)| {
                let before = earlier.0.get(program).copied().unwrap_or(0.0);
                (program.clone(), (now - before).max(0.0))
            })
            .filter(|(_, seconds)| *seconds > 0.0)
            .collect();
        used.sort_by(|a, b| b.1.total_cmp(&a.1));
        used
    }
}

/// `pid (comm) state ppid … utime stime …`: comm may contain spaces and parentheses, so
/// fields are counted from the last `)`.
fn parse_stat(stat: &str, ticks: f64) -> Option<(String, f64)> {
    let open = stat.find('(')?;
    let close = stat.rfind(')')?;
    let program = stat.get(open + 1..close)?.to_owned();
    let fields: Vec<&str> = stat.get(close + 2..)?.split_whitespace().collect();
    // After the comm: state is field 3, utime 14 and stime 15 (1-based, man 5 proc).
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    Some((program, (utime + stime) / ticks))
}

/// `/proc` counts in USER_HZ, which Linux fixes at 100 for user space on x86 and Arm.
const TICKS_PER_SECOND: f64 = 100.0;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_and_system_time_are_read_after_the_program_name() {
        let stat = "4242 (payment-api (x)) S 1 4242 4242 0 -1 4194560 900 0 0 0 250 50 0 0 20 0 9 0 123 456 789";
        let (program, seconds) = parse_stat(stat, 100.0).unwrap();
        assert_eq!(program, "payment-api (x)");
        assert!((seconds - 3.0).abs() < 1e-9, "{seconds}");
    }

    #[test]
    fn the_running_test_has_used_some_cpu() {
        let before = CpuSnapshot::take();
        let mut x = 0u64;
        for i in 0..20_000_000u64 {
            x = x.wrapping_mul(31).wrapping_add(i);
        }
        std::hint::black_box(x);
        let used = CpuSnapshot::take().since(&before);
        assert!(!used.is_empty(), "{used:?}");
    }
}
