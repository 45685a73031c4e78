//! What execution counts for `/metrics`: transactions applied, failed and dropped, and each
//! change of a task's or dispute's status, since the node started (Prometheus counters: graph
//! their `rate()`).

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};

use verity_state::modules::disputes::DisputeStatus;
use verity_state::{Applied, TaskStatus};

const TASK_STATUSES: [TaskStatus; 7] = [
    TaskStatus::Pending,
    TaskStatus::Assigned,
    TaskStatus::Challengeable,
    TaskStatus::Finalized,
    TaskStatus::Cancelled,
    TaskStatus::Expired,
    TaskStatus::Failed,
];

const DISPUTE_STATUSES: [DisputeStatus; 5] = [
    DisputeStatus::Open,
    DisputeStatus::WorkerWon,
    DisputeStatus::ChallengerWon,
    DisputeStatus::Moot,
    DisputeStatus::Undecided,
];

#[derive(Default)]
pub struct ExecutionMetrics {
    txs: AtomicU64,
    failed_txs: AtomicU64,
    dropped_txs: AtomicU64,
    tasks: [AtomicU64; TASK_STATUSES.len()],
    disputes: [AtomicU64; DISPUTE_STATUSES.len()],
}

fn name<T: serde::Serialize>(status: T) -> String {
    serde_json::to_value(status)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_default()
}

impl ExecutionMetrics {
    /// Counts what one executed block did.
    pub fn record(&self, applied: &Applied) {
        let count = |counter: &AtomicU64, n: usize| {
            counter.fetch_add(n as u64, Ordering::Relaxed);
        };
        count(&self.txs, applied.record.tx_hashes.len());
        count(&self.failed_txs, applied.record.failed_txs as usize);
        count(&self.dropped_txs, applied.dropped.len());
        for task in &applied.tasks {
            if let Some(i) = TASK_STATUSES.iter().position(|s| *s == task.status) {
                count(&self.tasks[i], 1);
            }
        }
        for dispute in &applied.disputes {
            if let Some(i) = DISPUTE_STATUSES.iter().position(|s| *s == dispute.status) {
                count(&self.disputes[i], 1);
            }
        }
    }

    /// The counters in Prometheus' text format.
    pub fn render(&self, out: &mut String) {
        let load = |c: &AtomicU64| c.load(Ordering::Relaxed);
        for (metric, help, value) in [
            (
                "verity_txs_applied_total",
                "transactions executed with a receipt",
                load(&self.txs),
            ),
            (
                "verity_txs_failed_total",
                "executed transactions whose action failed (they paid their fee)",
                load(&self.failed_txs),
            ),
            (
                "verity_txs_dropped_total",
                "transactions in finalized blocks that could not be charged",
                load(&self.dropped_txs),
            ),
        ] {
            let _ = writeln!(
                out,
                "# HELP {metric} {help}\n# TYPE {metric} counter\n{metric} {value}"
            );
        }
        let _ = writeln!(
            out,
            "# HELP verity_task_status_changes_total tasks that entered each status\n# TYPE verity_task_status_changes_total counter"
        );
        for (status, counter) in TASK_STATUSES.iter().zip(&self.tasks) {
            let _ = writeln!(
                out,
                "verity_task_status_changes_total{{status=\"{}\"}} {}",
                name(status),
                load(counter)
            );
        }
        let _ = writeln!(
            out,
            "# HELP verity_dispute_status_changes_total disputes that opened, moved or ended, by the status they reached\n# TYPE verity_dispute_status_changes_total counter"
        );
        for (status, counter) in DISPUTE_STATUSES.iter().zip(&self.disputes) {
            let _ = writeln!(
                out,
                "verity_dispute_status_changes_total{{status=\"{}\"}} {}",
                name(status),
                load(counter)
            );
        }
    }
}
