//! The shared log's on-disk format: segment headers and the records every
//! group's writes become, each tagged with its group.
//!
//! A segment starts with a 16-byte header
//! `[magic "CNCDMWAL": 8][format version = 1: u32][checksum: u32]`
//! (checksum = `crc32c(magic ‖ version) ^ CHECKSUM_SALT`), then records
//! follow back to back, framed exactly as the single-group log frames its
//! own (`[len: u32][len_check: u32][checksum: u32][payload]`, see
//! [`crate::wal`]): the same torn-tail and corruption rules
//! apply. The magic differs from the single-group log's, so neither log is
//! ever read as the other.
//!
//! The payload is a codec-encoded [`GroupRecord`]. One group's
//! [`Action::Persist`](concord::Action::Persist) becomes up to three records
//! in this order: its hard state, its truncation, its entries. The hard
//! state comes first, so that no prefix of the log holds entries of a term
//! the hard state does not know yet.
//!
//! ## The durable marker
//!
//! Next to the segments, a 32-byte file `durable`
//! `[magic "CNCDMMRK": 8][version = 1: u32][segment: u64][offset: u64][checksum: u32]`
//! (checksum = `crc32c` of the first 28 bytes `^ CHECKSUM_SALT`) says
//! "every byte of that segment before the offset, and every earlier
//! segment, was synced". The log overwrites it in place after each sync,
//! without syncing it (see `shared_log.rs`): it never claims more than is
//! durable, so recovery can tell fsynced data that was lost (refused) from
//! a torn tail that never was durable (cut).

use serde::{Deserialize, Serialize};

use crate::storage::StorageError;
use crate::wal::{self, Damage, MarkerFrame, SegmentFormat};
use concord::multi::GroupId;
use concord::{Entry, HardState, Index, LogPosition};

/// First bytes of every segment of a shared log.
pub const SEGMENT_MAGIC: [u8; 8] = *b"CNCDMWAL";

/// Version of the shared log's format written and read by this build.
pub const FORMAT_VERSION: u32 = 1;

/// Bytes of a segment header: magic, version, checksum.
pub const SEGMENT_HEADER_BYTES: usize = 16;

/// First bytes of the durable marker.
pub const MARKER_MAGIC: [u8; 8] = *b"CNCDMMRK";

/// Version of the durable marker's layout.
pub const MARKER_VERSION: u32 = 1;

/// Bytes of the durable marker.
pub const MARKER_BYTES: usize = MarkerFrame::bytes(2);

/// "Every byte of segment `segment` before `offset_bytes`, and every
/// earlier segment, is durable" (see the [module documentation](self)).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DurableMarker {
    /// The segment the offset is in.
    pub segment: u64,
    /// Bytes of that segment known durable.
    pub offset_bytes: u64,
}

impl DurableMarker {
    /// How the marker is framed: [`MARKER_MAGIC`], [`MARKER_VERSION`].
    const FRAME: MarkerFrame = MarkerFrame {
        magic: MARKER_MAGIC,
        version: MARKER_VERSION,
    };

    /// The marker's fixed-size encoding.
    pub fn encode(&self) -> [u8; MARKER_BYTES] {
        Self::FRAME.encode(&[self.segment, self.offset_bytes])
    }

    /// Decodes a marker, saying what is wrong if the bytes are not one.
    pub fn decode(bytes: &[u8]) -> Result<DurableMarker, String> {
        let [segment, offset_bytes] = Self::FRAME.decode(bytes)?;
        if segment == 0 || offset_bytes < SEGMENT_HEADER_BYTES as u64 {
            return Err(format!(
                "segment {segment} offset {offset_bytes}: not a position after a segment header"
            ));
        }
        Ok(DurableMarker {
            segment,
            offset_bytes,
        })
    }
}

/// One record of the shared log: one change to one group's durable state.
pub type GroupRecord = GroupRecordOf<Vec<Entry>>;

/// [`GroupRecord`] borrowing its entries: encodes identically, without
/// copying them.
pub(crate) type GroupRecordRef<'a> = GroupRecordOf<&'a [Entry]>;

/// A record of the shared log holding its entries as `E`: owned
/// ([`GroupRecord`], decoded) or borrowed (written).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum GroupRecordOf<E> {
    /// The group's term and vote are now `hard_state`.
    HardState {
        /// The group.
        group: GroupId,
        /// Its new hard state.
        hard_state: HardState,
    },
    /// Drop every entry of the group after `after`.
    Truncate {
        /// The group.
        group: GroupId,
        /// Last index kept.
        after: Index,
    },
    /// Append entries to the group's log (an overlap replaces its suffix).
    Append {
        /// The group.
        group: GroupId,
        /// The entries, contiguous.
        entries: E,
    },
    /// The group's snapshot at `position` is durable (its file was stored
    /// before this record was written): its log continues after it. With
    /// `discard_log` every later entry is dropped too.
    Snapshot {
        /// The group.
        group: GroupId,
        /// The snapshot's last entry.
        position: LogPosition,
        /// The log did not hold the snapshot's last entry: drop it all.
        discard_log: bool,
    },
    /// The group was removed from this node: its earlier records are void.
    Removed {
        /// The group.
        group: GroupId,
    },
}

impl<E> GroupRecordOf<E> {
    /// The group the record belongs to.
    pub fn group(&self) -> GroupId {
        match self {
            GroupRecordOf::HardState { group, .. }
            | GroupRecordOf::Truncate { group, .. }
            | GroupRecordOf::Append { group, .. }
            | GroupRecordOf::Snapshot { group, .. }
            | GroupRecordOf::Removed { group } => *group,
        }
    }
}

