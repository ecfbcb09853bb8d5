"""MP4 writing without re-encoding (pure): progressive MP4 for incident clips (moov first,
i.e. faststart) and fragmented MP4 for the live relay (Media Source Extensions).

Input is H.264 access units as NAL unit lists with times in seconds; SPS and PPS go into
the ``avcC`` box, samples are length-prefixed.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from dataclasses import dataclass

from monitor.video.h264 import avcc_record, parse_sps, to_avcc

TIMESCALE = 90_000
MOVIE_TIMESCALE = 1000
_MATRIX = struct.pack(">9I", 0x00010000, 0, 0, 0, 0x00010000, 0, 0, 0, 0x40000000)
SAMPLE_SYNC = 0x02000000  # sample_depends_on = 2 (an I picture)
SAMPLE_NON_SYNC = 0x01010000  # depends on others, non-sync


def box(kind: bytes, *payload: bytes) -> bytes:
    body = b"".join(payload)
    return struct.pack(">I", 8 + len(body)) + kind + body


def full_box(kind: bytes, version: int, flags: int, *payload: bytes) -> bytes:
    return box(kind, struct.pack(">I", (version << 24) | flags), *payload)


@dataclass(frozen=True)
class Sample:
    """One access unit ready for MP4: length-prefixed data, duration in 90 kHz ticks."""

    data: bytes
    duration: int
    key: bool


def _avc1(sps: bytes, pps: bytes) -> bytes:
    info = parse_sps(sps)
    entry = (
        b"\x00" * 6 + struct.pack(">H", 1)  # reserved, data_reference_index
        + b"\x00" * 16
        + struct.pack(">HH", info.width, info.height)
        + struct.pack(">II", 0x00480000, 0x00480000)
        + struct.pack(">I", 0)
        + struct.pack(">H", 1)
        + b"\x00" * 32
        + struct.pack(">Hh", 0x0018, -1)
        + box(b"avcC", avcc_record(sps, pps))
    )
    return box(b"avc1", entry)


def _trak(sps: bytes, pps: bytes, duration: int, stbl_tables: bytes) -> bytes:
    info = parse_sps(sps)
    movie_dur = duration * MOVIE_TIMESCALE // TIMESCALE
    tkhd = full_box(
        b"tkhd", 0, 3,
        struct.pack(">IIIII", 0, 0, 1, 0, movie_dur),
        b"\x00" * 8, struct.pack(">hhhH", 0, 0, 0, 0), _MATRIX,
        struct.pack(">II", info.width << 16, info.height << 16),
    )
    mdhd = full_box(b"mdhd", 0, 0, struct.pack(">IIIIHH", 0, 0, TIMESCALE, duration, 0x55C4, 0))
    hdlr = full_box(b"hdlr", 0, 0, struct.pack(">I", 0), b"vide", b"\x00" * 12, b"VideoHandler\x00")
    vmhd = full_box(b"vmhd", 0, 1, b"\x00" * 8)
    dinf = box(b"dinf", full_box(b"dref", 0, 0, struct.pack(">I", 1), full_box(b"url ", 0, 1)))
    stsd = full_box(b"stsd", 0, 0, struct.pack(">I", 1), _avc1(sps, pps))
    stbl = box(b"stbl", stsd, stbl_tables)
    return box(b"trak", tkhd, box(b"mdia", mdhd, hdlr, box(b"minf", vmhd, dinf, stbl)))


def _mvhd(duration: int) -> bytes:
    return full_box(
        b"mvhd", 0, 0,
        struct.pack(">IIII", 0, 0, MOVIE_TIMESCALE, duration * MOVIE_TIMESCALE // TIMESCALE),
        struct.pack(">IH", 0x00010000, 0x0100), b"\x00" * 10, _MATRIX, b"\x00" * 24, struct.pack(">I", 2),
    )


def samples_from(aus: Sequence[tuple[float, list[bytes]]], last_duration_s: float) -> list[Sample]:
    """Samples from (time in seconds, NAL units) in decode order; each lasts until the next."""
    out: list[Sample] = []
    for i, (t, nals) in enumerate(aus):
        nxt = aus[i + 1][0] if i + 1 < len(aus) else t + last_duration_s
        dur = max(1, round((nxt - t) * TIMESCALE))
        key = any((n[0] & 0x1F) == 5 for n in nals if n)
        out.append(Sample(to_avcc(nals), dur, key))
    return out


def progressive_mp4(sps: bytes, pps: bytes, samples: Sequence[Sample]) -> bytes:
    """A complete MP4 with the moov before the mdat (plays while downloading)."""
    if not samples:
        raise ValueError("progressive_mp4: no samples")
    duration = sum(s.duration for s in samples)
    ftyp = box(b"ftyp", b"isom", struct.pack(">I", 0x200), b"isom", b"iso2", b"avc1", b"mp41")
    # stts: run-length durations
    runs: list[tuple[int, int]] = []
    for s in samples:
        if runs and runs[-1][1] == s.duration:
            runs[-1] = (runs[-1][0] + 1, s.duration)
        else:
            runs.append((1, s.duration))
    stts = full_box(b"stts", 0, 0, struct.pack(">I", len(runs)), b"".join(struct.pack(">II", n, d) for n, d in runs))
    keys = [i + 1 for i, s in enumerate(samples) if s.key]
    stss = full_box(b"stss", 0, 0, struct.pack(">I", len(keys)), b"".join(struct.pack(">I", k) for k in keys))
    stsc = full_box(b"stsc", 0, 0, struct.pack(">IIII", 1, 1, len(samples), 1))
    stsz = full_box(b"stsz", 0, 0, struct.pack(">II", 0, len(samples)), b"".join(struct.pack(">I", len(s.data)) for s in samples))
    mdat_payload = sum(len(s.data) for s in samples)
    large = mdat_payload + 16 > 0xFFFFFFFF

    def moov_with(offset: int) -> bytes:
        co = (full_box(b"co64", 0, 0, struct.pack(">IQ", 1, offset)) if large
              else full_box(b"stco", 0, 0, struct.pack(">II", 1, offset)))
        return box(b"moov", _mvhd(duration), _trak(sps, pps, duration, stts + stss + stsc + stsz + co))

    probe = moov_with(0)
    mdat_header = struct.pack(">I", 1) + b"mdat" + struct.pack(">Q", mdat_payload + 16) if large else struct.pack(">I", mdat_payload + 8) + b"mdat"
    offset = len(ftyp) + len(probe) + len(mdat_header)
    moov = moov_with(offset)
    assert len(moov) == len(probe)
    return b"".join([ftyp, moov, mdat_header, *(s.data for s in samples)])


def init_segment(sps: bytes, pps: bytes) -> bytes:
    """ftyp + moov of a fragmented MP4 (one video track, 90 kHz)."""
    ftyp = box(b"ftyp", b"isom", struct.pack(">I", 0x200), b"isom", b"iso5", b"iso6", b"avc1", b"mp41")
    empty = (
        full_box(b"stts", 0, 0, struct.pack(">I", 0))
        + full_box(b"stsc", 0, 0, struct.pack(">I", 0))
        + full_box(b"stsz", 0, 0, struct.pack(">II", 0, 0))
        + full_box(b"stco", 0, 0, struct.pack(">I", 0))
    )
    mvex = box(b"mvex", full_box(b"trex", 0, 0, struct.pack(">IIIII", 1, 1, 0, 0, 0)))
    return ftyp + box(b"moov", _mvhd(0), _trak(sps, pps, 0, empty), mvex)


def media_segment(seq: int, base_time: int, samples: Sequence[Sample]) -> bytes:
    """moof + mdat for samples starting at ``base_time`` (90 kHz ticks)."""
    mfhd = full_box(b"mfhd", 0, 0, struct.pack(">I", seq))
    tfhd = full_box(b"tfhd", 0, 0x020000, struct.pack(">I", 1))  # default-base-is-moof
    tfdt = full_box(b"tfdt", 1, 0, struct.pack(">Q", base_time))
    flags = 0x000001 | 0x000100 | 0x000200 | 0x000400
    entries = b"".join(
        struct.pack(">III", s.duration, len(s.data), SAMPLE_SYNC if s.key else SAMPLE_NON_SYNC) for s in samples
    )
    # trun: header(12) + count(4) + data_offset(4) + entries
    trun_size = 12 + 4 + 4 + len(entries)
    traf_size = 8 + len(tfhd) + len(tfdt) + trun_size
    moof_size = 8 + len(mfhd) + traf_size
    data_offset = moof_size + 8
    trun = full_box(b"trun", 0, flags, struct.pack(">Ii", len(samples), data_offset), entries)
    moof = box(b"moof", mfhd, box(b"traf", tfhd, tfdt, trun))
    assert len(moof) == moof_size
    return moof + box(b"mdat", *(s.data for s in samples))
