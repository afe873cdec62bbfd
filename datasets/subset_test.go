package datasets

import (
	"slices"
	"testing"
)

func TestLabeledSubsetIsDeterministic(t *testing.T) {
	a, err := LabeledSubset(367, 0.1, 0, 1)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := LabeledSubset(367, 0.1, 0, 1)
	c, _ := LabeledSubset(367, 0.1, 0, 2)
	if len(a) != 37 || !slices.Equal(a, b) || slices.Equal(a, c) || !slices.IsSorted(a) {
		t.Errorf("subsets %v / %v / %v", a, b, c)
	}
	if n, _ := LabeledSubset(100, 0, 20, 3); len(n) != 20 {
		t.Errorf("count: %d images", len(n))
	}
	if _, err := LabeledSubset(10, 0, 11, 3); err == nil {
		t.Error("more labels than images must fail")
	}
	if _, err := LabeledSubset(10, 1.5, 0, 3); err == nil {
		t.Error("fraction > 1 must fail")
	}
}
