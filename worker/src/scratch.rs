//! The task's scratch-disk budget: how many bytes of downloads may be on disk at once.
//!
//! Every slot of a worker stages its object in `--work-dir`, so without a budget the disk
//! must hold `--concurrency` × `--max-object-bytes` at once (2 × 10 GiB per task by default,
//! and several tasks share an instance's volume). A full disk is worse than a slow file: the
//! write fails with ENOSPC, the file is retried, and every neighbour writing at that moment
//! fails too. So each download first reserves its size here, before the first byte reaches
//! the disk, and the reservation lives as long as the file ([`crate::fetch::Download`] holds
//! both, the file first, so it is deleted before the space is handed on). A file that does
//! not fit waits for space while its message stays held (the visibility heartbeat keeps it
//! hidden); the wait is an ordinary `await`, so a shutdown or Spot release that drops the
//! message's work ends it at once.
//!
//! The budget counts in KiB (a semaphore's permits), rounding each reservation up, so one
//! object as large as the whole budget always fits, on its own.

use std::path::Path;
use std::sync::Arc;

use prometheus_client::metrics::gauge::Gauge;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::telemetry;

/// Bytes per permit.
const UNIT: u64 = 1024;

/// The bytes the task's downloads may occupy together; cheap to clone (clones share it).
#[derive(Debug, Clone)]
pub struct ScratchBudget {
    permits: Arc<Semaphore>,
    /// Permits in the whole budget: no reservation asks for more, so none waits forever.
    total_units: u32,
    budget_bytes: u64,
    reserved: Gauge,
}

/// Why a budget cannot be made.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BudgetError {
    /// Zero bytes would make every download wait forever.
    #[error("a scratch budget needs at least 1 byte")]
    Empty,
    /// More than the semaphore can count.
    #[error("a scratch budget of {0} bytes is more than the {max} bytes supported", max = max_budget_bytes())]
    TooLarge(u64),
}

/// The largest budget a [`ScratchBudget`] can count (4 TiB, in KiB permits).
pub const fn max_budget_bytes() -> u64 {
    u32::MAX as u64 * UNIT
}

/// Space held for one download; returned to the budget when dropped.
#[derive(Debug)]
pub struct Reservation {
    permit: OwnedSemaphorePermit,
    bytes: u64,
    reserved: Gauge,
}

impl Drop for Reservation {
    fn drop(&mut self) {
        self.reserved.dec_by(gauge_value(self.bytes));
    }
}

impl Reservation {
    /// The bytes this reservation stands for.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }
}

impl ScratchBudget {
    /// A budget of `bytes`, reporting what is reserved in `reserved` (the
    /// `scratch_reserved_bytes` gauge of [`telemetry::Metrics`]).
    pub fn new(bytes: u64, reserved: Gauge) -> Result<ScratchBudget, BudgetError> {
        if bytes == 0 {
            return Err(BudgetError::Empty);
        }
        let total_units = u32::try_from(units(bytes)).map_err(|_| BudgetError::TooLarge(bytes))?;
        Ok(ScratchBudget {
            permits: Arc::new(Semaphore::new(total_units as usize)),
            total_units,
            budget_bytes: bytes,
            reserved,
        })
    }

    /// The whole budget, in bytes.
    pub fn budget_bytes(&self) -> u64 {
        self.budget_bytes
    }

    /// Reserves room for a file of `bytes` (`source` names it in the log line), waiting for
    /// other files to go if it does not fit now. A request larger than the whole budget (the
    /// configuration keeps `--max-object-bytes` within it) is capped to the budget, so it
    /// runs alone instead of waiting forever.
    pub async fn reserve(&self, bytes: u64, source: &str) -> Reservation {
        let wanted = u32::try_from(units(bytes))
            .unwrap_or(u32::MAX)
            .min(self.total_units);
        let permit = match Arc::clone(&self.permits).try_acquire_many_owned(wanted) {
            Ok(permit) => permit,
            Err(_no_room) => {
                telemetry::waiting_for_scratch(
                    source,
                    bytes,
                    self.reserved_bytes(),
                    self.budget_bytes,
                );
                // The semaphore is never closed, so acquiring only ends by succeeding (or by
                // the caller dropping this future).
                match Arc::clone(&self.permits).acquire_many_owned(wanted).await {
                    Ok(permit) => permit,
                    Err(closed) => unreachable!("the scratch semaphore is never closed: {closed}"),
                }
            }
        };
        self.reserved.inc_by(gauge_value(bytes));
        Reservation {
            permit,
            bytes,
            reserved: self.reserved.clone(),
        }
    }

