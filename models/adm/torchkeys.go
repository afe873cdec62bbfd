package adm

import (
	"fmt"
	"strings"
)

// Transform says how a guided-diffusion (PyTorch) parameter's layout maps onto ours.
type Transform int

const (
	// Same layout: norm scales and offsets, biases, the label embedding table.
	Same Transform = iota
	// LinearToInOut: torch.nn.Linear's [out, in] -> our [in, out].
	LinearToInOut
	// ConvOIHWToHWIO: torch.nn.Conv2d's [out, in, kh, kw] -> our [kh, kw, in, out].
	ConvOIHWToHWIO
	// Conv1DToInOut: a kernel-1 torch.nn.Conv1d [out, in, 1] (attention's qkv and proj_out) ->
	// our linear layer's [in, out].
	Conv1DToInOut
)

func (t Transform) String() string {
	switch t {
	case Same:
		return "Same"
	case LinearToInOut:
		return "LinearToInOut"
	case ConvOIHWToHWIO:
		return "ConvOIHWToHWIO"
	case Conv1DToInOut:
		return "Conv1DToInOut"
	}
	return fmt.Sprintf("Transform(%d)", int(t))
}

// permutation returns the source shape seen by the permutation (torch's shape with a trailing
// 1 of Conv1D dropped) and the axis permutation: out axis i is source axis perm[i].
func (t Transform) permutation(torchShape []int) (src []int, perm []int) {
	switch t {
	case LinearToInOut:
		return torchShape, []int{1, 0}
	case ConvOIHWToHWIO:
		return torchShape, []int{2, 3, 1, 0}
	case Conv1DToInOut:
		return torchShape[:2], []int{1, 0}
	}
	perm = make([]int, len(torchShape))
	for i := range perm {
		perm[i] = i
	}
	return torchShape, perm
}

// Shape is our variable's shape for a torch parameter of torchShape.
func (t Transform) Shape(torchShape []int) []int {
	src, perm := t.permutation(torchShape)
	out := make([]int, len(perm))
	for i, p := range perm {
		out[i] = src[p]
	}
	return out
}

// Apply rearranges data, a torch parameter's values in row-major order over torchShape, into
// our layout (row-major over t.Shape(torchShape)).
func Apply[T any](t Transform, data []T, torchShape []int) []T {
	src, perm := t.permutation(torchShape)
	dst := t.Shape(torchShape)
	srcStrides := make([]int, len(src))
	stride := 1
	for i := len(src) - 1; i >= 0; i-- {
		srcStrides[i] = stride
		stride *= src[i]
	}
	if stride != len(data) {
		panic(fmt.Sprintf("adm.Apply: %d values for a torch parameter of shape %v", len(data), torchShape))
	}
	out := make([]T, len(data))
	idx := make([]int, len(dst)) // multi-index into dst
	for k := range out {
		off := 0
		for i, p := range perm {
			off += idx[i] * srcStrides[p]
		}
		out[k] = data[off]
		for i := len(idx) - 1; i >= 0; i-- {
			idx[i]++
			if idx[i] < dst[i] {
				break
			}
			idx[i] = 0
		}
	}
	return out
}

// TorchParam maps one parameter of a guided-diffusion checkpoint onto our variables.
type TorchParam struct {
	Key        string // state_dict key, e.g. "input_blocks.1.0.in_layers.0.weight"
	TorchShape []int
	// Path of our variable relative to the UNet's scope, e.g. "input/level0/block0/res/in_norm/scale".
	Path      string
	Transform Transform
}

