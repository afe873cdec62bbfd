package main

import (
	"bytes"
	"fmt"
	imagepng "image/png"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/dreamteacher-go/dreamteacher/datasets"
	"github.com/dreamteacher-go/dreamteacher/datasets/scenes"
	"github.com/dreamteacher-go/dreamteacher/eval/coco"
	"github.com/dreamteacher-go/dreamteacher/eval/semseg"
	"github.com/dreamteacher-go/dreamteacher/train"
	"github.com/gomlx/gomlx/ml/model"
)

// requireSameScores checks that the masks in preds score, against the labels of ds, exactly the
// metrics of the run's result.json (every digit of mIoU, mAcc, aAcc and each class's IoU), and
// that `eval --predictions` prints them.
func requireSameScores(t *testing.T, run string, ds datasets.Dataset, preds string, evalArgs ...string) {
	t.Helper()
	var want map[string]any
	readJSON(t, filepath.Join(run, "result.json"), &want)
	res, err := evalPredictions(ds, preds)
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]any{"mIoU": 100 * res.MIoU, "mAcc": 100 * res.MAcc, "aAcc": 100 * res.AAcc}
	for k, v := range perClass(ds.Classes(), res.IoU) {
		got["IoU "+k] = v
	}
	wantClass, _ := want["per_class_iou"].(map[string]any)
	for k := range got {
		w := want[k]
		if name, ok := strings.CutPrefix(k, "IoU "); ok {
			w = wantClass[name]
		}
		if fmt.Sprint(got[k]) != fmt.Sprint(w) {
			t.Errorf("%s: the predicted masks score %v, the run's result.json %v", k, got[k], w)
		}
	}
	stdout := mustRun(t, append([]string{"eval", "--task", "semseg", "--predictions", preds}, evalArgs...)...)
	m := res.Metrics()
	if line := fmt.Sprintf("mIoU %.2f  mAcc %.2f  aAcc %.2f", m["mIoU"], m["mAcc"], m["aAcc"]); !strings.Contains(stdout, line) {
		t.Errorf("eval --predictions prints\n%s\nwant %q", stdout, line)
	}
}

// sameFiles requires the PNGs of dir a and dir b to be the same, byte for byte.
func sameFiles(t *testing.T, a, b string) int {
	t.Helper()
	names, err := filepath.Glob(filepath.Join(a, "*.png"))
	if err != nil || len(names) == 0 {
		t.Fatalf("no PNGs in %s: %v", a, err)
	}
	for _, n := range names {
		x, _ := os.ReadFile(n)
		y, err := os.ReadFile(filepath.Join(b, filepath.Base(n)))
		if err != nil || !bytes.Equal(x, y) {
			t.Errorf("%s differs from the one in %s (%v)", n, b, err)
		}
	}
	return len(names)
}

