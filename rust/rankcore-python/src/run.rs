//! The one way the binding calls into the core: release the GIL, run the work in rankcore's
//! thread pool, turn Ctrl-C into `KeyboardInterrupt`, and map core errors to exceptions.

use pyo3::exceptions::{PyKeyboardInterrupt, PyRuntimeError, PyValueError};
use pyo3::prelude::*;
use rankcore::{Error, Interrupt};
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

/// Runs `work` without the GIL. The work runs on a helper thread inside the pool while this
/// thread, which may be Python's main thread, wakes every [`POLL`] to run Python's signal
/// handlers (they only run on the main thread). A handler that raises (Ctrl-C) sets the
/// cancel flag; the work returns `Interrupted` at its next safe point and the handler's
/// exception is re-raised.
pub fn run<R: Send>(
    py: Python<'_>,
    work: impl FnOnce(&dyn Interrupt) -> rankcore::Result<R> + Send,
) -> PyResult<R> {
    let cancel = CancelFlag(AtomicBool::new(false));
    // Python runs signal handlers on its main thread only; elsewhere polling would just take
    // the GIL from other Python threads for nothing.
    let on_main = is_main_thread(py);
    let (outcome, signal) = py.detach(|| {
        std::thread::scope(|scope| {
            let (done_tx, done_rx) = mpsc::channel::<()>();
            let cancel = &cancel;
            let handle = scope.spawn(move || {
                let out = rankcore::threads::install(|| work(cancel));
                let _ = done_tx.send(());
                out
            });
            let mut signal: Option<PyErr> = None;
            while let Err(mpsc::RecvTimeoutError::Timeout) = done_rx.recv_timeout(POLL) {
                if on_main && signal.is_none() {
                    if let Err(e) = Python::attach(|py| py.check_signals()) {
                        cancel.0.store(true, Ordering::Relaxed);
                        signal = Some(e);
                    }
                }
            }
            (handle.join(), signal)
        })
    });
    if let Some(err) = signal {
        return Err(err);
    }
    match outcome {
        Ok(Ok(Ok(value))) => Ok(value),
        Ok(Ok(Err(e))) | Ok(Err(e)) => Err(to_pyerr(e)),
        Err(_) => Err(PyRuntimeError::new_err(
            "rankcore: internal error (a worker panicked); please report it",
        )),
    }
}

/// Multiply-adds below which [`run_sized`] skips the signal-polling helper thread: its
/// start-up (about 0.1 ms) would cost more than a FLoRA-sized product (10⁵–10⁶ flops), and
/// work this small (a few milliseconds at most) ends before a Ctrl-C could be felt anyway.
const QUICK_WORK: f64 = 1e7;

/// [`run`] for work whose size is known up front (`work_estimate` multiply-adds): small work
/// runs without the GIL in rankcore's pool but without the polling thread (its safe points
/// never fire), large work goes through [`run`], so Ctrl-C reaches its safe points.
pub fn run_sized<R: Send>(
    py: Python<'_>,
    work_estimate: f64,
    work: impl FnOnce(&dyn Interrupt) -> rankcore::Result<R> + Send,
) -> PyResult<R> {
    if work_estimate >= QUICK_WORK {
        return run(py, work);
    }
    let caught = py.detach(|| {
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            rankcore::threads::install(|| work(&rankcore::NeverInterrupt))
        }))
    });
    match caught {
        Ok(Ok(Ok(v))) => Ok(v),
        Ok(Ok(Err(e))) | Ok(Err(e)) => Err(to_pyerr(e)),
        Err(_) => Err(PyRuntimeError::new_err(
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
