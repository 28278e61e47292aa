//! Tucker decompositions: strided tensor views and n-mode products ([`tensor`]), HOSVD,
//! ST-HOSVD and HOOI with partial, error-target, randomized and masked variants
//! ([`decomp`]).

pub mod decomp;
pub mod tensor;

pub use decomp::{
    reconstruct, tucker, tucker_masked, Init, Method, SvdMethod, TuckerParams, TuckerResult,
};
pub use tensor::{
    chain_order, mode_product, mode_product_in, mode_product_with, multi_mode_product,
    multi_mode_product_in, multi_mode_product_with, unfolding_gram, Tensor, TensorRef, Unfolding,
    MAX_ORDER,
};

#[cfg(test)]
mod tests;