// TestPredictSemsegScenes: a tiny run on the generated scenes; predict on its val split and on
// the folder of the same images writes the same masks, which score as the run's result.json;
// overlays; a bad image stops it naming the file, or is listed and left out under --skip-bad.
func TestPredictSemsegScenes(t *testing.T) {
	data := testScenes(t)
	dir := t.TempDir()
	run := filepath.Join(dir, "run")
	mustRun(t, append(semsegArgs(data), "--out", run)...)

	split := filepath.Join(dir, "split")
	stdout := mustRun(t, "predict", "--checkpoint", run, "--split", "val", "--out", split)
	if !strings.Contains(stdout, "4 label maps of ade20k/validation (7 classes, at their native size)") {
		t.Errorf("predict --split val printed %q", stdout)
	}
	val, err := datasets.Open("scenes", data, "val", datasets.Options{Task: "semantic", KeepZeroLabel: true})
	if err != nil {
		t.Fatal(err)
	}
	requireSameScores(t, run, val, split, "--dataset", "scenes", "--data", data, "--split", "val", "--keep-zero-label")

	images := filepath.Join(dir, "images")
	if err := os.CopyFS(images, os.DirFS(filepath.Join(scenes.ADE20KDir(data), "ADEChallengeData2016", "images", "validation"))); err != nil {
		t.Fatal(err)
	}
	folder := filepath.Join(dir, "folder")
	mustRun(t, "predict", "--checkpoint", run, "--images", images, "--out", folder, "--overlays")
	if n := sameFiles(t, split, folder); n != 4 {
		t.Errorf("%d masks, want 4", n)
	}
	if overlays, _ := filepath.Glob(filepath.Join(folder, "overlays", "*.png")); len(overlays) != 4 {
		t.Errorf("overlays: %v", overlays)
	}
	mask, w, h, err := semseg.ReadMask(filepath.Join(folder, "ADE_val_00000001.png"))
	if err != nil || w != 32 || h != 32 || slices.Max(mask) > 6 {
		t.Errorf("a mask: %dx%d, %v", w, h, err)
	}

	bad := filepath.Join(images, "ADE_val_00000002.jpg")
	if err := os.WriteFile(bad, []byte("not an image"), 0o644); err != nil {
		t.Fatal(err)
	}
	code, _, stderr := runCLI("predict", "--checkpoint", run, "--images", images, "--out", filepath.Join(dir, "bad"))
	if code != 1 || !strings.Contains(stderr, bad) {
		t.Errorf("a bad image: exit %d, %q; want exit 1 naming %s", code, stderr, bad)
	}
	code, stdout, stderr = runCLI("predict", "--checkpoint", run, "--images", images, "--out", filepath.Join(dir, "skip"), "--skip-bad")
	if masks, _ := filepath.Glob(filepath.Join(dir, "skip", "*.png")); code != 0 || len(masks) != 3 ||
		!strings.Contains(stdout, "skipped 1 images that failed to load (--skip-bad):\n  "+bad+": ") {
		t.Errorf("--skip-bad: exit %d, %d masks\n%s\n%s", code, len(masks), stdout, stderr)
	}
}

// TestPredictCamVid: a tiny run on CamVid; predict on val.txt scores with eval --predictions
// exactly as the run's own evaluation, and on test.txt (no labels) writes a 240x180 mask per
// listed image. A dataset with other classes is refused naming the checkpoint and both counts.
func TestPredictCamVid(t *testing.T) {
	if testing.Short() {
		t.Skip("fine-tunes on CamVid and predicts its 334 val and test images (about a minute)")
	}
	camvid, _ := filepath.Abs(filepath.Join("..", "..", "..", "shared", "data", "camvid"))
	if _, err := os.Stat(camvid); err != nil {
		t.Skipf("CamVid is not at %s", camvid)
	}
	dir := t.TempDir()
	run := filepath.Join(dir, "run")
	mustRun(t, "finetune", "--task", "semseg", "--config", "camvid_finetune", "--set", "data="+camvid, "--set", "steps=2",
		"--set", "batch=2", "--set", "crop=64,64", "--set", "head_channels=8", "--set", "warmup=1", "--set", "label_count=2",
		"--set", "overlays=0", "--set", "log_every=1", "--out", run)
	ckpt, _, err := train.Latest(run)
	if err != nil {
		t.Fatal(err)
	}

	valPreds := filepath.Join(dir, "val")
	mustRun(t, "predict", "--checkpoint", ckpt.Path, "--images", filepath.Join(camvid, "val.txt"), "--out", valPreds)
	val, err := datasets.Open("camvid", camvid, "val", datasets.Options{Task: "semantic"})
	if err != nil {
		t.Fatal(err)
	}
	requireSameScores(t, run, val, valPreds, "--dataset", "camvid", "--data", camvid, "--split", "val")

	testPreds := filepath.Join(dir, "test")
	stdout := mustRun(t, "predict", "--checkpoint", run, "--images", filepath.Join(camvid, "test.txt"), "--out", testPreds)
	masks, _ := filepath.Glob(filepath.Join(testPreds, "*.png"))
	if len(masks) != 233 || !strings.Contains(stdout, "233 label maps of imagefolder/test.txt (11 classes") {
		t.Errorf("test.txt: %d masks\n%s", len(masks), stdout)
	}
	if _, w, h, err := semseg.ReadMask(filepath.Join(testPreds, "0001TP_008550.png")); err != nil || w != 240 || h != 180 {
		t.Errorf("0001TP_008550.png: %dx%d, %v", w, h, err)
	}

	code, _, stderr := runCLI("predict", "--checkpoint", run, "--split", "val", "--dataset", "scenes", "--data", testScenes(t), "--out", t.TempDir())
	if code != 1 || !strings.Contains(stderr, ckpt.Path+" was trained for 11 classes") || !strings.Contains(stderr, "has 6") {
		t.Errorf("a dataset of 6 classes: exit %d, %q", code, stderr)
	}
}

