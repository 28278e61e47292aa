//! The one way the binding calls into the core: release the GIL, run the work in rankcore's
//! thread pool, turn Ctrl-C into `KeyboardInterrupt`, and map core errors to exceptions.

use pyo3::exceptions::{PyKeyboardInterrupt, PyRuntimeError, PyValueError};
use pyo3::prelude::*;
use rankcore::{Error, Interrupt};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::time::Duration;

/// How often the calling thread looks for pending signals while the core works.
const POLL: Duration = Duration::from_millis(50);

/// Raised by the core's safe points once the calling thread has seen a signal.
struct CancelFlag(AtomicBool);

impl Interrupt for CancelFlag {
    fn check(&self) -> rankcore::Result<()> {
        if self.0.load(Ordering::Relaxed) {
            Err(Error::Interrupted)
        } else {
            Ok(())
        }
    }
}

pub fn to_pyerr(e: Error) -> PyErr {
    match e {
        Error::InvalidValue(msg) | Error::InvalidShape(msg) => PyValueError::new_err(msg),
        Error::Interrupted => PyKeyboardInterrupt::new_err("interrupted"),
        e @ Error::NoConvergence(_) => PyRuntimeError::new_err(e.to_string()),
    }
}

/// A worker's outcome: its result, or the payload of its panic.
type Caught<R> = std::thread::Result<rankcore::Result<R>>;

/// Runs `work` without the GIL, in rankcore's thread pool.
///
/// On Python's main thread (the only one that runs signal handlers) the work goes to one of
/// the pool's threads while this thread waits for it, waking every [`POLL`] to run the
/// handlers: a handler that raises (Ctrl-C) sets the cancel flag, the work returns
/// `Interrupted` at its next safe point and the handler's exception is re-raised. Work that
/// ends before the first wake-up costs one hand-over to the pool and no thread creation.
/// On any other thread no signal can arrive, so the work simply runs in the pool.
pub fn run<R: Send>(
    py: Python<'_>,
    work: impl FnOnce(&dyn Interrupt) -> rankcore::Result<R> + Send,
) -> PyResult<R> {
    let cancel = CancelFlag(AtomicBool::new(false));
    if !is_main_thread(py) {
        let caught = py.detach(|| {
            rankcore::threads::install(|| catch_unwind(AssertUnwindSafe(|| work(&cancel))))
        });
        return unpack(caught);
    }
    let (caught, signal) = py.detach(|| {
        let (done_tx, done_rx) = mpsc::channel::<()>();
        let mut slot: Option<Caught<R>> = None;
        let mut signal: Option<PyErr> = None;
        let pooled = rankcore::threads::scope(|s| {
            let (cancel, slot) = (&cancel, &mut slot);
            s.spawn(move |_| {
                *slot = Some(catch_unwind(AssertUnwindSafe(|| work(cancel))));
                let _ = done_tx.send(());
            });
            while let Err(mpsc::RecvTimeoutError::Timeout) = done_rx.recv_timeout(POLL) {
                if signal.is_none() {
                    if let Err(e) = Python::attach(|py| py.check_signals()) {
                        cancel.0.store(true, Ordering::Relaxed);
                        signal = Some(e);
                    }
                }
            }
        });
        let caught = pooled.map(|()| slot.expect("the scope returns after its job has run"));
        (caught, signal)
    });
    match signal {
        Some(err) => Err(err),
        None => unpack(caught),
    }
}

fn unpack<R>(caught: rankcore::Result<Caught<R>>) -> PyResult<R> {
    match caught {
        Ok(Ok(Ok(value))) => Ok(value),
        Ok(Ok(Err(e))) | Err(e) => Err(to_pyerr(e)),
        Ok(Err(_)) => Err(PyRuntimeError::new_err(
            "rankcore: internal error (a worker panicked); please report it",
        )),
    }
}

fn is_main_thread(py: Python<'_>) -> bool {
    let check = || -> PyResult<bool> {
        let threading = py.import("threading")?;
        let main = threading.call_method0("main_thread")?;
        let current = threading.call_method0("current_thread")?;
        Ok(main.is(&current))
    };
    check().unwrap_or(true)
}
