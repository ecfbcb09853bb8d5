"""H.264 bitstream helpers (pure): NAL units, SPS fields, avcC, codec strings.

Packets from the RTSP demuxer are Annex-B (start-code prefixed) access units; MP4 wants
length-prefixed NAL units and the parameter sets in an ``avcC`` box.
"""

from __future__ import annotations

from dataclasses import dataclass

NAL_SLICE = 1
NAL_IDR = 5
NAL_SEI = 6
NAL_SPS = 7
NAL_PPS = 8
NAL_AUD = 9


def split_nals(data: bytes) -> list[bytes]:
    """NAL units of an Annex-B buffer, without start codes (AVCC input is detected and split too)."""
    if len(data) >= 4 and not data.startswith(b"\x00\x00\x01") and not data.startswith(b"\x00\x00\x00\x01"):
        return _split_avcc(data)
    out: list[bytes] = []
    i = data.find(b"\x00\x00\x01")
    while i >= 0:
        j = data.find(b"\x00\x00\x01", i + 3)
        end = len(data) if j < 0 else j
        nal = data[i + 3 : end]
        if j >= 0:
            nal = nal.rstrip(b"\x00")
        if nal:
            out.append(nal)
        i = j
    return out


def _split_avcc(data: bytes) -> list[bytes]:
    out: list[bytes] = []
    i = 0
    while i + 4 <= len(data):
        n = int.from_bytes(data[i : i + 4], "big")
        if n == 0 or i + 4 + n > len(data):
            return []
        out.append(data[i + 4 : i + 4 + n])
        i += 4 + n
    return out


def nal_type(nal: bytes) -> int:
    return nal[0] & 0x1F if nal else 0


def to_avcc(nals: list[bytes], *, drop_params: bool = True) -> bytes:
    """Length-prefixed sample data; SPS, PPS and AUD dropped (they live in avcC)."""
    parts = []
    for n in nals:
        if drop_params and nal_type(n) in (NAL_SPS, NAL_PPS, NAL_AUD):
            continue
        parts.append(len(n).to_bytes(4, "big") + n)
    return b"".join(parts)


def to_annexb(nals: list[bytes]) -> bytes:
    return b"".join(b"\x00\x00\x00\x01" + n for n in nals)


def _unescape(rbsp: bytes) -> bytes:
    """Remove emulation-prevention bytes (00 00 03 -> 00 00)."""
    out = bytearray()
    zeros = 0
    for b in rbsp:
        if zeros >= 2 and b == 3:
            zeros = 0
            continue
        out.append(b)
        zeros = zeros + 1 if b == 0 else 0
    return bytes(out)


class _Bits:
    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    def u(self, n: int) -> int:
        v = 0
        for _ in range(n):
            byte = self.data[self.pos >> 3] if (self.pos >> 3) < len(self.data) else 0
            v = (v << 1) | ((byte >> (7 - (self.pos & 7))) & 1)
            self.pos += 1
        return v

    def ue(self) -> int:
        zeros = 0
        while self.u(1) == 0:
            zeros += 1
            if zeros > 31:
                raise ValueError("SPS: bad exp-Golomb code")
        return (1 << zeros) - 1 + self.u(zeros)

    def se(self) -> int:
        k = self.ue()
        return (k + 1) // 2 if k % 2 else -(k // 2)


@dataclass(frozen=True)
class SpsInfo:
    profile: int
    compat: int
    level: int
    width: int
    height: int

    @property
    def codec(self) -> str:
        """The RFC 6381 codec string, e.g. ``avc1.64001F``."""
        return f"avc1.{self.profile:02X}{self.compat:02X}{self.level:02X}"


def parse_sps(nal: bytes) -> SpsInfo:
    """Profile, level and picture size from an SPS NAL unit (with its 1-byte header)."""
    if nal_type(nal) != NAL_SPS or len(nal) < 4:
        raise ValueError("not an SPS NAL unit")
    b = _Bits(_unescape(nal[1:]))
    profile = b.u(8)
    compat = b.u(8)
    level = b.u(8)
    b.ue()  # seq_parameter_set_id
    chroma = 1
    if profile in (100, 110, 122, 244, 44, 83, 86, 118, 128, 138, 139, 134, 135):
        chroma = b.ue()
        if chroma == 3:
            b.u(1)
        b.ue()
        b.ue()
        b.u(1)
        if b.u(1):  # seq_scaling_matrix_present
            for i in range(8 if chroma != 3 else 12):
                if b.u(1):
                    size = 16 if i < 6 else 64
                    last = nxt = 8
                    for _ in range(size):
                        if nxt != 0:
                            nxt = (last + b.se() + 256) % 256
                        last = nxt if nxt != 0 else last
    b.ue()  # log2_max_frame_num_minus4
    poc_type = b.ue()
    if poc_type == 0:
        b.ue()
    elif poc_type == 1:
        b.u(1)
        b.se()
        b.se()
        for _ in range(b.ue()):
            b.se()
    b.ue()  # max_num_ref_frames
    b.u(1)
    mbs_w = b.ue() + 1
    map_h = b.ue() + 1
    frame_mbs_only = b.u(1)
    if not frame_mbs_only:
        b.u(1)
    b.u(1)  # direct_8x8_inference
    crop = (0, 0, 0, 0)
    if b.u(1):
        crop = (b.ue(), b.ue(), b.ue(), b.ue())
    sub_w, sub_h = {0: (1, 1), 1: (2, 2), 2: (2, 1), 3: (1, 1)}.get(chroma, (2, 2))
    crop_x = sub_w if chroma else 1
    crop_y = (sub_h if chroma else 1) * (2 - frame_mbs_only)
    width = mbs_w * 16 - crop_x * (crop[0] + crop[1])
    height = (2 - frame_mbs_only) * map_h * 16 - crop_y * (crop[2] + crop[3])
    return SpsInfo(profile, compat, level, width, height)


def avcc_record(sps: bytes, pps: bytes) -> bytes:
    """The AVCDecoderConfigurationRecord for one SPS and one PPS."""
    return (
        bytes([1, sps[1], sps[2], sps[3], 0xFF, 0xE1])
        + len(sps).to_bytes(2, "big") + sps
        + b"\x01" + len(pps).to_bytes(2, "big") + pps
    )


def params_of(nals: list[bytes]) -> tuple[bytes | None, bytes | None]:
    """The SPS and PPS in force after these NAL units (the last of each)."""
    sps = next((n for n in reversed(nals) if nal_type(n) == NAL_SPS), None)
    pps = next((n for n in reversed(nals) if nal_type(n) == NAL_PPS), None)
    return sps, pps


def params_from_extradata(extra: bytes | None) -> tuple[bytes | None, bytes | None]:
    """SPS and PPS from a stream's extradata (Annex-B or avcC)."""
    if not extra:
        return None, None
    if extra[0] == 1 and len(extra) > 8:
        try:
            n_sps = extra[5] & 0x1F
            i = 6
            sps = None
            for _ in range(n_sps):
                ln = int.from_bytes(extra[i : i + 2], "big")
                sps = sps or extra[i + 2 : i + 2 + ln]
                i += 2 + ln
            n_pps = extra[i]
            i += 1
            pps = None
            for _ in range(n_pps):
                ln = int.from_bytes(extra[i : i + 2], "big")
                pps = pps or extra[i + 2 : i + 2 + ln]
                i += 2 + ln
            return sps, pps
        except IndexError:
            return None, None
    return params_of(split_nals(extra))


def is_keyframe(nals: list[bytes]) -> bool:
    return any(nal_type(n) == NAL_IDR for n in nals)
