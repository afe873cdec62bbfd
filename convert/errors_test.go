package convert

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/dreamteacher-go/dreamteacher/train"
	"github.com/gomlx/gomlx/ml/model"
)

func wantError(t *testing.T, err error, parts ...string) {
	t.Helper()
	if err == nil {
		t.Fatalf("no error, want one containing %q", parts)
	}
	for _, p := range parts {
		if !strings.Contains(err.Error(), p) {
			t.Errorf("error %q does not contain %q", err, p)
		}
	}
}

// TestSkipAndUnused leaves the classifier out: its variables are reported skipped, the
// checkpoint's fc.* unused, and LoadScope with the same Skip loads the rest strictly.
func TestSkipAndUnused(t *testing.T) {
	out := filepath.Join(t.TempDir(), "w.safetensors")
	rep, err := Run(context.Background(), Options{Family: "resnet", Input: "testdata/resnet_basic.safetensors",
		Out: out, Scope: "/model/backbone", Skip: []string{"head/*"}})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(rep.Skipped, []string{"head/fc/biases", "head/fc/weights"}) {
		t.Errorf("skipped %v", rep.Skipped)
	}
	if !slices.Contains(rep.Unused, "fc.weight") || !slices.Contains(rep.Unused, "fc.bias") {
		t.Errorf("unused %v should list fc.weight and fc.bias", rep.Unused)
	}
	st, _ := Load(out, "")
	defer st.Close()
	for _, k := range st.Keys {
		if !strings.HasPrefix(k, "model/backbone/") || strings.Contains(k, "head") {
			t.Errorf("unexpected variable %s in the converted checkpoint", k)
		}
	}
	// A store with a head of its own: strict loading with the declared skip succeeds.
	store := model.NewStore()
	if _, err := train.LoadScope(store, out, train.LoadSpec{From: "/model/backbone", To: "/model/backbone", Strict: true, Skip: []string{"head/*"}}); err != nil {
		t.Fatal(err)
	}
}

// TestWrittenCheckpointRestores checks that train.Restore reads the converted checkpoint as one
// of its own (format tag, parameters, frozen variables), from an output folder.
func TestWrittenCheckpointRestores(t *testing.T) {
	dir := t.TempDir()
	rep, err := Run(context.Background(), Options{Family: "resnet", Input: "testdata/resnet_basic.safetensors", Out: dir, Scope: "backbone"})
	if err != nil {
		t.Fatal(err)
	}
	latest, ok, err := train.Latest(dir)
	if err != nil || !ok || latest.Path != rep.Out {
		t.Fatalf("train.Latest(%s) = %v, %v, %v; the conversion wrote %s", dir, latest, ok, err, rep.Out)
	}
	store := model.NewStore()
	ck, err := train.Restore(store, rep.Out)
	if err != nil {
		t.Fatal(err)
	}
	if ck.Meta["convert_family"] != "resnet" || ck.Meta["convert_sha256"] != rep.SHA256 || len(rep.SHA256) != 64 {
		t.Errorf("metadata %v", ck.Meta)
	}
	if store.NumVariables() != rep.Variables {
		t.Errorf("restored %d variables of %d", store.NumVariables(), rep.Variables)
	}
	if v := store.GetVariable("/backbone/layer1/block0/bn2/running_mean"); v == nil || v.Trainable {
		t.Errorf("running_mean missing or trainable after Restore")
	}
	if v := store.GetVariable("/backbone/layer1/block0/conv2/weights"); v == nil || !v.Trainable ||
		!slices.Equal(v.Shape().Dimensions, []int{3, 3, 8, 8}) {
		t.Errorf("conv2 weights missing, frozen or of the wrong shape")
	}
}

