package tboard

import (
	"encoding/binary"
	"hash/crc32"
)

// castagnoli is the CRC32C table that TFRecord framing requires (not the IEEE polynomial).
var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// maskDelta is the constant TFRecord adds after rotating a CRC, so that a CRC computed over data
// that itself contains CRCs does not degenerate.
const maskDelta = 0xa282ead8

// MaskedCRC32C returns the masked CRC32C of b as stored in TFRecord framing. It is exported so
// that tools checking foreign event files can reuse the exact definition.
func MaskedCRC32C(b []byte) uint32 {
	c := crc32.Checksum(b, castagnoli)
	return (c>>15 | c<<17) + maskDelta
}

// appendRecord appends one framed record holding data to dst.
func appendRecord(dst, data []byte) []byte {
	dst = binary.LittleEndian.AppendUint64(dst, uint64(len(data)))
	dst = binary.LittleEndian.AppendUint32(dst, MaskedCRC32C(dst[len(dst)-8:]))
	dst = append(dst, data...)
	return binary.LittleEndian.AppendUint32(dst, MaskedCRC32C(data))
}
