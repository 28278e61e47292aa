//! rankcore: structured and low-rank linear algebra.
//!
//! This crate is the pure-Rust numerical core of the `rankcore` Python package. It has no
//! Python dependency: every public function takes borrowed views, returns owned results in a
//! `Result<_, Error>`, and never panics on user input (inputs are validated first).
//!
//! One implementation serves both precisions through the [`Float`] trait.

pub mod flora;
pub mod funbat;
pub mod gp;
pub mod kmedoids;
pub mod kron;
pub mod linalg;
pub mod operator;
pub mod projection;
pub mod rng;
pub mod sparse;
pub mod svd;
pub mod threads;
pub mod tucker;

use std::fmt::Debug;
use std::iter::Sum;
use std::ops::{Add, AddAssign, Div, Mul, MulAssign, Neg, Sub, SubAssign};

/// The real scalar types the core computes in: `f32` and `f64`.
///
/// It bundles what faer needs (`RealField`) with the arithmetic our own loops use, so that
/// every algorithm is written once.
pub trait Float:
    faer::traits::RealField
    + Copy
    + Default
    + Debug
    + PartialOrd
    + Send
    + Sync
    + 'static
    + Add<Output = Self>
    + Sub<Output = Self>
    + Mul<Output = Self>
    + Div<Output = Self>
    + Neg<Output = Self>
    + AddAssign
    + SubAssign
    + MulAssign
    + Sum
{
    /// Machine epsilon of the type.
    const EPSILON: Self;
    const ZERO: Self;
    const ONE: Self;
    fn from_f64(x: f64) -> Self;
    fn to_f64(self) -> f64;
    fn abs(self) -> Self;
    fn sqrt(self) -> Self;
    fn is_finite(self) -> bool;
}

macro_rules! impl_float {
    ($t:ty) => {
        impl Float for $t {
            const EPSILON: Self = <$t>::EPSILON;
            const ZERO: Self = 0.0;
            const ONE: Self = 1.0;
            #[inline(always)]
            fn from_f64(x: f64) -> Self {
                x as $t
            }
            #[inline(always)]
            fn to_f64(self) -> f64 {
                self as f64
            }
            #[inline(always)]
            fn abs(self) -> Self {
                <$t>::abs(self)
            }
            #[inline(always)]
            fn sqrt(self) -> Self {
                <$t>::sqrt(self)
            }
            #[inline(always)]
            fn is_finite(self) -> bool {
                <$t>::is_finite(self)
            }
        }
    };
}
impl_float!(f32);
impl_float!(f64);

/// Everything that can go wrong in the core. The Python binding maps each variant to one
/// exception type (`InvalidValue`/`InvalidShape` to `ValueError`, `Interrupted` to
/// `KeyboardInterrupt`, `NoConvergence` to `RuntimeError`).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum Error {
    /// A parameter has a value outside its domain; the message names the parameter.
    #[error("{0}")]
    InvalidValue(String),
    /// Array shapes do not fit together; the message names the parameter.
    #[error("{0}")]
    InvalidShape(String),
    /// The caller asked to stop (Ctrl-C).
    #[error("interrupted")]
    Interrupted,
    /// A dense factorisation in faer did not converge.
    #[error("{0} did not converge")]
    NoConvergence(&'static str),
}

pub type Result<T> = std::result::Result<T, Error>;

/// Asked at safe points of long computations (between passes over the data), always from the
/// thread that called into the core, never from a worker. Return `Err(Error::Interrupted)` to
/// stop: the computation unwinds and returns that error.
pub trait Interrupt: Sync {
    fn check(&self) -> Result<()>;
}

/// An [`Interrupt`] that never interrupts, for Rust callers and tests.
pub struct NeverInterrupt;

impl Interrupt for NeverInterrupt {
    fn check(&self) -> Result<()> {
        Ok(())
    }
}

/// Builds an `InvalidValue` error from a format string.
#[macro_export]
macro_rules! invalid {
    ($($arg:tt)*) => { $crate::Error::InvalidValue(format!($($arg)*)) };
}
