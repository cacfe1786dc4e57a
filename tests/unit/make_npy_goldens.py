#!/usr/bin/python3
"""make_npy_goldens.py - writes the .npy/.npz golden files of tests/unit/test_npy.c into
tests/unit/data/ (committed; rerun after changing this script: /usr/bin/python3 make_npy_goldens.py).

Valid arrays follow the pattern test_npy.c recomputes: element i of an array of N elements is
  s_i = 7*i - 5, cast to the dtype (integers wrap), times 0.25 for floating types,
  and (i % 3 == 0) for bool.
"""
import io
import os
import struct
import sys
import zipfile
import zlib

import numpy as np

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data")

DTYPES = ["<f4", "<f8", "<f2", "<i8", "<i4", "<i2", "|i1", "|u1", "<u2", "<u4", "<u8", "|b1"]


def pattern(dtype, shape):
    n = int(np.prod(shape, dtype=np.int64))
    i = np.arange(n, dtype=np.int64)
    dt = np.dtype(dtype)
    if dt.kind == "b":
        a = (i % 3 == 0)
    elif dt.kind == "f":
        a = (7 * i - 5).astype(np.float64) * 0.25
    else:
        a = (7 * i - 5)
    return a.astype(dt).reshape(shape)


def save(name, arr, **kw):
    np.save(os.path.join(OUT, name), arr, **kw)


def raw(name, data):
    with open(os.path.join(OUT, name), "wb") as f:
        f.write(data)


def npy_bytes(header, data, version=(1, 0), align=64):
    """Hand-built .npy with an arbitrary header dict text."""
    h = header.encode("latin1")
    pre = 10 if version[0] == 1 else 12
    total = pre + len(h) + 1
    pad = (-total) % align
    h = h + b" " * pad + b"\n"
    ln = struct.pack("<H", len(h)) if version[0] == 1 else struct.pack("<I", len(h))
    return b"\x93NUMPY" + bytes(version) + ln + h + data


def zip64_npz(members):
    """A stored archive that uses every ZIP64 structure: sizes and offsets in ZIP64 extra fields
    (0xFFFFFFFF in the classic fields), a ZIP64 end of central directory record and locator."""
    out = bytearray()
    cdir = bytearray()
    for name, data in members:
        nb = name.encode()
        crc = zlib.crc32(data) & 0xFFFFFFFF
        off = len(out)
        lx = struct.pack("<HHQQ", 1, 16, len(data), len(data))
        out += struct.pack("<IHHHHHIIIHH", 0x04034b50, 45, 0, 0, 0, 0x21, crc,
                           0xFFFFFFFF, 0xFFFFFFFF, len(nb), len(lx)) + nb + lx + data
        cx = struct.pack("<HHQQQ", 1, 24, len(data), len(data), off)
        cdir += struct.pack("<IHHHHHHIIIHHHHHII", 0x02014b50, 45, 45, 0, 0, 0, 0x21, crc,
                            0xFFFFFFFF, 0xFFFFFFFF, len(nb), len(cx), 0, 0, 0, 0,
                            0xFFFFFFFF) + nb + cx
    cd_off = len(out)
    out += cdir
    z64 = len(out)
    out += struct.pack("<IQHHIIQQQQ", 0x06064b50, 44, 45, 45, 0, 0, len(members), len(members),
                       len(cdir), cd_off)
    out += struct.pack("<IIQI", 0x07064b50, 0, z64, 1)
    out += struct.pack("<IHHHHIIH", 0x06054b50, 0, 0, 0xFFFF, 0xFFFF, 0xFFFFFFFF, 0xFFFFFFFF, 0)
    return bytes(out)


