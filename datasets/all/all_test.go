package all

import (
	"slices"
	"strings"
	"testing"

	"github.com/dreamteacher-go/dreamteacher/datasets"
)

func TestAllRegistered(t *testing.T) {
	want := []string{"ade20k", "bdd100k", "camvid", "coco", "imagefolder", "imagenet", "scenes"}
	if got := datasets.Names(); !slices.Equal(got, want) {
		t.Errorf("registered %v, want %v", got, want)
	}
	_, err := datasets.Open("cityscapes", t.TempDir(), "train", datasets.Options{})
	if err == nil || !strings.Contains(err.Error(), strings.Join(want, ", ")) {
		t.Errorf("unknown dataset: %v", err)
	}
}

func Example() {
	// The default dataset: generated on first use into an empty folder.
	ds, err := datasets.Open("scenes", "/tmp/dreamteacher-example-scenes", "val", datasets.Options{Task: "instance"})
	if err != nil {
		panic(err)
	}
	s, _ := ds.Get(0)
	println(ds.Name(), ds.Len(), s.Image.W, len(s.Instances))
}