func TestConversionErrors(t *testing.T) {
	ctx := context.Background()
	tmp := t.TempDir()
	out := filepath.Join(tmp, "out.safetensors")

	// A registered architecture that is not the checkpoint's.
	_, err := Run(ctx, Options{Family: "resnet", Arch: "resnet18", Input: "testdata/resnet_basic.safetensors", Out: out})
	wantError(t, err, "resnet_basic.safetensors", "BasicBlock [1 1 1 1], width 8", "not resnet18")

	// The wrong family: the error lists the layouts looked for and the file's keys.
	_, err = Run(ctx, Options{Family: "convnext", Input: "testdata/resnet_basic.safetensors", Out: out})
	wantError(t, err, "resnet_basic.safetensors", "not a convnext checkpoint", "stem.0.weight", "bn1.bias")

	// ADM needs its architecture; the error says which registered ones match (none here).
	_, err = Run(ctx, Options{Family: "adm", Input: "testdata/adm_tiny.pt", Out: out})
	wantError(t, err, "needs its architecture", "adm_256x256_uncond")
	_, err = Run(ctx, Options{Family: "adm", Arch: "adm_tiny", Input: "testdata/adm_tiny.pt", Out: out})
	wantError(t, err, "adm_tiny.pt", "not a adm_tiny UNet", "input_blocks")

	// Missing tensors name our variables and the keys looked for.
	st, _, err := readSafetensors("testdata/resnet_basic.safetensors")
	if err != nil {
		t.Fatal(err)
	}
	delete(st, "layer2.0.bn1.running_var")
	delete(st, "layer3.0.conv2.weight")
	partial := filepath.Join(tmp, "partial.safetensors")
	if err := writeSafetensors(partial, st); err != nil {
		t.Fatal(err)
	}
	_, err = Run(ctx, Options{Family: "resnet", Input: partial, Out: out})
	wantError(t, err, "partial.safetensors", "2 variables", "layer2/block0/bn1/running_var (key layer2.0.bn1.running_var)",
		"layer3/block0/conv2/weights (key layer3.0.conv2.weight)", "Skip")
	if _, err := os.Stat(out); err == nil {
		t.Errorf("a failed conversion wrote %s", out)
	}

	// A nested dict that is not there: the error lists the keys that are.
	_, err = Load("testdata/resnet_basic.pth", "model_ema")
	wantError(t, err, "resnet_basic.pth", `no key "model_ema"`, `"state_dict"`, `"epoch"`)

	// A truncated checkpoint names the file.
	data, err := os.ReadFile("testdata/resnet_basic.pth")
	if err != nil {
		t.Fatal(err)
	}
	truncated := filepath.Join(tmp, "truncated.pth")
	if err := os.WriteFile(truncated, data[:len(data)/2], 0o644); err != nil {
		t.Fatal(err)
	}
	_, err = Load(truncated, "")
	wantError(t, err, "truncated.pth")
	legacy, err := os.ReadFile("testdata/resnet_bottleneck.pth")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(truncated, legacy[:len(legacy)-100], 0o644); err != nil {
		t.Fatal(err)
	}
	_, err = Load(truncated, "")
	wantError(t, err, "truncated.pth", "truncated")

	// Not a checkpoint at all.
	junk := filepath.Join(tmp, "junk.pt")
	if err := os.WriteFile(junk, []byte("hello, world"), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err = Load(junk, "")
	wantError(t, err, "junk.pt", "not a PyTorch checkpoint")

	// Neither a file nor a catalogue name.
	_, err = Run(ctx, Options{Input: "no-such-model", Out: out})
	wantError(t, err, "no-such-model", "neither a file nor a catalogue name", "resnet50.tv_in1k")
}

// TestLoadReportsNesting checks the nested state dict found in a training checkpoint and the
// non-tensor entries around it (an argparse.Namespace, a numpy scalar).
func TestLoadReportsNesting(t *testing.T) {
	sd, err := Load("testdata/resnet_basic.pth", "")
	if err != nil {
		t.Fatal(err)
	}
	defer sd.Close()
	if sd.Nested != "state_dict" || len(sd.Alternatives) != 0 || !strings.HasPrefix(sd.Keys[0], "module.") {
		t.Errorf("nested %q, alternatives %v, first key %q", sd.Nested, sd.Alternatives, sd.Keys[0])
	}
	explicit, err := Load("testdata/resnet_basic.pth", "state_dict")
	if err != nil {
		t.Fatal(err)
	}
	defer explicit.Close()
	if !slices.Equal(explicit.Keys, sd.Keys) {
		t.Errorf("explicit nesting gives other keys")
	}
}