def main():
    os.makedirs(OUT, exist_ok=True)
    for f in os.listdir(OUT):
        if f.endswith((".npy", ".npz", ".bin")):
            os.remove(os.path.join(OUT, f))

    # ---- valid: every dtype (np.save, format 1.0), shapes of rank 1..4
    shapes = [(2, 3), (3, 2), (5,), (2, 2, 2), (7,), (2, 3), (6,), (2, 3), (4,), (3,), (2, 1, 2, 1),
              (7,)]
    for dt, shp in zip(DTYPES, shapes):
        save("ok_%s.npy" % np.dtype(dt).str[1:], pattern(dt, shp))
    # scalars (shape ()) and empty arrays
    save("ok_scalar_f4.npy", pattern("<f4", ()))
    save("ok_scalar_i8.npy", pattern("<i8", ()))
    save("ok_scalar_b1.npy", pattern("|b1", ()))
    save("ok_empty_f4.npy", pattern("<f4", (0,)))
    save("ok_empty3_i8.npy", pattern("<i8", (2, 0, 3)))
    # extremes, checked by value in test_npy.c
    save("ok_special_f4.npy", np.array([np.nan, np.inf, -np.inf, -0.0, 1e-45, 3.4028235e38],
                                       dtype="<f4"))
    save("ok_big_u8.npy", np.array([2**64 - 1, 2**63], dtype="<u8"))
    save("ok_big_i8.npy", np.array([-2**63, 2**63 - 1], dtype="<i8"))
    # format versions 2.0 and 3.0 as numpy writes them
    with open(os.path.join(OUT, "ok_v2_f4.npy"), "wb") as f:
        np.lib.format.write_array(f, pattern("<f4", (2, 3)), version=(2, 0))
    with open(os.path.join(OUT, "ok_v3_f4.npy"), "wb") as f:
        np.lib.format.write_array(f, pattern("<f4", (2, 3)), version=(3, 0))
    # fortran_order True on a 1-d array is the same layout (numpy can write it by hand)
    # header variants: other key order, double quotes, '=' and no byte order, Python 2 longs,
    # list shape, extra whitespace, 16-byte alignment (old numpy), extra unknown key
    d6 = pattern("<f4", (2, 3)).tobytes()
    raw("ok_hdr_order.npy", npy_bytes("{'shape': (2, 3), 'fortran_order': False, 'descr': '<f4'}",
                                      d6))
    raw("ok_hdr_dquote.npy", npy_bytes('{"descr": "<f4", "fortran_order": False, "shape": (2,3)}',
                                       d6))
    raw("ok_hdr_native.npy", npy_bytes("{'descr': '=f4', 'fortran_order': False, 'shape': (2, 3), }",
                                       d6))
    raw("ok_hdr_noorder.npy", npy_bytes("{'descr':'f4','fortran_order':False,'shape':(2L, 3L)}", d6))
    raw("ok_hdr_list.npy", npy_bytes("{ 'descr' : '<f4' ,\t'fortran_order' : False , "
                                     "'shape' : [2, 3] , 'extra': {'a': (1, 'x)'), 'b': None} }",
                                     d6, align=16))
    raw("ok_hdr_v2.npy", npy_bytes("{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }",
                                   d6, version=(2, 0)))
    raw("ok_hdr_bool_q.npy", npy_bytes("{'descr': '?', 'fortran_order': False, 'shape': (7,), }",
                                       pattern("|b1", (7,)).tobytes()))
    raw("ok_hdr_fortran_1d.npy", npy_bytes("{'descr': '<f4', 'fortran_order': True, 'shape': (6,)}",
                                           pattern("<f4", (6,)).tobytes()))

    # ---- malformed / refused
    good = open(os.path.join(OUT, "ok_f4.npy"), "rb").read()
    raw("bad_truncated.npy", good[:-5])
    raw("bad_trailing.npy", good + b"\0\0\0\0")
    raw("bad_trunc_header.npy", good[:40])
    raw("bad_short.npy", good[:8])
    raw("bad_magic.npy", b"\x93NUMPX" + good[6:])
    raw("bad_version.npy", good[:6] + b"\x04\x00" + good[8:])
    raw("bad_hdrlen.npy", good[:8] + struct.pack("<H", 0xFFF0) + good[10:])
    raw("bad_empty.npy", b"")
    save("bad_bigendian.npy", pattern("<f4", (2, 3)).astype(">f4"))
    save("bad_fortran.npy", np.asfortranarray(pattern("<f4", (2, 3))))
    save("bad_object.npy", np.array([1, "a", None], dtype=object), allow_pickle=True)
    save("bad_unicode.npy", np.array(["ab", "c"]))
    save("bad_datetime.npy", np.array([1, 2], dtype="datetime64[ns]"))
    save("bad_struct.npy", np.zeros(2, dtype=[("a", "<f4"), ("b", "<i4")]))
    raw("bad_overflow.npy", npy_bytes("{'descr': '<f4', 'fortran_order': False, "
                                      "'shape': (4294967296, 4294967296), }", b""))
    raw("bad_overflow_bytes.npy", npy_bytes("{'descr': '<f8', 'fortran_order': False, "
                                            "'shape': (2305843009213693952,), }", b""))
    raw("bad_hugedim.npy", npy_bytes("{'descr': '<f4', 'fortran_order': False, "
                                     "'shape': (99999999999999999999,), }", b""))
    raw("bad_huge_claim.npy", npy_bytes("{'descr': '<f4', 'fortran_order': False, "
                                        "'shape': (1000000000, 1000), }", d6))
    raw("bad_negdim.npy", npy_bytes("{'descr': '<f4', 'fortran_order': False, 'shape': (-1, 6), }",
                                    d6))
    raw("bad_nokey.npy", npy_bytes("{'descr': '<f4', 'shape': (2, 3), }", d6))
    raw("bad_garbage.npy", npy_bytes("{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), } x",
                                     d6))
    raw("bad_notdict.npy", npy_bytes("['descr', '<f4']", d6))
    raw("bad_unterminated.npy", npy_bytes("{'descr': '<f4, 'fortran_order': False, 'shape': (2, 3)",
                                          d6))
    raw("bad_bigendian_hdr.npy", npy_bytes("{'descr': '>i8', 'fortran_order': False, 'shape': (1,)}",
                                           b"\0" * 8))
    raw("bad_dupkey.npy", npy_bytes("{'descr': '<f4', 'descr': '<f4', 'fortran_order': False, "
                                    "'shape': (2, 3)}", d6))

    # ---- .npz: stored (np.savez), deflated (np.savez_compressed), ZIP64
    x = pattern("<f4", (4, 3))
    y = pattern("<i8", (4,))
    np.savez(os.path.join(OUT, "ok_stored.npz"), x=x, y=y)
    # compressible content so that the deflate path really inflates data
    np.savez_compressed(os.path.join(OUT, "ok_deflated.npz"), x=pattern("<f4", (16, 16)),
                        y=pattern("<i8", (16,)), s=pattern("<f8", ()), e=pattern("|u1", (0, 4)))
    raw("ok_zip64.npz", zip64_npz([("x.npy", open(os.path.join(OUT, "ok_f4.npy"), "rb").read()),
                                   ("b.npy", open(os.path.join(OUT, "ok_b1.npy"), "rb").read())]))
    np.savez(os.path.join(OUT, "ok_empty.npz"))

    stored = bytearray(open(os.path.join(OUT, "ok_stored.npz"), "rb").read())
    # flip one data byte of member x: CRC mismatch
    i = stored.find(b"\x93NUMPY")
    crc = bytearray(stored)
    crc[i + 130] ^= 0x55
    raw("bad_crc.npz", bytes(crc))
    raw("bad_truncated.npz", bytes(stored[:len(stored) // 2]))
    raw("bad_notzip.npz", b"this is not a zip file at all, just some text" * 3)
    raw("bad_isnpy.npz", good)
    # a deflated member that declares a huge uncompressed size (allocation bomb)
    defl = bytearray(open(os.path.join(OUT, "ok_deflated.npz"), "rb").read())
    bomb = bytearray(defl)
    cd = bomb.find(b"PK\x01\x02")
    struct.pack_into("<I", bomb, cd + 24, 0xF0000000)
    raw("bad_bomb.npz", bytes(bomb))
    # corrupt deflate data
    cor = bytearray(defl)
    lh = cor.find(b"PK\x03\x04")
    nl, xl = struct.unpack_from("<HH", cor, lh + 26)
    ds = lh + 30 + nl + xl
    for k in range(ds + 2, ds + 40):
        cor[k] = 0xFF
    raw("bad_deflate.npz", bytes(cor))
    # member whose npy is malformed (wrong length) inside a valid zip
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("x.npy", good[:-4])
    raw("bad_member.npz", buf.getvalue())
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("x.txt", b"hello")
    raw("bad_member_name.npz", buf.getvalue())
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_BZIP2) as zf:
        zf.writestr("x.npy", good)
    raw("bad_bzip2.npz", buf.getvalue())

    total = sum(os.path.getsize(os.path.join(OUT, f)) for f in os.listdir(OUT))
    print("wrote %d files, %d bytes, into %s" % (len(os.listdir(OUT)), total, OUT))
    if total > 100 * 1024:
        sys.exit("golden files exceed 100 KB")


if __name__ == "__main__":
    main()
