package convnext

import (
	"fmt"
	"strconv"
	"strings"
)

// TimmKey maps the path of a ConvNeXt variable, relative to the scope the backbone was built
// under (e.g. "stages/stage0/block2/mlp/fc1/weights"), to the key of the same parameter in a
// timm checkpoint ("stages.0.blocks.2.mlp.fc1.weight"), and returns the permutation of axes that
// turns the checkpoint's tensor into ours (nil when the layouts agree): convolution weights are
// OIHW in PyTorch and HWIO here (permutation 2, 3, 1, 0), linear weights [out, in] in PyTorch and
// [in, out] here (1, 0).
func TimmKey(path string) (key string, perm []int, err error) {
	parts := strings.Split(strings.Trim(path, "/"), "/")
	if len(parts) < 2 {
		return "", nil, fmt.Errorf("convnext: %q is not a ConvNeXt variable path", path)
	}
	bad := func() (string, []int, error) {
		return "", nil, fmt.Errorf("convnext: no timm key for variable %q", path)
	}
	name := parts[len(parts)-1]
	module := parts[:len(parts)-1]
	var keys []string
	kind := "" // "conv", "linear", "norm", "gamma"
	switch {
	case len(module) == 2 && module[0] == "stem":
		switch module[1] {
		case "conv":
			keys, kind = []string{"stem", "0"}, "conv"
		case "norm":
			keys, kind = []string{"stem", "1"}, "norm"
		default:
			return bad()
		}
	case len(module) == 2 && module[0] == "head":
		switch module[1] {
		case "fc":
			kind = "linear"
		case "norm":
			kind = "norm"
		default:
			return bad()
		}
		keys = module
	case len(module) >= 2 && module[0] == "stages":
		s, ok := indexOf(module[1], "stage")
		if !ok {
			return bad()
		}
		keys = []string{"stages", s}
		rest := module[2:]
		switch {
		case len(rest) == 2 && rest[0] == "downsample":
			switch rest[1] {
			case "norm":
				keys, kind = append(keys, "downsample", "0"), "norm"
			case "conv":
				keys, kind = append(keys, "downsample", "1"), "conv"
			default:
				return bad()
			}
		case len(rest) >= 1:
			b, ok := indexOf(rest[0], "block")
			if !ok {
				return bad()
			}
			keys = append(keys, "blocks", b)
			switch strings.Join(rest[1:], "/") {
			case "":
				kind = "gamma"
			case "conv_dw":
				keys, kind = append(keys, "conv_dw"), "conv"
			case "norm":
				keys, kind = append(keys, "norm"), "norm"
			case "mlp/fc1", "mlp/fc2":
				keys, kind = append(keys, rest[1:]...), "linear"
			default:
				return bad()
			}
		default:
			return bad()
		}
	default:
		return bad()
	}

	switch {
	case kind == "gamma" && name == "gamma":
		keys = append(keys, "gamma")
	case kind == "conv" && name == "weights":
		keys, perm = append(keys, "weight"), []int{2, 3, 1, 0}
	case kind == "linear" && name == "weights":
		keys, perm = append(keys, "weight"), []int{1, 0}
	case (kind == "conv" || kind == "linear") && name == "biases":
		keys = append(keys, "bias")
	case kind == "norm" && name == "scale":
		keys = append(keys, "weight")
	case kind == "norm" && name == "offset":
		keys = append(keys, "bias")
	default:
		return bad()
	}
	return strings.Join(keys, "."), perm, nil
}

// indexOf parses "stage3" with prefix "stage" as "3".
func indexOf(s, prefix string) (string, bool) {
	rest, ok := strings.CutPrefix(s, prefix)
	if !ok {
		return "", false
	}
	if _, err := strconv.Atoi(rest); err != nil {
		return "", false
	}
	return rest, true
}
