package rle

import (
	"fmt"
	"strings"
)

// String is the compressed COCO form of the counts (maskApi.c's rleToString): each count,
// minus the count two places before it from the fourth on, as a signed LEB128-like number of
// 5-bit groups, each group written as one character '0' + (group | 0x20 when more follow).
func (r RLE) String() string {
	var sb strings.Builder
	sb.Grow(len(r.Counts) * 2)
	for i, c := range r.Counts {
		x := int64(c)
		if i > 2 {
			x -= int64(r.Counts[i-2])
		}
		for more := true; more; {
			ch := x & 0x1f
			x >>= 5
			if ch&0x10 != 0 {
				more = x != -1
			} else {
				more = x != 0
			}
			if more {
				ch |= 0x20
			}
			sb.WriteByte(byte(ch + 48))
		}
	}
	return sb.String()
}

// FromString decodes the compressed COCO counts s of an h x w mask (maskApi.c's
// rleFrString). Characters outside '0'..'o', a number cut short and runs that do not cover
// h*w pixels are errors.
func FromString(s string, h, w int) (RLE, error) {
	counts := make([]uint32, 0, len(s)/2+1)
	for p := 0; p < len(s); {
		var x int64
		k := 0
		for more := true; more; {
			if p >= len(s) {
				return RLE{}, fmt.Errorf("rle: compressed counts %q end inside a number", abbreviate(s))
			}
			ch := int64(s[p]) - 48
			if ch < 0 || ch > 63 {
				return RLE{}, fmt.Errorf("rle: character %q at %d of compressed counts %q is outside '0'..'o'", s[p], p, abbreviate(s))
			}
			if k >= 12 {
				return RLE{}, fmt.Errorf("rle: number at %d of compressed counts %q is too long", p, abbreviate(s))
			}
			x |= (ch & 0x1f) << (5 * k)
			more = ch&0x20 != 0
			p++
			k++
			if !more && ch&0x10 != 0 {
				x |= -1 << (5 * k)
			}
		}
		if m := len(counts); m > 2 {
			x += int64(counts[m-2])
		}
		counts = append(counts, uint32(x))
	}
	r := RLE{H: h, W: w, Counts: counts}
	if err := r.Validate(); err != nil {
		return RLE{}, fmt.Errorf("compressed counts %q: %w", abbreviate(s), err)
	}
	return r, nil
}

func abbreviate(s string) string {
	if len(s) > 40 {
		return s[:40] + "..."
	}
	return s
}
