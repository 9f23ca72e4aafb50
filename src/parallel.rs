//! Work spread over threads whose results are used in order, so that the output is the same
//! as a sequential run's whatever the scheduling: the snapshot stage's columns, the
//! streamed city's tables.

/// Runs `produce(i)` for `i in 0..n` on `workers` threads and hands the results to `consume`
/// in order of `i`, as soon as each is next: the output is the same as a sequential run's.
/// At most `ahead` items are being produced or waiting to be consumed at once. The first
/// error stops the workers from taking more items and is returned.
pub fn in_order<T: Send, E: Send>(
    n: usize,
    workers: usize,
    ahead: usize,
    produce: impl Fn(usize) -> Result<T, E> + Sync,
    mut consume: impl FnMut(usize, T) -> Result<(), E>,
) -> Result<(), E> {
    use std::collections::BTreeMap;
    use std::sync::{Condvar, Mutex, mpsc};

    /// The next item to take, how many have been consumed, and whether to stop.
    struct Progress {
        next: usize,
        consumed: usize,
        stop: bool,
    }
    let progress = Mutex::new(Progress {
        next: 0,
        consumed: 0,
        stop: false,
    });
    let turn = Condvar::new();
    let ahead = ahead.max(1);
    // A worker panicking would poison the lock; the scope re-raises its panic anyway.
    let lock = || progress.lock().unwrap_or_else(|p| p.into_inner());
    let (tx, rx) = mpsc::channel::<(usize, Result<T, E>)>();
    std::thread::scope(|scope| {
        for _ in 0..workers.clamp(1, n.max(1)) {
            let tx = tx.clone();
            let (produce, turn, lock) = (&produce, &turn, &lock);
            scope.spawn(move || {
                // A panic in `produce` stops the others (the scope then re-raises it) rather
                // than leaving them waiting for an item that will never be consumed.
                let _stop = StopOnPanic(|| {
                    lock().stop = true;
                    turn.notify_all();
                });
                loop {
                    let i = {
                        let mut p = lock();
                        while !p.stop && p.next < n && p.next >= p.consumed + ahead {
                            p = turn.wait(p).unwrap_or_else(|p| p.into_inner());
                        }
                        if p.stop || p.next >= n {
                            return;
                        }
                        p.next += 1;
                        p.next - 1
                    };
                    if tx.send((i, produce(i))).is_err() {
                        return;
                    }
                }
            });
        }
        drop(tx);
        let mut waiting = BTreeMap::new();
        let mut next = 0;
        let mut result = Ok(());
        for (i, r) in &rx {
            if result.is_err() {
                continue;
            }
            waiting.insert(i, r);
            // Consumed outside the lock: workers keep taking items meanwhile.
            while let Some(r) = waiting.remove(&next) {
                let done = r.and_then(|t| consume(next, t));
                next += 1;
                let mut p = lock();
                p.consumed = next;
                if let Err(e) = done {
                    result = Err(e);
                    p.stop = true;
                }
                turn.notify_all();
                if result.is_err() {
                    break;
                }
            }
        }
        result
    })
}

/// Runs its closure when dropped during a panic.
struct StopOnPanic<F: Fn()>(F);

impl<F: Fn()> Drop for StopOnPanic<F> {
    fn drop(&mut self) {
        if std::thread::panicking() {
            (self.0)();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn results_arrive_in_order_and_the_first_error_stops_the_rest() {
        for workers in [1, 2, 4] {
            let mut got = Vec::new();
            let r: Result<(), String> = in_order(
                50,
                workers,
                3,
                |i| {
                    // Later items finish first.
                    std::thread::sleep(std::time::Duration::from_micros((50 - i as u64) * 20));
                    Ok(i * i)
                },
                |i, v| {
                    assert_eq!(v, i * i);
                    got.push(i);
                    Ok(())
                },
            );
            assert_eq!(r, Ok(()));
            assert_eq!(got, (0..50).collect::<Vec<_>>(), "{workers} workers");
        }
        let taken = std::sync::atomic::AtomicUsize::new(0);
        let mut consumed = Vec::new();
        let r = in_order(
            1000,
            2,
            2,
            |i| {
                taken.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if i == 5 {
                    Err(format!("item {i}"))
                } else {
                    Ok(i)
                }
            },
            |i, _| {
                consumed.push(i);
                Ok(())
            },
        );
        assert_eq!(r, Err("item 5".to_string()));
        assert_eq!(consumed, [0, 1, 2, 3, 4]);
        assert!(
            taken.into_inner() <= 8,
            "workers stop taking items after an error"
        );
        assert_eq!(
            in_order(0, 2, 2, |_| Ok::<_, ()>(()), |_, _| Ok(())),
            Ok(())
        );
        // A panicking item is re-raised, not a hang of the workers waiting behind it.
        let panicked = std::panic::catch_unwind(|| {
            in_order(
                100,
                2,
                2,
                |i| {
                    assert!(i != 3, "item 3");
                    Ok::<_, ()>(i)
                },
                |_, _| Ok(()),
            )
        });
        assert!(panicked.is_err());
    }
}
