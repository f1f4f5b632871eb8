"""PNG images without Pillow: decode any non-interlaced PNG to 8-bit gray, encode 8-bit gray.

``python -m nn predict`` classifies 28x28 digit images; this module lets it read them with the
standard library's ``zlib`` and NumPy only.

Decoding follows the PNG specification (W3C PNG, 2nd edition): every chunk's CRC is checked,
the IDAT chunks are joined and inflated, and each row is unfiltered (None, Sub, Up, Average,
Paeth). Every legal colour type and bit depth is read: gray (type 0; 1, 2, 4, 8, 16 bits),
RGB (2; 8, 16), palette (3; 1, 2, 4, 8), gray+alpha (4; 8, 16) and RGBA (6; 8, 16). Each pixel
becomes the gray level nearest to

.. math:: Y = 255 \\cdot \\frac{A}{A_{max}} \\cdot \\frac{0.299 R + 0.587 G + 0.114 B}{S_{max}}

with ITU-R BT.601 luma weights (``R = G = B`` for gray images), sample maximum
``S_max = 2^depth - 1`` (255 for palette entries) and alpha ``A`` (``A = A_max`` where the image
has no alpha). Transparency is composited over a ``background`` gray level, **black** by
default (the term ``background * (1 - A / A_max)`` is then 0): MNIST digits are white on black,
so a light digit drawn on a transparent background keeps a black background. For dark strokes
on a transparent background, pass ``background=255``. A ``tRNS`` chunk is honoured
(alpha per palette entry; one fully transparent gray level or RGB colour).

Not supported, each a :class:`~nn.errors.DataError` naming the file and the reason: Adam7
interlacing, and anything that is not a valid PNG (bad signature, CRC, truncation, zlib data of
the wrong size, unknown critical chunks). Images above :data:`MAX_PIXELS` or wider or taller
than :data:`MAX_SIDE` are refused before decompression, so a small file cannot inflate to
gigabytes; decoding takes memory and time in proportion to the pixels (a few bytes each), so a
file of a few KB that inflates to a large image costs what that image costs, never more.
"""

from __future__ import annotations

import os
import struct
import zlib
from pathlib import Path

import numpy as np

from nn.atomic import write_bytes_atomic
from nn.errors import DataError, DTypeError, ShapeError

__all__ = ["MAX_PIXELS", "decode_png", "encode_png", "read_png", "write_png"]

SIGNATURE = b"\x89PNG\r\n\x1a\n"
MAX_PIXELS = 1 << 26
"""Largest width x height accepted (64 Mi pixels): a guard against decompression bombs."""
MAX_SIDE = 1 << 15
"""Largest width or height accepted: unfiltering takes one vector step per row plus column."""
_BLOCK = 1 << 16  # pixels converted to gray at a time: temporaries stay a few MB

# colour type -> (name, samples per pixel, legal bit depths)
_COLOUR_TYPES = {
    0: ("gray", 1, (1, 2, 4, 8, 16)),
    2: ("RGB", 3, (8, 16)),
    3: ("palette", 1, (1, 2, 4, 8)),
    4: ("gray+alpha", 2, (8, 16)),
    6: ("RGBA", 4, (8, 16)),
}


def read_png(path: str | os.PathLike[str], *, background: int = 0) -> np.ndarray:
    """The PNG file at ``path`` as a uint8 gray image (H, W); see :func:`decode_png`.

    A missing file raises :class:`FileNotFoundError`; a malformed one :class:`DataError`.

    >>> import tempfile, pathlib
    >>> p = pathlib.Path(tempfile.mkdtemp()) / "tiny.png"
    >>> write_png(p, np.array([[0, 128, 255]], dtype=np.uint8))
    >>> read_png(p)
    array([[  0, 128, 255]], dtype=uint8)
    """
    return decode_png(Path(path).read_bytes(), name=str(path), background=background)


def write_png(path: str | os.PathLike[str], image: np.ndarray) -> None:
    """Write a uint8 gray image (H, W) to ``path`` as an 8-bit gray PNG, atomically."""
    write_bytes_atomic(path, encode_png(image))