    /// Gives back the part of `reservation` beyond `bytes` (the size S3 announced, when the
    /// event gave none and the largest object was reserved), so neighbours need not wait for
    /// space this file will never use.
    pub fn shrink(&self, reservation: &mut Reservation, bytes: u64) {
        if bytes >= reservation.bytes {
            return;
        }
        let keep = u32::try_from(units(bytes)).unwrap_or(u32::MAX);
        let held = u32::try_from(reservation.permit.num_permits()).unwrap_or(u32::MAX);
        if let Some(excess) = held.checked_sub(keep).filter(|&n| n > 0) {
            drop(reservation.permit.split(excess as usize));
        }
        self.reserved.dec_by(gauge_value(reservation.bytes - bytes));
        reservation.bytes = bytes;
    }

    /// Grows `reservation` to `bytes` if the budget has room now, without waiting (the
    /// caller holds a response open, which must not idle while others finish). Returns
    /// whether it did.
    pub fn try_grow(&self, reservation: &mut Reservation, bytes: u64) -> bool {
        if bytes <= reservation.bytes {
            return true;
        }
        let Ok(held) = u32::try_from(reservation.permit.num_permits()) else {
            return false;
        };
        let Some(extra) = u32::try_from(units(bytes))
            .ok()
            .filter(|&wanted| wanted <= self.total_units)
            .and_then(|wanted| wanted.checked_sub(held))
        else {
            return false;
        };
        if extra > 0 {
            match Arc::clone(&self.permits).try_acquire_many_owned(extra) {
                Ok(more) => reservation.permit.merge(more),
                Err(_no_room) => return false,
            }
        }
        self.reserved.inc_by(gauge_value(bytes - reservation.bytes));
        reservation.bytes = bytes;
        true
    }

    /// Bytes reserved right now.
    pub fn reserved_bytes(&self) -> u64 {
        u64::try_from(self.reserved.get()).unwrap_or(0)
    }
}

/// Checks at start-up that downloads can be staged in `dir` (it exists, is a directory and
/// takes a new file, which a read-only container root does not), and returns the bytes free
/// there for this process. The budget is this task's share: tasks on one instance share the
/// volume, so free space at least the budget is needed, not enough.
pub fn check_work_dir(dir: &Path) -> std::io::Result<u64> {
    if !std::fs::metadata(dir)?.is_dir() {
        return Err(std::io::Error::new(
            std::io::ErrorKind::NotADirectory,
            "not a directory",
        ));
    }
    drop(tempfile::tempfile_in(dir)?);
    let stats = rustix::fs::statvfs(dir)?;
    Ok(stats.f_bavail.saturating_mul(stats.f_frsize))
}

fn units(bytes: u64) -> u64 {
    bytes.div_ceil(UNIT)
}