/// Appends `record`, framed, to `out`.
pub(crate) fn encode(record: &GroupRecordRef<'_>, out: &mut Vec<u8>) -> Result<(), StorageError> {
    wal::encode_record_ref(record, out)
}

/// Appends `record`, framed, to `out` (tests and tools).
pub fn encode_record(record: &GroupRecord, out: &mut Vec<u8>) -> Result<(), StorageError> {
    wal::encode_record_ref(record, out)
}

/// Bytes of a record's frame before its payload: length, length check,
/// checksum (the single-group log's framing, see [`crate::wal`]).
pub const RECORD_HEADER_BYTES: usize = wal::RECORD_HEADER_BYTES;

/// Appends `payload`, framed as a record of the shared log whatever its
/// bytes, to `out`: its checksums hold, so recovery decodes it. For tools
/// and fuzzing, which need records that are framed right but hold
/// anything (the log itself frames only the records it encodes); refuses
/// an empty payload or one over the record size limit, as recovery would.
pub fn frame_payload(payload: &[u8], out: &mut Vec<u8>) -> Result<(), StorageError> {
    wal::frame_payload(payload, out)
}

/// The payload of the record framed at byte `offset` of a segment's
/// bytes, if a whole record whose checksums hold starts there (what
/// recovery reads there; the payload may still not decode).
pub fn record_payload_at(bytes: &[u8], offset: usize) -> Option<&[u8]> {
    if offset > bytes.len() {
        return None;
    }
    wal::parse_record_at(bytes, offset).ok()
}

/// The header every segment of a shared log starts with.
pub fn segment_header() -> [u8; SEGMENT_HEADER_BYTES] {
    SEGMENT_FORMAT.header()
}

/// The shared log's segments: [`SEGMENT_MAGIC`], [`FORMAT_VERSION`].
const SEGMENT_FORMAT: SegmentFormat = SegmentFormat {
    magic: SEGMENT_MAGIC,
    version: FORMAT_VERSION,
};

/// Checks a segment's header: `Ok(None)` if valid, `Ok(Some(damage))` if
/// damaged the way a torn or zeroed write leaves it (a prefix of the
/// header, or zeros), an error if the file is in another format.
pub(crate) fn check_segment_header(
    bytes: &[u8],
    file: &str,
) -> Result<Option<Damage>, StorageError> {
    SEGMENT_FORMAT.check_header(bytes, file, || {
        format!(
            "it does not start with the shared-log segment magic {:?}: it is not a segment of \
             a multi-group write-ahead log (a single-group log starts with \"CNCDWAL\\n\")",
            String::from_utf8_lossy(&SEGMENT_MAGIC)
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use concord::EntryPayload;

    #[test]
    fn borrowed_and_owned_records_encode_identically() {
        let entries = vec![Entry {
            term: 2,
            index: 7,
            payload: EntryPayload::Command(bytes::Bytes::from_static(b"x")),
        }];
        let mut owned = Vec::new();
        encode_record(
            &GroupRecord::Append {
                group: 9,
                entries: entries.clone(),
            },
            &mut owned,
        )
        .unwrap();
        let mut borrowed = Vec::new();
        encode(
            &GroupRecordRef::Append {
                group: 9,
                entries: &entries,
            },
            &mut borrowed,
        )
        .unwrap();
        assert_eq!(owned, borrowed);
    }

    #[test]
    fn raw_framing_is_the_logs_own() {
        let record = GroupRecord::Truncate {
            group: 3,
            after: 11,
        };
        let mut encoded = Vec::new();
        encode_record(&record, &mut encoded).unwrap();
        let payload = record_payload_at(&encoded, 0).expect("a whole record");
        assert_eq!(payload, &encoded[RECORD_HEADER_BYTES..]);
        let mut framed = Vec::new();
        frame_payload(payload, &mut framed).unwrap();
        assert_eq!(framed, encoded);
        // Any bytes frame; what does not frame is named.
        let mut garbage = Vec::new();
        frame_payload(b"\xffnot a record", &mut garbage).unwrap();
        assert_eq!(
            record_payload_at(&garbage, 0),
            Some(&b"\xffnot a record"[..])
        );
        assert_eq!(record_payload_at(&garbage, 1), None);
        assert_eq!(record_payload_at(&garbage, garbage.len() + 1), None);
        assert!(frame_payload(b"", &mut garbage).is_err());
    }

    #[test]
    fn markers_round_trip_and_damage_is_named() {
        let marker = DurableMarker {
            segment: 7,
            offset_bytes: 4096,
        };
        let bytes = marker.encode();
        assert_eq!(DurableMarker::decode(&bytes), Ok(marker));
        let mut flipped = bytes;
        flipped[21] ^= 1;
        assert_eq!(
            DurableMarker::decode(&flipped),
            Err("checksum mismatch".to_string())
        );
        assert!(DurableMarker::decode(&bytes[..31]).is_err());
        assert!(DurableMarker::decode(&[0u8; MARKER_BYTES]).is_err());
        let inside_header = DurableMarker {
            segment: 1,
            offset_bytes: 3,
        };
        assert!(DurableMarker::decode(&inside_header.encode())
            .unwrap_err()
            .contains("not a position after a segment header"));
    }

    #[test]
    fn header_prefixes_and_zeros_are_torn_other_magic_is_refused() {
        let header = segment_header();
        assert!(check_segment_header(&header, "f").unwrap().is_none());
        assert!(check_segment_header(&header[..5], "f").unwrap().is_some());
        assert!(check_segment_header(&[0u8; 16], "f").unwrap().is_some());
        let single = crate::wal::segment_header();
        let error = check_segment_header(&single, "f").unwrap_err();
        assert!(error.to_string().contains("not a segment of a multi-group"));
    }
}
