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