// TestPredictInstseg: predict with a tiny Mask R-CNN run on its val split writes the COCO
// results of the run's own evaluation, byte for byte, and the images' COCO entries.
func TestPredictInstseg(t *testing.T) {
	data := testScenes(t)
	dir := t.TempDir()
	run := filepath.Join(dir, "run")
	mustRun(t, append(instsegArgs(data), "--out", run)...)
	out := filepath.Join(dir, "pred")
	stdout := mustRun(t, "predict", "--checkpoint", run, "--split", "val", "--out", out, "--overlays")
	if !strings.Contains(stdout, "on 4 images of coco/val2017") {
		t.Errorf("predict printed %q", stdout)
	}
	got, err := os.ReadFile(filepath.Join(out, "coco_instances_results.json"))
	if err != nil {
		t.Fatal(err)
	}
	want, err := os.ReadFile(filepath.Join(run, "coco_instances_results.json"))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("predict's results differ from the run's evaluation:\n%s\n%s", got, want)
	}
	var images coco.Dataset
	readJSON(t, filepath.Join(out, "coco_images.json"), &images)
	if len(images.Images) != 4 || len(images.Categories) != len(scenes.Classes) || images.Categories[0].Name != scenes.Classes[0] {
		t.Errorf("coco_images.json: %+v", images)
	}
	if overlays, _ := filepath.Glob(filepath.Join(out, "overlays", "*.png")); len(overlays) != 4 {
		t.Errorf("overlays: %v", overlays)
	}
}

// TestPredictRefuses: usage errors name what is wrong, before any model is built.
func TestPredictRefuses(t *testing.T) {
	dir := t.TempDir()
	missing := filepath.Join(dir, "missing")
	other := filepath.Join(dir, "distill")
	store := model.NewStore()
	store.SetParam(commandParam, "distill")
	if _, err := train.Save(store, other, 7, nil, 0); err != nil {
		t.Fatal(err)
	}
	empty := t.TempDir()
	fake := filepath.Join(dir, "fake") // a semseg run's command, no model
	store = model.NewStore()
	store.SetParam(commandParam, semsegCommand)
	ck, err := train.Save(store, fake, 3, nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"--checkpoint", missing, "--images", dir, "--out", dir}, "--checkpoint: " + missing + " does not exist"},
		{[]string{"--checkpoint", empty, "--images", dir, "--out", dir}, "no checkpoint (ckpt-*.safetensors) in " + empty},
		{[]string{"--checkpoint", other, "--images", dir, "--out", dir},
			filepath.Join(other, "ckpt-00000007.safetensors") + ` is not a fine-tuning checkpoint (recorded command "distill")`},
		{[]string{"--images", dir, "--out", dir}, "--checkpoint is required"},
		{[]string{"--checkpoint", fake, "--images", dir}, "--out is required"},
		{[]string{"--checkpoint", fake, "--out", dir}, "give the images: --images"},
		{[]string{"--checkpoint", fake, "--images", dir, "--split", "val", "--out", dir}, "give the images: --images"},
		{[]string{"--checkpoint", fake, "--images", dir, "--data", dir, "--out", dir}, "--dataset and --data go with --split"},
		{[]string{"--checkpoint", fake, "--images", missing, "--out", dir}, "--images: " + missing + " does not exist"},
	} {
		code, _, stderr := runCLI(append([]string{"predict"}, c.args...)...)
		if code != 2 || !strings.Contains(stderr, c.want) {
			t.Errorf("predict %v: exit %d, %q; want exit 2 and %q", c.args, code, stderr, c.want)
		}
	}
	// A checkpoint that says it is a semseg run but holds no UperNet.
	images := t.TempDir()
	var png bytes.Buffer
	if err := imagepng.Encode(&png, datasets.NewImage(8, 8).ToRGBA()); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(images, "a.png"), png.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	code, _, stderr := runCLI("predict", "--checkpoint", fake, "--images", images, "--out", t.TempDir())
	if code != 1 || !strings.Contains(stderr, ck+": no UperNet classifier") {
		t.Errorf("a checkpoint without a model: exit %d, %q", code, stderr)
	}
}
