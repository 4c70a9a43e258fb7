//! Snapshot codec (postcard, with magic, version and checksum).
