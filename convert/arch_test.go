package convert

import (
	"context"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/dreamteacher-go/dreamteacher/internal/safetensors"
	"github.com/dreamteacher-go/dreamteacher/models/adm"
	"github.com/dreamteacher-go/dreamteacher/models/backbones"
	"github.com/dreamteacher-go/dreamteacher/models/backbones/convnext"
	"github.com/dreamteacher-go/dreamteacher/models/backbones/resnet"
)

// syntheticStateDict makes a state dict with the keys and PyTorch shapes a plan's targets read
// (values are never read), plus extra keys.
func syntheticStateDict(targets []target, extra map[string][]int) *StateDict {
	sd := &StateDict{Path: "synthetic.pth", Tensors: map[string]*Tensor{}}
	add := func(key string, shape []int) {
		sd.Keys = append(sd.Keys, key)
		sd.Tensors[key] = &Tensor{Key: key, DType: "F32", Shape: shape, file: sd.Path}
	}
	for _, tg := range targets {
		shape := slices.Clone(tg.shape)
		for i, p := range tg.perm {
			shape[p] = tg.shape[i]
		}
		add(tg.key, shape)
	}
	for k, s := range extra {
		add(k, s)
	}
	return sd
}

// TestRegisteredArchitectures builds the plan of every registered ResNet and ConvNeXt from a
// synthetic torchvision/timm-shaped state dict: the architecture is recognised from the keys
// and shapes alone, and the parameter count with the 1000-class head is torchvision's/timm's.
func TestRegisteredArchitectures(t *testing.T) {
	for _, famName := range []string{"resnet", "convnext"} {
		fam := families[famName]
		for _, arch := range fam.archs() {
			t.Run(arch, func(t *testing.T) {
				start := time.Now()
				var targets []target
				var err error
				withHead := backbones.Options{NumClasses: 1000}
				if famName == "resnet" {
					targets, err = resnetTargets(resnet.Configs[arch], withHead)
				} else {
					targets, err = convnextTargets(convnext.Configs[arch], withHead)
				}
				if err != nil {
					t.Fatal(err)
				}
				sd := syntheticStateDict(targets, map[string][]int{"bn1.num_batches_tracked": {}})
				ck, err := fam.canonicalize(sd, "")
				if err != nil {
					t.Fatal(err)
				}
				p2, err := fam.plan(Options{}, ck)
				if err != nil {
					t.Fatal(err)
				}
				if p2.arch != arch {
					t.Errorf("recognised as %q", p2.arch)
				}
				var params int
				for _, tg := range p2.targets {
					if tg.trainable {
						n := 1
						for _, d := range tg.shape {
							n *= d
						}
						params += n
					}
				}
				entry, err := backbones.Get(arch)
				if err != nil {
					t.Fatal(err)
				}
				if params != entry.ReferenceCount {
					t.Errorf("%d parameters, %s has %d", params, entry.Reference, entry.ReferenceCount)
				}
				t.Logf("%d parameters, planned in %s", params, time.Since(start))
			})
		}
	}
}

// TestADMArchitectureHint converts a synthetic state dict shaped as the official 256x256
// unconditional model: without an architecture the error names the registered configurations
// that match; with it, every parameter is planned.
func TestADMArchitectureHint(t *testing.T) {
	cfg := adm.Configs["adm_256x256_uncond"]
	var targets []target
	for _, p := range adm.TorchParams(cfg) {
		targets = append(targets, target{key: p.Key, shape: p.TorchShape})
	}
	sd := syntheticStateDict(targets, nil)
	ck, err := admFamily.canonicalize(sd, "")
	if err != nil {
		t.Fatal(err)
	}
	_, err = admFamily.plan(Options{}, ck)
	wantError(t, err, "needs its architecture", "match adm_256x256_lsun, adm_256x256_uncond")
	p, err := admFamily.plan(Options{Arch: "adm_256x256_uncond"}, ck)
	if err != nil {
		t.Fatal(err)
	}
	if len(p.targets) != len(targets) {
		t.Errorf("%d targets for %d parameters", len(p.targets), len(targets))
	}
	_, err = admFamily.plan(Options{Arch: "adm_bdd100k"}, ck)
	wantError(t, err, "not a adm_bdd100k UNet", "the checkpoint matches adm_256x256_lsun, adm_256x256_uncond")
}

// TestPrefixDetection reads an mmseg-style checkpoint: the backbone's keys under "backbone.",
// a decode head beside it. The prefix is found from the ResNet's keys, the head is unused; an
// explicit prefix that is not there is an error.
func TestPrefixDetection(t *testing.T) {
	st, _, err := readSafetensors("testdata/resnet_basic.safetensors")
	if err != nil {
		t.Fatal(err)
	}
	mm := map[string]safetensors.Tensor{}
	for k, v := range st {
		mm["backbone."+k] = v
	}
	mm["decode_head.conv_seg.weight"] = st["fc.weight"]
	file := filepath.Join(t.TempDir(), "mmseg.safetensors")
	if err := writeSafetensors(file, mm); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(t.TempDir(), "out.safetensors")
	rep, err := Run(context.Background(), Options{Family: "resnet", Input: file, Out: out})
	if err != nil {
		t.Fatal(err)
	}
	if rep.Prefix != "backbone." || !slices.Contains(rep.Unused, "decode_head.conv_seg.weight") || rep.Variables == 0 {
		t.Errorf("prefix %q, unused %v", rep.Prefix, rep.Unused)
	}
	if _, err := Run(context.Background(), Options{Family: "resnet", Input: file, Out: out, Prefix: "backbone."}); err != nil {
		t.Errorf("explicit prefix: %v", err)
	}
	_, err = Run(context.Background(), Options{Family: "resnet", Input: file, Out: out, Prefix: "module."})
	wantError(t, err, "mmseg.safetensors", `under the prefix "module."`)
}
