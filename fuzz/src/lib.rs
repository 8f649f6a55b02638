//! The fuzz targets' checks, as a library so that each target uses only its own.

pub mod checks;