fn gauge_value(bytes: u64) -> i64 {
    i64::try_from(bytes).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn budget(bytes: u64) -> ScratchBudget {
        ScratchBudget::new(bytes, Gauge::default()).expect("valid budget")
    }

    #[tokio::test]
    async fn a_file_that_does_not_fit_waits_until_the_first_is_released() {
        let budget = budget(10 * 1024);
        let first = budget.reserve(6 * 1024, "s3://in/a").await;
        assert_eq!(budget.reserved_bytes(), 6 * 1024);
        let waiting = tokio::spawn({
            let budget = budget.clone();
            async move { budget.reserve(6 * 1024, "s3://in/b").await }
        });
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert!(!waiting.is_finished(), "6 + 6 KiB do not fit in 10 KiB");
        assert_eq!(budget.reserved_bytes(), 6 * 1024);
        drop(first);
        let second = tokio::time::timeout(Duration::from_secs(1), waiting)
            .await
            .expect("the second starts once the first is gone")
            .expect("no panic");
        assert_eq!(second.bytes(), 6 * 1024);
        assert_eq!(budget.reserved_bytes(), 6 * 1024);
    }

    #[tokio::test]
    async fn files_that_fit_together_do_not_wait_and_dropping_releases() {
        let budget = budget(10 * 1024);
        let a = budget.reserve(4 * 1024, "s3://in/a").await;
        let b = budget.reserve(6 * 1024, "s3://in/b").await;
        assert_eq!(budget.reserved_bytes(), 10 * 1024);
        drop((a, b));
        assert_eq!(budget.reserved_bytes(), 0);
        let whole = budget.reserve(10 * 1024, "s3://in/c").await;
        assert_eq!(whole.bytes(), 10 * 1024);
    }

    #[tokio::test]
    async fn a_wait_ends_when_its_future_is_dropped_and_takes_nothing() {
        let budget = budget(1024);
        let held = budget.reserve(1024, "s3://in/a").await;
        let cancelled = tokio::time::timeout(
            Duration::from_millis(200),
            budget.reserve(1024, "s3://in/b"),
        )
        .await;
        assert!(cancelled.is_err(), "the wait was still on");
        drop(held);
        assert_eq!(budget.reserved_bytes(), 0);
        // The cancelled waiter left no claim behind: the whole budget is free again.
        let again = tokio::time::timeout(Duration::from_secs(1), budget.reserve(1024, "s3://in/c"))
            .await
            .expect("nothing is left queued");
        assert_eq!(again.bytes(), 1024);
    }

    #[tokio::test]
    async fn shrinking_hands_the_excess_on_and_oversized_requests_run_alone() {
        let budget = budget(8 * 1024);
        let mut unknown = budget.reserve(8 * 1024, "s3://in/a").await;
        budget.shrink(&mut unknown, 1000);
        assert_eq!(budget.reserved_bytes(), 1000);
        let other = tokio::time::timeout(
            Duration::from_secs(1),
            budget.reserve(7 * 1024, "s3://in/b"),
        )
        .await
        .expect("7 KiB fit beside 1000 bytes");
        drop((unknown, other));
        let huge = budget.reserve(u64::MAX, "s3://in/c").await;
        assert_eq!(
            huge.bytes(),
            u64::MAX,
            "capped in permits, not in what it reports"
        );
    }

    #[tokio::test]
    async fn growing_takes_only_free_room_and_never_past_the_budget() {
        let budget = budget(4 * 1024);
        let mut grown = budget.reserve(10, "s3://in/a").await;
        assert!(budget.try_grow(&mut grown, 3 * 1024));
        assert_eq!(budget.reserved_bytes(), 3 * 1024);
        let other = budget.reserve(1024, "s3://in/b").await;
        assert!(
            !budget.try_grow(&mut grown, 3 * 1024 + 1),
            "the budget is full"
        );
        assert_eq!(grown.bytes(), 3 * 1024);
        drop(other);
        assert!(
            !budget.try_grow(&mut grown, 4 * 1024 + 1),
            "past the whole budget"
        );
        assert!(budget.try_grow(&mut grown, 4 * 1024));
        drop(grown);
        assert_eq!(budget.reserved_bytes(), 0);
    }

    #[test]
    fn the_work_dir_must_be_a_writable_directory_and_its_free_space_is_read() {
        let dir = tempfile::tempdir().expect("temp dir");
        let free = check_work_dir(dir.path()).expect("a temp dir takes downloads");
        assert!(free > 0, "a writable file system has room: {free}");
        let missing = check_work_dir(&dir.path().join("missing")).map(|_| ());
        assert_eq!(
            missing.map_err(|e| e.kind()),
            Err(std::io::ErrorKind::NotFound)
        );
        let file = dir.path().join("file");
        std::fs::write(&file, b"x").expect("write");
        assert_eq!(
            check_work_dir(&file).map(|_| ()).map_err(|e| e.kind()),
            Err(std::io::ErrorKind::NotADirectory)
        );
    }

    #[test]
    fn empty_and_uncountable_budgets_are_refused() {
        assert_eq!(
            ScratchBudget::new(0, Gauge::default()).map(|_| ()),
            Err(BudgetError::Empty)
        );
        assert!(ScratchBudget::new(max_budget_bytes(), Gauge::default()).is_ok());
        assert_eq!(
            ScratchBudget::new(max_budget_bytes() + UNIT, Gauge::default()).map(|_| ()),
            Err(BudgetError::TooLarge(max_budget_bytes() + UNIT))
        );
    }
}