// TorchParams lists the parameters of guided-diffusion's UNetModel built with cfg, in its
// state_dict order, with the variable each one maps to.
func TorchParams(cfg Config) []TorchParam {
	var ps []TorchParam
	add := func(key string, shape []int, path string, t Transform) {
		ps = append(ps, TorchParam{Key: key, TorchShape: shape, Path: path, Transform: t})
	}
	linear := func(key, path string, in, out int) {
		add(key+".weight", []int{out, in}, path+"/weights", LinearToInOut)
		add(key+".bias", []int{out}, path+"/biases", Same)
	}
	conv := func(key, path string, in, out, k int) {
		add(key+".weight", []int{out, in, k, k}, path+"/weights", ConvOIHWToHWIO)
		add(key+".bias", []int{out}, path+"/biases", Same)
	}
	norm := func(key, path string, ch int) {
		add(key+".weight", []int{ch}, path+"/scale", Same)
		add(key+".bias", []int{ch}, path+"/offset", Same)
	}
	emb := cfg.TimeEmbedDim()
	res := func(key, path string, in, out int) {
		norm(key+".in_layers.0", path+"/in_norm", in)
		conv(key+".in_layers.2", path+"/in_conv", in, out, 3)
		embOut := out
		if cfg.UseScaleShiftNorm {
			embOut = 2 * out
		}
		linear(key+".emb_layers.1", path+"/emb_proj", emb, embOut)
		norm(key+".out_layers.0", path+"/out_norm", out)
		conv(key+".out_layers.3", path+"/out_conv", out, out, 3)
		if in != out {
			conv(key+".skip_connection", path+"/skip", in, out, 1)
		}
	}
	attn := func(key, path string, ch int) {
		norm(key+".norm", path+"/norm", ch)
		add(key+".qkv.weight", []int{3 * ch, ch, 1}, path+"/qkv/weights", Conv1DToInOut)
		add(key+".qkv.bias", []int{3 * ch}, path+"/qkv/biases", Same)
		add(key+".proj_out.weight", []int{ch, ch, 1}, path+"/proj/weights", Conv1DToInOut)
		add(key+".proj_out.bias", []int{ch}, path+"/proj/biases", Same)
	}

	linear("time_embed.0", "time_embed/linear0", cfg.ModelChannels, emb)
	linear("time_embed.2", "time_embed/linear1", emb, emb)
	if cfg.NumClasses > 0 {
		add("label_emb.weight", []int{cfg.NumClasses, emb}, "label_emb/embeddings", Same)
	}
	for _, s := range cfg.layout() {
		switch s.kind {
		case stepStem:
			conv(s.torch+".0", s.name, s.in, s.out, 3)
		case stepEncoder:
			res(s.torch+".0", s.name+"/res", s.in, s.out)
			if s.attn {
				attn(s.torch+".1", s.name+"/attn", s.out)
			}
		case stepDown:
			switch {
			case cfg.ResblockUpdown:
				res(s.torch+".0", s.name, s.in, s.out)
			case cfg.ConvResample:
				conv(s.torch+".0.op", s.name+"/conv", s.in, s.out, 3)
			}
		case stepMiddle:
			res(s.torch+".0", s.name+"/res0", s.in, s.out)
			attn(s.torch+".1", s.name+"/attn", s.out)
			res(s.torch+".2", s.name+"/res1", s.out, s.out)
		case stepDecoder:
			res(s.torch+".0", s.name+"/res", s.in+s.skip, s.out)
			if s.attn {
				attn(s.torch+".1", s.name+"/attn", s.out)
			}
		case stepUp:
			key := fmt.Sprintf("%s.%d", s.torch, s.torchSub)
			switch {
			case cfg.ResblockUpdown:
				res(key, s.name, s.in, s.out)
			case cfg.ConvResample:
				conv(key+".conv", s.name+"/conv", s.in, s.out, 3)
			}
		}
	}
	norm("out.0", "out/norm", cfg.ModelChannels*cfg.ChannelMult[0])
	conv("out.2", "out/conv", cfg.ModelChannels*cfg.ChannelMult[0], cfg.NetworkOutChannels(), 3)
	return ps
}

// TorchKeyToScope maps a guided-diffusion state_dict key of a UNetModel built with cfg to our
// variable: its path relative to the UNet's scope and the layout transform of its values. A key
// the configuration has no parameter for is an error naming the key. For many keys, build the
// table once with TorchParams.
func TorchKeyToScope(cfg Config, key string) (path string, transform Transform, err error) {
	for _, p := range TorchParams(cfg) {
		if p.Key == key {
			return p.Path, p.Transform, nil
		}
	}
	hint := ""
	if strings.Contains(key, "module.") || strings.HasPrefix(key, "model.") {
		hint = " (strip the wrapper's prefix first)"
	}
	return "", Same, fmt.Errorf("guided-diffusion key %q has no parameter in this ADM configuration%s", key, hint)
}
