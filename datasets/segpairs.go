package datasets

import "fmt"

// LabelMap maps the values stored in a label PNG to class indices (or IgnoreLabel); -1 marks a
// value that must not occur, which Get reports as an error naming the file.
type LabelMap [256]int16

// IdentityLabels maps 0..k-1 to themselves, ignore to IgnoreLabel and all else to -1.
func IdentityLabels(k int, ignore uint8) LabelMap {
	var m LabelMap
	for v := range m {
		m[v] = -1
	}
	for v := 0; v < k; v++ {
		m[v] = int16(v)
	}
	m[ignore] = IgnoreLabel
	return m
}

// SegPairs is a semantic segmentation dataset read from (image, label PNG) file pairs: the
// shared implementation of the ADE20K, CamVid and BDD100K semantic loaders.
type SegPairs struct {
	DatasetName string
	Pairs       [][2]string // image path, label PNG path
	Labels      LabelMap
	ClassNames  []string
}

// Name implements Dataset.
func (d *SegPairs) Name() string { return d.DatasetName }

// Len implements Dataset.
func (d *SegPairs) Len() int { return len(d.Pairs) }

// Classes implements Dataset.
func (d *SegPairs) Classes() []string { return d.ClassNames }

// Path implements Pather.
func (d *SegPairs) Path(i int) string { return d.Pairs[i][0] }

// Get implements Dataset.
func (d *SegPairs) Get(i int) (Sample, error) {
	imgPath, maskPath := d.Pairs[i][0], d.Pairs[i][1]
	s := Sample{Path: imgPath, Label: -1}
	img, err := ReadImage(imgPath)
	if err != nil {
		return s, err
	}
	lab, w, h, err := ReadLabelPNG(maskPath)
	if err != nil {
		return s, err
	}
	if err := CheckSize(imgPath, img, maskPath, w, h); err != nil {
		return s, err
	}
	if err := d.Labels.Apply(lab); err != nil {
		return s, fmt.Errorf("%s: %w", maskPath, err)
	}
	s.Image, s.Semantic = img, lab
	return s, nil
}

// Apply maps the values of lab in place; a value mapped to -1 is an error.
func (m *LabelMap) Apply(lab []uint8) error {
	var seen [256]bool
	for _, v := range lab {
		seen[v] = true
	}
	for v, ok := range seen {
		if ok && m[v] < 0 {
			return fmt.Errorf("label value %d is not a class index nor the ignore value", v)
		}
	}
	var lut [256]uint8
	for v := range lut {
		lut[v] = uint8(m[v])
	}
	for i, v := range lab {
		lab[i] = lut[v]
	}
	return nil
}
