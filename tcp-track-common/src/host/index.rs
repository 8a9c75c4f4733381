//! The bucket of a slab's index: hashbrown's `HashTable` of slot numbers,
//! each with 32 bits of its key's hash. Used where a table's entries live
//! in a slab and every packet or event looks one up by key (the host's
//! established table, `host::lru`; the daemon's followed flows): the key
//! is compared in the slot, which the lookup reads anyway, so a lookup
//! touches one 8-byte bucket and one slot, and the hash kept in the bucket
//! lets the table grow without reading any slot.

/// A slot, and the 32 bits of its key's hash the table is keyed by
/// (`spread`).
#[derive(Clone, Copy, Debug)]
pub struct Bucket {
    pub slot: u32,
    pub hash: u32,
}

/// 32 bits of a 64-bit hash, both halves folded in.
pub fn fold(hash: u64) -> u32 {
    (hash ^ hash >> 32) as u32
}

/// The table's 64-bit hash from 32 bits: hashbrown takes a bucket's
/// position from the low bits and its tag from the top 7, so both halves
/// are the same 32 bits (a table of fewer than 2^25 buckets reads
/// different bits for each).
pub fn spread(hash: u32) -> u64 {
    u64::from(hash) << 32 | u64::from(hash)
}
