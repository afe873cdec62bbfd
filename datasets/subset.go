package datasets

import (
	"fmt"
	"math/rand/v2"
	"slices"
)

// Subset is the view of a dataset restricted to some of its samples.
type Subset struct {
	ds      Dataset
	indices []int
	name    string
}

// NewSubset returns the samples of ds at indices (each in [0, ds.Len())), in that order.
func NewSubset(ds Dataset, indices []int, name string) (*Subset, error) {
	for _, i := range indices {
		if i < 0 || i >= ds.Len() {
			return nil, fmt.Errorf("datasets: subset index %d outside %s of %d samples", i, ds.Name(), ds.Len())
		}
	}
	return &Subset{ds: ds, indices: slices.Clone(indices), name: name}, nil
}

// LabeledSubset picks the labelled images of the label-efficient protocol: count images
// (if count > 0) or round(fraction * Len) (at least 1), drawn without replacement by a
// permutation seeded with seed, returned sorted. The same (Len, count or fraction, seed) always
// gives the same images.
func LabeledSubset(n int, fraction float64, count int, seed uint64) ([]int, error) {
	k := count
	if k <= 0 {
		if fraction <= 0 || fraction > 1 {
			return nil, fmt.Errorf("label fraction %g must be in (0, 1]", fraction)
		}
		k = max(1, int(fraction*float64(n)+0.5))
	}
	if k > n {
		return nil, fmt.Errorf("%d labelled images asked for, the dataset has %d", k, n)
	}
	perm := rand.New(rand.NewPCG(seed, 0x5eed)).Perm(n)[:k]
	slices.Sort(perm)
	return perm, nil
}

// Name implements Dataset.
func (s *Subset) Name() string { return s.name }

// Len implements Dataset.
func (s *Subset) Len() int { return len(s.indices) }

// Get implements Dataset.
func (s *Subset) Get(i int) (Sample, error) { return s.ds.Get(s.indices[i]) }

// Classes implements Dataset.
func (s *Subset) Classes() []string { return s.ds.Classes() }

// Indices are the indices of the subset's samples in the parent dataset.
func (s *Subset) Indices() []int { return slices.Clone(s.indices) }

// Path implements Pather when the parent does.
func (s *Subset) Path(i int) string {
	if p, ok := s.ds.(Pather); ok {
		return p.Path(s.indices[i])
	}
	return ""
}
