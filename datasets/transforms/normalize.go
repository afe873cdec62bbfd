package transforms

// Normalization maps [0,1] RGB values to (v - Mean) / Std per channel.
type Normalization struct {
	Mean, Std [3]float32
}

// ImageNetNorm is the usual ImageNet mean and standard deviation, in [0,1] units.
var ImageNetNorm = Normalization{Mean: [3]float32{0.485, 0.456, 0.406}, Std: [3]float32{0.229, 0.224, 0.225}}

// Apply normalizes interleaved RGB values (HWC or NHWC) in place.
func (n Normalization) Apply(pix []float32) {
	inv := [3]float32{1 / n.Std[0], 1 / n.Std[1], 1 / n.Std[2]}
	for i := 0; i+2 < len(pix); i += 3 {
		pix[i] = (pix[i] - n.Mean[0]) * inv[0]
		pix[i+1] = (pix[i+1] - n.Mean[1]) * inv[1]
		pix[i+2] = (pix[i+2] - n.Mean[2]) * inv[2]
	}
}

// ToFloat writes the 8-bit values of src to dst as float32 in [0,1], normalized by n when n is
// not nil. len(dst) must be len(src).
func ToFloat(dst []float32, src []uint8, n *Normalization) {
	if n == nil {
		for i, v := range src {
			dst[i] = float32(v) * (1.0 / 255)
		}
		return
	}
	var lut [3][256]float32
	for c := 0; c < 3; c++ {
		for v := 0; v < 256; v++ {
			lut[c][v] = (float32(v)/255 - n.Mean[c]) / n.Std[c]
		}
	}
	for i := 0; i+2 < len(src); i += 3 {
		dst[i] = lut[0][src[i]]
		dst[i+1] = lut[1][src[i+1]]
		dst[i+2] = lut[2][src[i+2]]
	}
}
