//! Fixed-point format (placeholder; being written).
