//! CRC-64/XZ eight bytes at a time ("slicing by 8"): the same function as
//! [`checksum64`](crate::checksum64), several times faster on large inputs.
//!
//! A snapshot of a large state machine is checksummed whole when its file
//! is written, when it is read back at startup and when the node takes it
//! to serve followers; at a byte a step that alone costs a quarter of a
//! second per 100 MB. [`update`] processes eight bytes per step with
//! eight tables (16 KiB, computed at compile time).

/// Reflected polynomial of CRC-64/XZ (ECMA-182).
const POLYNOMIAL_REFLECTED: u64 = 0xC96C_5795_D787_0F42;

/// `TABLES[0]` is the classic byte-at-a-time table; `TABLES[k][b]` is the
/// CRC contribution of byte `b` followed by `k` zero bytes.
static TABLES: [[u64; 256]; 8] = tables();

const fn tables() -> [[u64; 256]; 8] {
    let mut tables = [[0u64; 256]; 8];
    let mut i = 0;
    while i < 256 {
        let mut crc = i as u64;
        let mut bit = 0;
        while bit < 8 {
            crc = if crc & 1 == 1 {
                (crc >> 1) ^ POLYNOMIAL_REFLECTED
            } else {
                crc >> 1
            };
            bit += 1;
        }
        tables[0][i] = crc;
        i += 1;
    }
    let mut k = 1;
    while k < 8 {
        let mut i = 0;
        while i < 256 {
            let previous = tables[k - 1][i];
            tables[k][i] = (previous >> 8) ^ tables[0][(previous & 0xff) as usize];
            i += 1;
        }
        k += 1;
    }
    tables
}

/// Feeds `bytes` into a CRC-64/XZ register `crc` (before the final
/// inversion): `!update(!0, bytes)` is [`checksum64`](crate::checksum64)
/// of `bytes`, and feeding bytes in pieces gives the same result as
/// feeding them at once.
pub(crate) fn update(mut crc: u64, bytes: &[u8]) -> u64 {
    let mut chunks = bytes.chunks_exact(8);
    for chunk in &mut chunks {
        let mut word = [0u8; 8];
        word.copy_from_slice(chunk);
        let x = crc ^ u64::from_le_bytes(word);
        crc = TABLES[7][(x & 0xff) as usize]
            ^ TABLES[6][((x >> 8) & 0xff) as usize]
            ^ TABLES[5][((x >> 16) & 0xff) as usize]
            ^ TABLES[4][((x >> 24) & 0xff) as usize]
            ^ TABLES[3][((x >> 32) & 0xff) as usize]
            ^ TABLES[2][((x >> 40) & 0xff) as usize]
            ^ TABLES[1][((x >> 48) & 0xff) as usize]
            ^ TABLES[0][(x >> 56) as usize];
    }
    for byte in chunks.remainder() {
        crc = TABLES[0][((crc ^ u64::from(*byte)) & 0xff) as usize] ^ (crc >> 8);
    }
    crc
}

/// CRC-64/XZ of `bytes` (equal to [`checksum64`](crate::checksum64)).
#[cfg(test)]
fn crc64_xz(bytes: &[u8]) -> u64 {
    !update(!0, bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The definition, one bit at a time: the reference the tables are
    /// checked against.
    fn bitwise(bytes: &[u8]) -> u64 {
        let mut crc = !0u64;
        for byte in bytes {
            crc ^= u64::from(*byte);
            for _ in 0..8 {
                crc = if crc & 1 == 1 {
                    (crc >> 1) ^ POLYNOMIAL_REFLECTED
                } else {
                    crc >> 1
                };
            }
        }
        !crc
    }

    #[test]
    fn matches_the_bitwise_definition_at_every_length_and_alignment() {
        assert_eq!(crc64_xz(b"123456789"), 0x995D_C9BB_DF19_39FA);
        assert_eq!(crc64_xz(b""), 0);
        // Deterministic pseudo-random bytes (xorshift).
        let mut state = 0x9E37_79B9_7F4A_7C15u64;
        let bytes: Vec<u8> = (0..4096)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                state as u8
            })
            .collect();
        for start in 0..9 {
            for len in (0..300).chain([1000, 4000 - start]) {
                let slice = &bytes[start..start + len];
                assert_eq!(crc64_xz(slice), bitwise(slice), "start {start} len {len}");
                // Fed in two pieces, split anywhere: the same.
                let split = len / 3;
                let mut piecewise = crate::Checksum64::new();
                piecewise.update(&slice[..split]);
                piecewise.update(&slice[split..]);
                assert_eq!(piecewise.finish(), bitwise(slice));
            }
        }
    }
}
