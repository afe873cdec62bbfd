package finetune

import (
	"bytes"
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/dreamteacher-go/dreamteacher/backend"
	"github.com/dreamteacher-go/dreamteacher/datasets"
	"github.com/dreamteacher-go/dreamteacher/datasets/scenes"
	"github.com/dreamteacher-go/dreamteacher/eval/coco"
)

// TestInstsegPredictAsEvaluation: the model restored from a run's checkpoint detects, on the
// val split, exactly the COCO results the run's evaluation wrote, with the run's classes and
// category ids.
func TestInstsegPredictAsEvaluation(t *testing.T) {
	data := tinyInstanceScenes(t)
	out := t.TempDir()
	res, err := Instseg(backend.Go(), instsegStore(t, data, "overlays=0"), out, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	m, err := LoadInstseg(backend.Go(), res.Checkpoint)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(m.Classes, scenes.Classes) || len(m.CategoryIDs) != len(scenes.Classes) {
		t.Errorf("restored classes %v, category ids %v; want %v", m.Classes, m.CategoryIDs, scenes.Classes)
	}
	val, err := datasets.Open("scenes", data, "val", datasets.Options{Task: "instance"})
	if err != nil {
		t.Fatal(err)
	}
	var results []coco.Result
	var images []int64
	if _, err := m.Predict(val, 1, false, func(p InstsegPrediction) error {
		results = append(results, p.Results...)
		images = append(images, p.Image.ID)
		if p.Draw() == nil {
			t.Errorf("%s: nothing drawn", p.Path)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if len(images) != 4 || len(results) == 0 {
		t.Errorf("predicted images %v with %d detections, want the 4 val images and some", images, len(results))
	}
	got, err := json.Marshal(results)
	if err != nil {
		t.Fatal(err)
	}
	want, err := os.ReadFile(filepath.Join(out, "coco_instances_results.json"))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("predict's %d results differ from the evaluation's coco_instances_results.json:\n%s\n%s", len(results), got, want)
	}
}
