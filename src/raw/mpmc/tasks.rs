//! The joinable ring's task count: raised by each committed send, lowered
//! by `task_done` (and by the recovery of a dead consumer's slot); `join`
//! waits for zero.

use super::*;

impl MpmcRef {
    /// Unfinished tasks (joinable rings): committed sends not yet matched
    /// by a [`task_done`](Self::task_done).
    pub fn unfinished(&self) -> u64 {
        self.ring().tasks.0.unfinished.load(SeqCst)
    }

    /// Marks one task done; an error if none is unfinished.
    pub fn task_done(&self) -> Result<()> {
        let u = &self.ring().tasks.0.unfinished;
        let mut cur = u.load(SeqCst);
        loop {
            if cur == 0 {
                return Err(Error::InvalidArgument(
                    "task_done called more times than items were sent",
                ));
            }
            match u.compare_exchange_weak(cur, cur - 1, SeqCst, SeqCst) {
                Ok(_) => break,
                Err(now) => cur = now,
            }
        }
        if cur == 1 {
            self.ring().tasks.0.all_done.notify_all();
        }
        Ok(())
    }

    /// Waits until no task is unfinished, or until `until`.
    pub(crate) fn join_until(&self, until: Option<Deadline>) -> Result<()> {
        let ec = &self.ring().tasks.0.all_done;
        self.wait_on(
            ec,
            |e| matches!(e, Error::WouldBlock),
            until,
            None,
            || {
                if self.unfinished() == 0 {
                    Ok(())
                } else {
                    Err(Error::WouldBlock)
                }
            },
        )
    }
}
