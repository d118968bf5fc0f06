//! Sotto's models.
