//! The memory bound of the searches: bytes counted, not measured.
//!
//! A search stops when the bytes its configurations take reach
//! [`CheckConfig::max_memory_bytes`](crate::linearizability::CheckConfig):
//! each configuration's inline size where it is stored (a vector's slot, a
//! hash table's bucket with its control byte) plus its heap allocations,
//! each rounded up as the allocator rounds it. Counting instead of reading
//! the resident size keeps the verdict a function of the history and the
//! bound, whatever the machine or the other threads are doing.

/// The library's default memory bound: 1 GiB per check. Fixed, so that a
/// test or a library user gets the same verdict on every machine; the
/// `concord-sim check` command line defaults to [`memory_bytes_default`].
pub const MEMORY_BYTES_DEFAULT: u64 = 1 << 30;

/// The fraction of the machine's memory the command line allows a check
/// by default (one part in this many).
pub const MEMORY_SHARE_DIVISOR: u64 = 4;

/// The command line's default memory bound: a quarter of `MemTotal` in
/// `/proc/meminfo`, or [`MEMORY_BYTES_DEFAULT`] where that cannot be read.
pub fn memory_bytes_default() -> u64 {
    std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|text| mem_total_bytes(&text))
        .map_or(MEMORY_BYTES_DEFAULT, |total| {
            (total / MEMORY_SHARE_DIVISOR).max(1)
        })
}

/// `MemTotal` of a `/proc/meminfo` text, in bytes.
fn mem_total_bytes(meminfo: &str) -> Option<u64> {
    let line = meminfo.lines().find(|l| l.starts_with("MemTotal:"))?;
    let mut words = line["MemTotal:".len()..].split_whitespace();
    let value: u64 = words.next()?.parse().ok()?;
    match words.next() {
        Some("kB") => value.checked_mul(1024),
        None => Some(value),
        Some(_) => None,
    }
}

/// Parses a byte count: plain bytes (`268435456`) or with a binary suffix
/// `K`, `M`, `G`, `T` (`512M`, `2G`; `KiB`, `MB` and lower case read the
/// same, all powers of 1024).
pub fn parse_bytes(text: &str) -> Result<u64, String> {
    let t = text.trim();
    let digits = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (number, suffix) = t.split_at(digits);
    let number: u64 = number.parse().map_err(|_| {
        format!("{text:?} is not a byte count (a whole number, optionally with K, M, G or T)")
    })?;
    let shift = match suffix.trim().to_ascii_uppercase().as_str() {
        "" | "B" => 0,
        "K" | "KB" | "KIB" => 10,
        "M" | "MB" | "MIB" => 20,
        "G" | "GB" | "GIB" => 30,
        "T" | "TB" | "TIB" => 40,
        _ => {
            return Err(format!(
                "{text:?}: unknown suffix {suffix:?} (use K, M, G or T, powers of 1024)"
            ))
        }
    };
    let bytes = number
        .checked_mul(1u64 << shift)
        .ok_or_else(|| format!("{text:?} is more bytes than fit in 64 bits"))?;
    if bytes == 0 {
        return Err(format!(
            "{text:?}: the memory bound must be at least 1 byte"
        ));
    }
    Ok(bytes)
}

/// A byte count in words: `1.0 GiB`, `256.0 MiB`, `900 bytes`.
pub fn show_bytes(bytes: u64) -> String {
    const UNITS: [&str; 4] = ["KiB", "MiB", "GiB", "TiB"];
    if bytes < 1024 {
        return format!("{bytes} bytes");
    }
    let mut value = bytes as f64 / 1024.0;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    format!("{value:.1} {}", UNITS[unit])
}

