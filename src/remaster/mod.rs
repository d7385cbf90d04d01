//! Remastering installer ISOs.