def encode_png(image: np.ndarray) -> bytes:
    """The bytes of an 8-bit gray, non-interlaced PNG of the uint8 image (H, W).

    Every row uses filter 0 (None): simple, and MNIST-sized images are tiny anyway.

    >>> decode_png(encode_png(np.eye(2, dtype=np.uint8) * 255))
    array([[255,   0],
           [  0, 255]], dtype=uint8)
    """
    if not isinstance(image, np.ndarray) or image.dtype != np.uint8:
        received = image.dtype if isinstance(image, np.ndarray) else type(image).__name__
        raise DTypeError(f"encode_png: image must be a uint8 array, received {received}")
    if image.ndim != 2 or image.size == 0:
        raise ShapeError(
            f"encode_png: image must have shape (H, W) with H, W >= 1, received {image.shape}"
        )
    height, width = image.shape
    rows = np.zeros((height, width + 1), dtype=np.uint8)  # (H, 1 + W): filter byte 0, then pixels
    rows[:, 1:] = image
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (
        SIGNATURE
        + _chunk(b"IHDR", header)
        + _chunk(b"IDAT", zlib.compress(rows.tobytes(), 9))
        + _chunk(b"IEND", b"")
    )


def _chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def decode_png(data: bytes, name: str = "PNG data", *, background: int = 0) -> np.ndarray:
    """Decode the bytes of a PNG file to a uint8 gray image (H, W); ``name`` is used in errors.

    >>> gray_alpha = np.array([[[200, 255], [200, 128], [200, 0]]], dtype=np.uint8)  # (1, 3, 2)
    >>> body = zlib.compress(b"\\x00" + gray_alpha.tobytes())
    >>> png = (SIGNATURE + _chunk(b"IHDR", struct.pack(">IIBBBBB", 3, 1, 8, 4, 0, 0, 0))
    ...        + _chunk(b"IDAT", body) + _chunk(b"IEND", b""))
    >>> decode_png(png)  # composited over black: 200 * 128 / 255 = 100.4
    array([[200, 100,   0]], dtype=uint8)
    """
    if data[:8] != SIGNATURE:
        raise DataError(
            f"{name}: not a PNG file (first bytes {data[:8]!r}, expected {SIGNATURE!r})"
        )
    header: tuple[int, ...] | None = None
    palette: np.ndarray | None = None
    trns = b""
    idat: list[bytes] = []
    idat_ended = False
    for kind, body in _chunks(data, name):
        if header is None and kind != b"IHDR":
            raise DataError(f"{name}: the first chunk must be IHDR, found {kind.decode('ascii')}")
        if kind == b"IHDR":
            if header is not None:
                raise DataError(f"{name}: more than one IHDR chunk")
            header = _parse_header(body, name)
        elif kind == b"PLTE":
            if len(body) % 3 or not 3 <= len(body) <= 768:
                raise DataError(
                    f"{name}: PLTE must hold 1 to 256 RGB entries of 3 bytes, has {len(body)} bytes"
                )
            palette = np.frombuffer(body, dtype=np.uint8).reshape(-1, 3)  # (P, 3)
        elif kind == b"tRNS":
            trns = body
        elif kind == b"IDAT":
            if idat_ended:
                raise DataError(f"{name}: IDAT chunks must be consecutive")
            idat.append(body)
        elif kind != b"IEND" and not kind[0] & 0x20:  # bit 5 of the first letter clear: critical
            raise DataError(f"{name}: unknown critical chunk {kind.decode('ascii')}")
        idat_ended = bool(idat) and kind != b"IDAT"
    assert header is not None  # _chunks yields at least IEND, which the check above rejects first
    width, height, depth, colour = header
    if not idat:
        raise DataError(f"{name}: no IDAT chunk (the file has no image data)")
    if not 0 <= background <= 255:
        raise DataError(f"{name}: background must be a gray level 0..255, received {background}")
    channels = _COLOUR_TYPES[colour][1]
    stride = (width * channels * depth + 7) // 8  # bytes per row, without the filter byte
    raw = _inflate(b"".join(idat), height * (stride + 1), name)
    rows = _unfilter(raw, height, stride, max(1, channels * depth // 8), name)  # (H, n, bpp)
    gray = np.empty((height, width), dtype=np.uint8)
    step = max(1, _BLOCK // width)  # rows at a time: int64 samples and floats of a block only
    for y in range(0, height, step):
        samples = _samples(rows[y : y + step].reshape(-1, stride), width, channels, depth)
        gray[y : y + step] = _to_gray(samples, colour, depth, palette, trns, name, background)
    return gray


def _chunks(data: bytes, name: str) -> list[tuple[bytes, bytes]]:
    """(type, body) of each chunk up to and including IEND, CRCs checked."""
    chunks: list[tuple[bytes, bytes]] = []
    pos = len(SIGNATURE)
    while not chunks or chunks[-1][0] != b"IEND":
        if pos + 8 > len(data):
            raise DataError(f"{name}: truncated PNG: the file ends at byte {len(data)} before IEND")
        length, kind = struct.unpack(">I4s", data[pos : pos + 8])
        if not kind.isalpha() or length > 2**31 - 1:
            raise DataError(f"{name}: corrupt chunk header at byte {pos}: {data[pos : pos + 8]!r}")
        end = pos + 12 + length
        if end > len(data):
            raise DataError(
                f"{name}: truncated PNG: chunk {kind.decode('ascii')} at byte {pos} needs "
                f"{12 + length} bytes, only {len(data) - pos} remain"
            )
        body = data[pos + 8 : end - 4]
        (stored,) = struct.unpack(">I", data[end - 4 : end])
        computed = zlib.crc32(kind + body)
        if stored != computed:
            raise DataError(
                f"{name}: CRC mismatch in chunk {kind.decode('ascii')} at byte {pos}: "
                f"stored {stored:08x}, computed {computed:08x}"
            )
        chunks.append((kind, body))
        pos = end
    return chunks


def _parse_header(body: bytes, name: str) -> tuple[int, int, int, int]:
    if len(body) != 13:
        raise DataError(f"{name}: IHDR must hold 13 bytes, has {len(body)}")
    width, height, depth, colour, compression, filtering, interlace = struct.unpack(
        ">IIBBBBB", body
    )
    if not (1 <= width < 2**31 and 1 <= height < 2**31):
        raise DataError(f"{name}: width and height must be at least 1, received {width}x{height}")
    if width * height > MAX_PIXELS:
        raise DataError(f"{name}: {width}x{height} pixels exceed the limit of {MAX_PIXELS}")
    if max(width, height) > MAX_SIDE:
        raise DataError(f"{name}: {width}x{height} pixels: each side must be at most {MAX_SIDE}")
    if colour not in _COLOUR_TYPES:
        raise DataError(f"{name}: unknown colour type {colour} (expected 0, 2, 3, 4 or 6)")
    kind, _, depths = _COLOUR_TYPES[colour]
    if depth not in depths:
        raise DataError(
            f"{name}: bit depth {depth} is not valid for colour type {colour} ({kind}); "
            f"allowed: {', '.join(map(str, depths))}"
        )
    if compression != 0 or filtering != 0:
        raise DataError(
            f"{name}: unknown compression method {compression} or filter method {filtering} "
            "(only 0 is defined)"
        )
    if interlace == 1:
        raise DataError(
            f"{name}: interlaced (Adam7) PNG is not supported; save it without interlacing"
        )
    if interlace != 0:
        raise DataError(f"{name}: unknown interlace method {interlace}")
    return width, height, depth, colour


def _inflate(compressed: bytes, expected: int, name: str) -> bytes:
    inflater = zlib.decompressobj()
    try:
        # max_length: never inflate more than the header promises.
        raw = inflater.decompress(compressed, expected)
        extra = inflater.decompress(inflater.unconsumed_tail, 1)
    except zlib.error as error:
        raise DataError(f"{name}: corrupt compressed image data ({error})") from None
    if len(raw) < expected or extra:
        raise DataError(
            f"{name}: the image data holds {'more than ' * bool(extra)}{len(raw)} bytes, "
            f"the header implies {expected}"
        )
    if not inflater.eof:
        raise DataError(f"{name}: truncated compressed image data (the zlib stream is incomplete)")
    return raw


def _unfilter(raw: bytes, height: int, stride: int, bpp: int, name: str) -> np.ndarray:
    """Undo each row's filter: bytes (H, n, bpp), n pixels of ``bpp`` bytes (bytes below 8 bits).

    A pixel depends on its left, upper and upper-left neighbours once decoded (Sub, Average,
    Paeth), so a row cannot be decoded in one vector step, and a loop over bytes in Python
    took a minute for a 22 KB file of 4096x4096 Paeth rows. But the pixels of one
    anti-diagonal (row + column constant) depend only on earlier diagonals: decoding diagonal
    by diagonal takes H + n - 1 vector steps. In the row-major layouts below, the cells of a
    diagonal are evenly spaced, so each step works on strided views, not gathered copies.
    """
    lines = np.frombuffer(raw, dtype=np.uint8).reshape(height, stride + 1)  # (H, 1 + stride)
    kinds = lines[:, 0]
    if (bad := np.flatnonzero(kinds > 4)).size:
        y = int(bad[0])
        raise DataError(f"{name}: row {y} has unknown filter type {kinds[y]} (expected 0 to 4)")
    n = stride // bpp  # exact: below 8 bits bpp is 1
    data = lines[:, 1:].reshape(height * n, bpp)  # (H * n, bpp): pixel (y, x) at y * n + x
    out = np.zeros((height + 1, n + 1, bpp), dtype=np.uint8)  # row 0, column 0: the zero border
    if kinds.max() <= 2:  # None, Sub, Up only: one vector step per row suffices
        for y, kind in enumerate(kinds.tolist()):
            line = data[y * n : (y + 1) * n]  # (n, bpp)
            line = np.cumsum(line, axis=0, dtype=np.uint8) if kind == 1 else line  # mod 256
            out[y + 1, 1:] = line + out[y, 1:] if kind == 2 else line
        return out[1:, 1:]
    cells = out.reshape(-1, bpp)  # a view: pixel (y, x) at (y + 1) * (n + 1) + x + 1
    for d in range(height + n - 1):
        y0, count = max(0, d - n + 1), min(height, d + 1) - max(0, d - n + 1)
        at = (y0 + 1) * (n + 1) + d - y0 + 1  # pixel (y0, d - y0); the next is n cells on
        end = at + (count - 1) * n + 1
        # (count, bpp) each: the left, upper and upper-left neighbours of the diagonal's pixels
        a, b, c = (cells[at + k : end + k : n].astype(np.int16) for k in (-1, -n - 1, -n - 2))
        # Paeth: the neighbour nearest to p = a + b - c; ties prefer a, then b
        pa, pb, pc = np.abs(b - c), np.abs(a - c), np.abs(a + b - 2 * c)  # |p - a|, |p - b|, ...
        paeth = np.where((pa <= pb) & (pa <= pc), a, np.where(pb <= pc, b, c))
        guess = np.choose(kinds[y0 : y0 + count, None], (0 * a, a, b, (a + b) >> 1, paeth))
        start = y0 * n + d - y0  # pixel (y0, d - y0) of data; the next is n - 1 on
        filtered = data[start : start + (count - 1) * (n - 1) + 1 : max(n - 1, 1)]
        cells[at:end:n] = (filtered + guess) & 255
    return out[1:, 1:]


def _samples(rows: np.ndarray, width: int, channels: int, depth: int) -> np.ndarray:
    """Unpack byte rows (H, stride) into integer samples (H, W, channels), big-endian."""
    height = rows.shape[0]
    if depth == 16:
        pairs = rows.reshape(height, width * channels, 2).astype(np.int64)  # (H, W * C, 2)
        values = pairs[..., 0] * 256 + pairs[..., 1]  # high byte, low byte
    elif depth == 8:
        values = rows
    else:  # 1, 2 or 4 bits, one channel, leftmost pixel in the high bits
        bits = np.unpackbits(rows, axis=1).reshape(height, -1, depth)
        values = (bits.astype(np.int64) << np.arange(depth - 1, -1, -1)).sum(axis=2)[:, :width]
    return np.asarray(values.reshape(height, width, channels), dtype=np.int64)


def _to_gray(
    samples: np.ndarray,
    colour: int,
    depth: int,
    palette: np.ndarray | None,
    trns: bytes,
    name: str,
    background: int = 0,
) -> np.ndarray:
    smax = 2**depth - 1
    opaque = np.ones(samples.shape[:2])  # (H, W) alpha as a fraction of full opacity
    if colour == 3:
        if palette is None:
            raise DataError(f"{name}: colour type 3 (palette) needs a PLTE chunk before IDAT")
        index = samples[..., 0]  # (H, W)
        if index.max() >= len(palette):
            raise DataError(
                f"{name}: palette index {index.max()} is out of range ({len(palette)} PLTE entries)"
            )
        if len(trns) > len(palette):
            raise DataError(f"{name}: tRNS has {len(trns)} entries, PLTE only {len(palette)}")
        alphas = np.full(len(palette), 255.0)
        alphas[: len(trns)] = np.frombuffer(trns, dtype=np.uint8)
        rgb, alpha, smax = palette[index].astype(np.int64), alphas[index] / 255, 255  # (H, W, 3)
    elif colour in (0, 2):
        rgb, alpha = samples, opaque
        if trns:
            if len(trns) != 2 * samples.shape[2]:
                raise DataError(
                    f"{name}: tRNS for colour type {colour} must hold "
                    f"{2 * samples.shape[2]} bytes, has {len(trns)}"
                )
            key = np.array(struct.unpack(f">{samples.shape[2]}H", trns))  # (channels,)
            alpha = np.where(np.all(samples == key, axis=2), 0.0, 1.0)
    else:  # 4, 6: the last channel is alpha; a tRNS chunk is not allowed and is ignored
        rgb, alpha = samples[..., :-1], samples[..., -1] / smax
    if rgb.shape[2] == 1:
        luma = rgb[..., 0].astype(np.float64)  # (H, W)
    else:
        luma = 0.299 * rgb[..., 0] + 0.587 * rgb[..., 1] + 0.114 * rgb[..., 2]  # (H, W)
    gray = luma * (255 / smax) * alpha + background * (1 - alpha)  # composited over background
    return np.asarray(np.rint(gray).clip(0, 255), dtype=np.uint8)