/// What a heap allocation of `size_bytes` really takes, the larger of
/// two allocators' roundings: glibc's malloc (an 8-byte header, rounded to
/// 16, at least 32) and mimalloc's size classes (the binary's allocator:
/// four per power of two, so up to a quarter more); nothing for an empty
/// allocation (Rust does not allocate those).
#[inline]
pub fn alloc_bytes(size_bytes: usize) -> usize {
    if size_bytes == 0 {
        return 0;
    }
    let glibc = (size_bytes + 8).next_multiple_of(16).max(32);
    let class = if size_bytes <= 64 {
        size_bytes.next_multiple_of(16)
    } else {
        let below = 1usize << (usize::BITS - 1 - (size_bytes - 1).leading_zeros());
        size_bytes.next_multiple_of(below / 4)
    };
    glibc.max(class)
}

/// The heap a `String` holds.
pub fn string_bytes(s: &str, capacity: usize) -> usize {
    debug_assert!(capacity >= s.len());
    alloc_bytes(capacity)
}

/// The bytes of a hash table of `capacity` (as `HashSet::capacity`
/// reports it: 7/8 of the buckets) holding values of `entry_bytes` each:
/// a bucket and a control byte per bucket.
#[inline]
pub fn table_bytes(capacity: usize, entry_bytes: usize) -> usize {
    if capacity == 0 {
        return 0;
    }
    let buckets = if capacity < 8 {
        (capacity + 1).next_power_of_two()
    } else {
        (capacity * 8 / 7).next_power_of_two()
    };
    alloc_bytes(buckets * (entry_bytes + 1) + 16)
}

/// The most bytes a hash table holding `len` of `capacity` entries of
/// `entry_bytes` takes by its next insertion: when it is full, that
/// insertion allocates the doubled table while the old one still exists.
#[inline]
pub fn table_peak_bytes(len: usize, capacity: usize, entry_bytes: usize) -> usize {
    let now = table_bytes(capacity, entry_bytes);
    if len < capacity {
        now
    } else {
        now + table_bytes((capacity + 1) * 2, entry_bytes)
    }
}

/// The most bytes a vector holding `len` of `capacity` entries of
/// `entry_bytes` takes by its next push (a full one reallocates to twice
/// its capacity, both alive while it copies).
#[inline]
pub fn vec_peak_bytes(len: usize, capacity: usize, entry_bytes: usize) -> usize {
    let now = alloc_bytes(capacity * entry_bytes);
    if len < capacity {
        now
    } else {
        now + alloc_bytes(capacity.max(4) * 2 * entry_bytes)
    }
}

/// The bytes of a `BTreeMap<K, V>` of `len` entries, without what the
/// keys and values hold on the heap: its nodes of up to 11 entries, which
/// hold at least 5 after a split, so at most one leaf per 5 entries beyond
/// the first 11 and one internal node (a leaf with 12 child pointers) per
/// 5 nodes below it.
pub fn btree_map_bytes<K, V>(len: usize) -> usize {
    const CAPACITY: usize = 11;
    if len == 0 {
        return 0;
    }
    // Keys, values, the parent pointer, the index in the parent and the
    // length.
    let leaf_bytes = std::mem::size_of::<[K; CAPACITY]>()
        + std::mem::size_of::<[V; CAPACITY]>()
        + std::mem::size_of::<usize>()
        + 4;
    let leaf_bytes = leaf_bytes.next_multiple_of(std::mem::size_of::<usize>());
    let internal_bytes = leaf_bytes + (CAPACITY + 1) * std::mem::size_of::<usize>();
    let leaves = if len <= CAPACITY {
        1
    } else {
        1 + (len - CAPACITY).div_ceil(5)
    };
    let mut internal = 0;
    let mut below = leaves;
    while below > 1 {
        below = below.div_ceil(5);
        internal += below;
    }
    leaves * alloc_bytes(leaf_bytes) + internal * alloc_bytes(internal_bytes)
}

/// The bytes of a `BTreeSet<K>` of `len` entries (a map to `()`).
pub fn btree_set_bytes<K>(len: usize) -> usize {
    btree_map_bytes::<K, ()>(len)
}

