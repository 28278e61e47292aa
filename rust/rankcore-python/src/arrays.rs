//! Conversions between numpy arrays and faer views/matrices.

use faer::{Mat, MatRef};
use numpy::ndarray::{Array2, ShapeBuilder};
use numpy::{Element, PyArray1, PyArray2, PyReadonlyArray2};
use pyo3::prelude::*;

/// Borrows a numpy array as a faer view with its own strides (C, Fortran or sliced order;
/// no copy). The Python layer guarantees alignment and native byte order.
pub fn view<'a, T: Element>(a: &'a PyReadonlyArray2<'_, T>) -> MatRef<'a, T> {
    let arr = a.as_array();
    let (m, n) = arr.dim();
    let s = arr.strides();
    // SAFETY: the pointer, shape and element strides come from a live, borrowed numpy array
    // that outlives the returned view; faer only reads through it.
    unsafe { MatRef::from_raw_parts(arr.as_ptr(), m, n, s[0], s[1]) }
}

/// A new numpy array holding `a` (Fortran order) or `aᵀ` (C order, when `transpose`): either
/// way faer's columns are copied whole, with no strided gather.
pub fn to_numpy<'py, T: Element + Copy>(
    py: Python<'py>,
    a: &Mat<T>,
    transpose: bool,
) -> Bound<'py, PyArray2<T>> {
    let (m, n) = a.shape();
    let mut data = Vec::with_capacity(m * n);
    for j in 0..n {
        data.extend(a.col(j).iter().copied());
    }
    let arr = if transpose {
        Array2::from_shape_vec((n, m), data)
    } else {
        Array2::from_shape_vec((m, n).f(), data)
    };
    PyArray2::from_owned_array(py, arr.expect("the shape matches the data by construction"))
}

pub fn vec_to_numpy<'py, T: Element>(py: Python<'py>, v: Vec<T>) -> Bound<'py, PyArray1<T>> {
    PyArray1::from_vec(py, v)
}

/// Whether `a` is a float32 array (or a tuple whose first item is: a sparse matrix passed as
/// `(values, indptr, indices, …)`). Every other input takes the float64 path, where anything
/// but a float64 array fails to convert with a `TypeError` (the Python layer has already
/// cast inputs to one of the two).
pub fn is_f32(a: &Bound<'_, PyAny>) -> bool {
    if let Ok(t) = a.cast::<pyo3::types::PyTuple>() {
        return t.get_item(0).map(|v| is_f32(&v)).unwrap_or(false);
    }
    a.getattr("dtype")
        .and_then(|d| d.str())
        .map(|s| s == "float32")
        .unwrap_or(false)
}

/// The bindings' one dtype dispatch: `f::<f32>(args)` when `a` is a float32 array, else
/// `f::<f64>(args)`. With `=> into_any`, each branch's array result is returned as `PyAny`.
#[macro_export]
macro_rules! by_dtype {
    ($a:expr, $f:ident($($arg:expr),* $(,)?)) => {
        if $crate::arrays::is_f32($a) {
            $f::<f32>($($arg),*)
        } else {
            $f::<f64>($($arg),*)
        }
    };
    ($a:expr, $f:ident($($arg:expr),* $(,)?) => into_any) => {
        if $crate::arrays::is_f32($a) {
            Ok($f::<f32>($($arg),*)?.into_any())
        } else {
            Ok($f::<f64>($($arg),*)?.into_any())
        }
    };
}
