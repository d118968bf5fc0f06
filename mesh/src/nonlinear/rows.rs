//! The shape check every row-wise function makes: its input is a whole number of rows.

use crate::error::MeshError;

/// The number of rows of `row_len` elements in an input of `len` elements.
pub(crate) fn rows_of(len: usize, row_len: usize) -> Result<usize, MeshError> {
    if row_len == 0 || len == 0 || len % row_len != 0 {
        return Err(MeshError::InvalidArgument(
            "input must be a non-empty whole number of rows of a non-zero length",
        ));
    }
    Ok(len / row_len)
}