/// A global allocator for this crate's unit tests that counts, per
/// thread, the bytes asked for and the allocations made, so that tests
/// can check the accounting above against what really is allocated.
#[cfg(test)]
pub(crate) mod counting {
    use std::alloc::{GlobalAlloc, Layout, System};
    use std::cell::Cell;

    thread_local! {
        static ASKED: Cell<(usize, usize)> = const { Cell::new((0, 0)) };
    }

    struct Counting;

    // SAFETY: every call is passed on to `System` unchanged; the counter
    // is a const-initialised thread local, which does not allocate.
    unsafe impl GlobalAlloc for Counting {
        unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
            let _ = ASKED.try_with(|a| a.set((a.get().0 + layout.size(), a.get().1 + 1)));
            // SAFETY: the caller's contract is `System`'s.
            unsafe { System.alloc(layout) }
        }
        unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
            // SAFETY: the caller's contract is `System`'s.
            unsafe { System.dealloc(ptr, layout) }
        }
    }

    #[global_allocator]
    static ALLOCATOR: Counting = Counting;

    /// Bytes asked for and allocations made by this thread so far.
    pub(crate) fn asked() -> (usize, usize) {
        ASKED.with(Cell::get)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn btree_accounting_covers_what_a_tree_allocates() {
        for len in [1usize, 5, 11, 12, 30, 200, 3000] {
            let before = counting::asked();
            let mut map: std::collections::BTreeMap<u64, u64> = Default::default();
            // In a scattered order: splits leave nodes half full.
            for i in 0..len as u64 {
                map.insert(i * 7919 % len as u64, i);
            }
            let after = counting::asked();
            let (asked, allocs) = (after.0 - before.0, after.1 - before.1);
            let counted = btree_map_bytes::<u64, u64>(map.len());
            // Never under what was asked (with the allocator's header),
            // and not far over.
            assert!(
                counted >= asked + 8 * allocs,
                "{len}: counted {counted}, asked {asked}"
            );
            assert!(
                counted <= 3 * asked + 64,
                "{len}: counted {counted}, asked {asked}"
            );
        }
    }

    #[test]
    fn parse_bytes_reads_plain_and_suffixed_counts() {
        assert_eq!(parse_bytes("268435456"), Ok(268_435_456));
        assert_eq!(parse_bytes("512M"), Ok(512 << 20));
        assert_eq!(parse_bytes("2G"), Ok(2 << 30));
        assert_eq!(parse_bytes("2gib"), Ok(2 << 30));
        assert_eq!(parse_bytes("64K"), Ok(64 << 10));
        assert!(parse_bytes("0").is_err());
        assert!(parse_bytes("12X").is_err());
        assert!(parse_bytes("M").is_err());
        assert!(parse_bytes("99999999999T").is_err());
    }

    #[test]
    fn show_bytes_names_the_unit() {
        assert_eq!(show_bytes(900), "900 bytes");
        assert_eq!(show_bytes(1 << 30), "1.0 GiB");
        assert_eq!(show_bytes(256 << 20), "256.0 MiB");
    }

    #[test]
    fn mem_total_is_read_in_kilobytes() {
        let text = "MemTotal:       24684000 kB\nMemFree:  1 kB\n";
        assert_eq!(mem_total_bytes(text), Some(24_684_000 * 1024));
        assert_eq!(mem_total_bytes("nothing"), None);
        assert!(memory_bytes_default() > 0);
    }

    #[test]
    fn allocations_round_as_malloc_does() {
        assert_eq!(alloc_bytes(0), 0);
        assert_eq!(alloc_bytes(1), 32);
        assert_eq!(alloc_bytes(24), 32);
        assert_eq!(alloc_bytes(25), 48);
        assert_eq!(alloc_bytes(256), 272);
        assert_eq!(alloc_bytes(544), 640);
        assert_eq!(alloc_bytes(1 << 20), (1 << 20) + 16);
        for size in 1..5000 {
            let a = alloc_bytes(size);
            assert!(a >= size + 8 && a <= size * 5 / 4 + 32, "{size} -> {a}");
        }
    }
}
