package imagefolder

import (
	"path/filepath"
	"strings"
	"testing"

	"github.com/dreamteacher-go/dreamteacher/datasets"
	"github.com/dreamteacher-go/dreamteacher/datasets/internal/fixture"
)

func TestImageFolder(t *testing.T) {
	root := t.TempDir()
	fixture.JPEG(t, filepath.Join(root, "b.jpg"), 10, 8, 1)
	fixture.PNG(t, filepath.Join(root, "a", "deep", "c.PNG"), 6, 5, 2)
	fixture.JPEG(t, filepath.Join(root, "a", "x.jpeg"), 7, 7, 3)
	fixture.Write(t, filepath.Join(root, "a", "readme.txt"), []byte("no"))
	fixture.JPEG(t, filepath.Join(root, ".cache", "y.jpg"), 7, 7, 3)

	ds, err := datasets.Open("imagefolder", root, "", datasets.Options{})
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"a/deep/c.PNG", "a/x.jpeg", "b.jpg"}
	if ds.Len() != len(want) || ds.Classes() != nil {
		t.Fatalf("%d images, classes %v; want %v", ds.Len(), ds.Classes(), want)
	}
	for i, w := range want {
		s, err := ds.Get(i)
		if err != nil {
			t.Fatal(err)
		}
		if rel, _ := filepath.Rel(root, s.Path); rel != w || s.Label != -1 || s.Image.W == 0 {
			t.Errorf("sample %d: %s label %d size %dx%d", i, rel, s.Label, s.Image.W, s.Image.H)
		}
	}
	sub, err := Open(root, "a", datasets.Options{Limit: 1})
	if err != nil || sub.Len() != 1 {
		t.Fatalf("split sub-folder with Limit 1: %v, %d", err, sub.Len())
	}
}

func TestImageFolderBadInput(t *testing.T) {
	root := t.TempDir()
	bad := filepath.Join(root, "bad.jpg")
	fixture.JPEG(t, bad, 64, 64, 1)
	fixture.Truncate(t, bad)
	ds, err := Open(root, "", datasets.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ds.Get(0); err == nil || !strings.Contains(err.Error(), bad) {
		t.Errorf("truncated image: %v", err)
	}
	for _, dir := range []string{filepath.Join(root, "missing"), t.TempDir()} {
		if _, err := Open(dir, "", datasets.Options{}); err == nil || !strings.Contains(err.Error(), dir) {
			t.Errorf("folder %s: %v, want an error naming it", dir, err)
		}
	}
}

// TestFromList: a CamVid-style list (relative entries, absolute ones from another machine,
// "image label" lines) names its images in its own order; a missing entry is an error naming
// the list's line and the places tried.
func TestFromList(t *testing.T) {
	root := t.TempDir()
	fixture.PNG(t, filepath.Join(root, "test", "b.png"), 6, 5, 1)
	fixture.PNG(t, filepath.Join(root, "test", "a.png"), 6, 5, 2)
	fixture.PNG(t, filepath.Join(root, "other", "c.png"), 6, 5, 3)
	list := filepath.Join(root, "test.txt")
	fixture.Write(t, list, []byte("test/b.png\n# a comment\n\n/SegNet/CamVid/test/a.png /SegNet/CamVid/testannot/a.png\n/elsewhere/c.png\n"+
		filepath.Join(root, "other", "c.png")+"\n"))
	fixture.PNG(t, filepath.Join(root, "test", "c.png"), 6, 5, 4) // /elsewhere/c.png is found in test/, the folder named like the list
	ds, err := FromList(list)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"test/b.png", "test/a.png", "test/c.png", "other/c.png"}
	if ds.Len() != len(want) || ds.Classes() != nil {
		t.Fatalf("%d images; want %v", ds.Len(), want)
	}
	for i, w := range want {
		if rel, _ := filepath.Rel(root, ds.Path(i)); rel != w {
			t.Errorf("entry %d: %s, want %s", i, rel, w)
		}
	}
	fixture.Write(t, list, []byte("test/a.png\ntest/missing.png\n"))
	if _, err := FromList(list); err == nil || !strings.Contains(err.Error(), list+":2") || !strings.Contains(err.Error(), "missing.png") {
		t.Errorf("a missing entry: %v", err)
	}
}
