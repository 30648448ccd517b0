//! Confirming a power state by polling. A BMC accepts a change at once and applies it
//! seconds later, and a read taken during the change may still say the old state (or a
//! vendor's word for "in between"): a state counts only after two reads in a row agree.
//! These work with any driver's read.

use std::{future::Future, time::Duration};

use super::{BmcError, PowerState};

/// How long a change may take to apply, and how often it is polled meanwhile.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Polling {
    /// The longest a change may take (a graceful shutdown waits on the operating system).
    pub within: Duration,
    pub every: Duration,
    /// After a restart, how long On is read without an Off in between before the restart
    /// counts as done anyway (some BMCs never report Off during a warm reset).
    pub unseen_off: Duration,
}

impl Default for Polling {
    fn default() -> Self {
        Polling {
            within: Duration::from_secs(120),
            every: Duration::from_secs(1),
            unseen_off: Duration::from_secs(15),
        }
    }
}

/// One read; a transient failure counts as "no answer this time".
async fn read_once<F, Fut>(read: &mut F) -> Result<Option<PowerState>, BmcError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<PowerState, BmcError>>,
{
    match read().await {
        Ok(state) => Ok(Some(state)),
        Err(e) if e.is_transient() => Ok(None),
        Err(e) => Err(e),
    }
}

/// The state two reads in a row agree on, reading up to five times; `Unknown` when they
/// never agree. A failure of every read is that failure.
pub async fn settled<F, Fut>(mut read: F, every: Duration) -> Result<PowerState, BmcError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<PowerState, BmcError>>,
{
    let mut last: Option<PowerState> = None;
    let mut failure = None;
    for attempt in 0..5 {
        if attempt > 0 {
            tokio::time::sleep(every).await;
        }
        let state = match read().await {
            Ok(state) => state,
            Err(e) if e.is_transient() => {
                failure = Some(e);
                last = None;
                continue;
            }
            Err(e) => return Err(e),
        };
        if last == Some(state) {
            return Ok(state);
        }
        last = Some(state);
    }
    match (last, failure) {
        (None, Some(e)) => Err(e),
        _ => Ok(PowerState::Unknown),
    }
}

/// Polls until two reads in a row say `wanted`; a transient error after `polling.within`
/// naming the state last read.
pub async fn reached<F, Fut>(
    mut read: F,
    wanted: PowerState,
    polling: Polling,
    address: &str,
) -> Result<(), BmcError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<PowerState, BmcError>>,
{
    let deadline = tokio::time::Instant::now() + polling.within;
    let mut matched = 0;
    let mut last = None;
    loop {
        if let Some(state) = read_once(&mut read).await? {
            last = Some(state);
            matched = if state == wanted { matched + 1 } else { 0 };
            if matched >= 2 {
                return Ok(());
            }
        }
        if tokio::time::Instant::now() + polling.every > deadline {
            return Err(still(address, last, wanted, polling.within));
        }
        tokio::time::sleep(polling.every).await;
    }
}

/// Polls after a restart was asked of a machine that was on: done when On is read twice
/// after an Off, or read twice after `polling.unseen_off` without any Off.
pub async fn restarted<F, Fut>(mut read: F, polling: Polling, address: &str) -> Result<(), BmcError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<PowerState, BmcError>>,
{
    let started = tokio::time::Instant::now();
    let deadline = started + polling.within;
    let mut saw_off = false;
    let mut on_reads = 0;
    let mut last = None;
    loop {
        if let Some(state) = read_once(&mut read).await? {
            last = Some(state);
            match state {
                PowerState::Off => {
                    saw_off = true;
                    on_reads = 0;
                }
                PowerState::On => on_reads += 1,
                PowerState::Unknown => on_reads = 0,
            }
            let waited_enough = started.elapsed() >= polling.unseen_off;
            if on_reads >= 2 && (saw_off || waited_enough) {
                return Ok(());
            }
        }
        if tokio::time::Instant::now() + polling.every > deadline {
            return Err(still(address, last, PowerState::On, polling.within));
        }
        tokio::time::sleep(polling.every).await;
    }
}

fn still(
    address: &str,
    last: Option<PowerState>,
    wanted: PowerState,
    within: Duration,
) -> BmcError {
    BmcError::Transient(format!(
        "BMC {address}: the power state is still {} after {}s (wanted {})",
        last.map_or("unread", PowerState::name),
        within.as_secs(),
        wanted.name()
    ))
}

#[cfg(test)]
mod tests {
    use std::{collections::VecDeque, sync::Mutex};

    use super::*;
    use PowerState::{Off, On, Unknown};

    /// A read that answers `script` in turn, then its last answer forever.
    fn scripted(
        script: Vec<Result<PowerState, BmcError>>,
    ) -> impl FnMut() -> std::future::Ready<Result<PowerState, BmcError>> {
        let script = Mutex::new(VecDeque::from(script));
        move || {
            let mut script = script.lock().unwrap();
            let answer = if script.len() > 1 {
                script.pop_front().unwrap()
            } else {
                script.front().cloned().unwrap()
            };
            std::future::ready(answer)
        }
    }

    fn quick() -> Polling {
        Polling {
            within: Duration::from_secs(5),
            every: Duration::from_millis(1),
            unseen_off: Duration::from_millis(50),
        }
    }

    fn busy() -> Result<PowerState, BmcError> {
        Err(BmcError::Transient("busy".into()))
    }

    #[tokio::test]
    async fn a_state_counts_after_two_agreeing_reads() {
        let e = Duration::from_millis(1);
        assert_eq!(settled(scripted(vec![Ok(On), Ok(On)]), e).await, Ok(On));
        assert_eq!(
            settled(scripted(vec![Ok(Off), Ok(On), busy(), Ok(On), Ok(On)]), e).await,
            Ok(On),
            "a failed read breaks the pair"
        );
        assert_eq!(
            settled(scripted(vec![Ok(Off), Ok(On), Ok(Off), Ok(On), Ok(Off)]), e).await,
            Ok(Unknown)
        );
        assert!(settled(scripted(vec![busy()]), e).await.is_err());
        let denied = Err(BmcError::Terminal("401".into()));
        assert!(
            !settled(scripted(vec![denied]), e)
                .await
                .unwrap_err()
                .is_transient()
        );
    }

    #[tokio::test]
    async fn a_change_is_confirmed_only_by_two_reads_of_the_wanted_state() {
        let read = scripted(vec![Ok(Off), Ok(On), Ok(Off), busy(), Ok(On), Ok(On)]);
        reached(read, On, quick(), "b").await.unwrap();
        let never = reached(scripted(vec![Ok(Off)]), On, quick(), "10.0.0.5").await;
        assert_eq!(
            never.unwrap_err().to_string(),
            "BMC 10.0.0.5: the power state is still off after 5s (wanted on)"
        );
    }

    #[tokio::test]
    async fn a_restart_is_done_after_an_off_or_after_a_while_without_one() {
        let start = tokio::time::Instant::now();
        restarted(scripted(vec![Ok(Off), Ok(On), Ok(On)]), quick(), "b")
            .await
            .unwrap();
        assert!(start.elapsed() < quick().unseen_off, "an Off seen: no wait");
        let start = tokio::time::Instant::now();
        restarted(scripted(vec![Ok(On)]), quick(), "b")
            .await
            .unwrap();
        assert!(start.elapsed() >= quick().unseen_off);
    }
}
