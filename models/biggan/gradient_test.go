package biggan

import (
	"strings"
	"testing"

	"github.com/dreamteacher-go/dreamteacher/internal/gradcheck"
	. "github.com/gomlx/gomlx/core/graph"
	"github.com/gomlx/gomlx/core/tensors"
	"github.com/gomlx/gomlx/ml/model"
)

// Spectral norm's power iteration is not differentiated (as in the reference), so in training
// mode, where it runs, finite differences see u and v move with the weights and differ from
// the gradient. Each block is therefore checked twice: in training mode without spectral norm
// (BN with batch statistics) and in eval mode with it (u, v and the BN statistics fixed).
//
// In eval mode the never-trained u and v are random, so σ = uᵀWv is a poor (small) estimate
// and the activations are large: a finite-difference step of 1e-5 keeps the rounding error of
// the loss below the tolerance.
var gradModes = []struct {
	name     string
	training bool
	opts     layerOptions
	check    gradcheck.Options
}{
	{"train-noSN", true, layerOptions{bnEps: 1e-5, noSpectralNorm: true, gammaInit: 0.7}, gradcheck.Options{Training: true}},
	{"eval-SN", false, layerOptions{bnEps: 1e-5, gammaInit: 0.7}, gradcheck.Options{Eps: 1e-5}},
}

// checkGradients runs the gradient check and fails on every tensor but those in zero, whose
// gradient must instead be (numerically) zero: a conv bias followed by a training-mode
// BatchNorm cancels out.
func checkGradients(t *testing.T, opts gradcheck.Options, zero []string, fn gradcheck.Fn, inputs ...*tensors.Tensor) []gradcheck.Result {
	t.Helper()
	opts.AllowZero = len(zero) > 0
	results, _ := gradcheck.Run(opts, fn, inputs...)
	tol := opts.Tol
	if tol == 0 {
		tol = 1e-6
	}
	for _, r := range results {
		isZero := false
		for _, z := range zero {
			isZero = isZero || strings.HasSuffix(r.Name, z)
		}
		switch {
		case isZero && r.Norm > 1e-10:
			t.Errorf("gradient of %s has norm %g, want 0", r.Name, r.Norm)
		case !isZero && r.Norm == 0:
			t.Errorf("gradient of %s is zero everywhere", r.Name)
		case !isZero && r.RelError > tol:
			t.Errorf("gradient of %s: relative error %.3g > %.1g (norm %.4g)", r.Name, r.RelError, tol, r.Norm)
		default:
			t.Logf("gradient of %-40s relative error %.2e (norm %.3g)", r.Name, r.RelError, r.Norm)
		}
	}
	if len(results) == 0 {
		t.Fatal("nothing was checked")
	}
	return results
}

func TestGBlockGradient(t *testing.T) {
	x, cond := gradcheck.RandomTensor(1, 2, 4, 4, 6), gradcheck.RandomTensor(2, 2, 5)
	for _, m := range gradModes {
		var zero []string
		if m.training {
			zero = []string{"/conv1/biases"} // followed by bn2
		}
		t.Run(m.name+"/conditional", func(t *testing.T) {
			checkGradients(t, m.check, zero, func(scope *model.Scope, in []*Node) *Node {
				return gBlock(scope.In("block"), in[0], in[1], 8, m.opts)
			}, x, cond)
		})
		t.Run(m.name+"/plainBN", func(t *testing.T) {
			checkGradients(t, m.check, zero, func(scope *model.Scope, in []*Node) *Node {
				return gBlock(scope.In("block"), in[0], nil, 4, m.opts)
			}, x)
		})
	}
}

func TestDBlockGradient(t *testing.T) {
	img, x := gradcheck.RandomTensor(3, 2, 8, 8, 3), gradcheck.RandomTensor(4, 2, 8, 8, 4)
	for _, m := range gradModes {
		for _, tc := range []struct {
			name          string
			in            *tensors.Tensor
			out           int
			preact, down  bool
			wantsShortcut bool
		}{
			{"first-optimized", img, 8, false, true, true},
			{"preact-down-wider", x, 8, true, true, true},
			{"preact-identity", x, 4, true, false, false},
		} {
			t.Run(m.name+"/"+tc.name, func(t *testing.T) {
				results := checkGradients(t, m.check, nil, func(scope *model.Scope, in []*Node) *Node {
					return dBlock(scope.In("block"), in[0], tc.out, tc.preact, tc.down, m.opts)
				}, tc.in)
				hasShortcut := false
				for _, r := range results {
					hasShortcut = hasShortcut || r.Name == "/block/conv_sc/weights"
				}
				if hasShortcut != tc.wantsShortcut {
					t.Errorf("shortcut conv: %v, want %v", hasShortcut, tc.wantsShortcut)
				}
			})
		}
	}
}

func TestAttentionGradient(t *testing.T) {
	x := gradcheck.RandomTensor(5, 2, 4, 4, 16)
	for _, m := range gradModes {
		t.Run(m.name, func(t *testing.T) {
			checkGradients(t, m.check, nil, func(scope *model.Scope, in []*Node) *Node {
				return attention(scope.In("attention"), in[0], m.opts)
			}, x)
		})
	}
}

// TestGANGradient checks D(G(z, y), y) of a micro conditional configuration end to end (eval
// mode, no spectral norm; the blocks are checked with it above): the class embeddings, the
// hierarchical latent, the projection, attention in both networks.
func TestGANGradient(t *testing.T) {
	cfg := Config{
		Resolution: 8, BottomWidth: 4, NumClasses: 3, DimZ: 4, SharedDim: 3, Hier: true,
		GCh: 8, GChannels: []int{2, 1}, GAttention: []int{8},
		DCh: 8, DChannels: []int{1, 1}, DDownsample: []bool{true, false}, DAttention: []int{4},
		testOptions: &layerOptions{bnEps: 1e-5, noSpectralNorm: true, gammaInit: 0.7},
	}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	z := gradcheck.RandomTensor(6, 2, 4)
	y := tensors.FromValue([]int32{2, 0})
	checkGradients(t, gradcheck.Options{}, nil, func(scope *model.Scope, in []*Node) *Node {
		img := Generate(scope.In(GeneratorScope), in[0], in[1], cfg).Image
		return Discriminate(scope.In(DiscriminatorScope), img, in[1], cfg)
	}, z, y)
}
