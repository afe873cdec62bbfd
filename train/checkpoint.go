package train

import (
	"encoding/binary"
	"encoding/json"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/dreamteacher-go/dreamteacher/internal/safetensors"
	"github.com/gomlx/compute/dtypes"
	"github.com/gomlx/compute/dtypes/bfloat16"
	"github.com/gomlx/compute/dtypes/float16"
	"github.com/gomlx/compute/shapes"
	"github.com/gomlx/gomlx/core/tensors"
	"github.com/gomlx/gomlx/ml/model"
)

// A checkpoint is one safetensors file, <dir>/ckpt-<step>.safetensors, holding every variable
// of the store (weights, optimiser state, running statistics, EMA, RNG state, step) under its
// scope path without the leading "/", and in its metadata the step, the hyper-parameters of
// the store (typed JSON) and the paths of the non-trainable variables. It is written
// atomically (temporary file, fsync, rename).
const (
	checkpointFormat = "dreamteacher-go/1"
	metaFormat       = "format"
	metaStep         = "step"
	metaParams       = "params"
	metaFrozen       = "non_trainable"
)

var checkpointName = regexp.MustCompile(`^ckpt-(\d+)\.safetensors$`)

// Checkpoint identifies a saved checkpoint.
type Checkpoint struct {
	Path string
	Step int64
	Meta map[string]string // includes the caller's extra metadata
}

// Save writes the store's variables and parameters as the checkpoint of step in dir (created if
// needed), with extra metadata, then deletes all but the newest keep checkpoints (keep <= 0
// keeps all; the one just written is never deleted). Variables under the exclude scopes (e.g. a
// frozen teacher loaded from its own checkpoint) are not saved. A variable holding a NaN or an
// Inf is an error naming it, and nothing is written: a checkpoint is always one to resume from.
func Save(store *model.Store, dir string, step int64, extra map[string]string, keep int, exclude ...string) (string, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", fmt.Errorf("checkpoint folder: %w", err)
	}
	st := map[string]safetensors.Tensor{}
	var frozen []string
	for v := range store.IterVariables() {
		if underAny(v.Path(), exclude) {
			continue
		}
		value, err := v.Value()
		if err != nil {
			return "", fmt.Errorf("checkpoint: variable %s has no value: %w", v.Path(), err)
		}
		t, err := ToSafetensor(value)
		if err != nil {
			return "", fmt.Errorf("checkpoint: variable %s: %w", v.Path(), err)
		}
		if n := NonFinite(t); n > 0 {
			return "", fmt.Errorf("checkpoint of step %d not written: variable %s holds %d non-finite values", step, v.Path(), n)
		}
		st[strings.TrimPrefix(v.Path(), "/")] = t
		if !v.Trainable {
			frozen = append(frozen, v.Path())
		}
	}
	settings := map[string]any{}
	for key, value := range store.IterParams() {
		settings[key] = value
	}
	p := filepath.Join(dir, fmt.Sprintf("ckpt-%08d.safetensors", step))
	if err := WriteCheckpoint(p, st, frozen, settings, step, extra); err != nil {
		return "", err
	}
	if keep > 0 {
		all, err := List(dir)
		if err != nil {
			return p, err
		}
		for i := 0; i < len(all)-keep; i++ {
			if all[i].Path == p {
				continue // older checkpoints with higher step numbers must not push out the new one
			}
			if err := os.Remove(all[i].Path); err != nil {
				return p, fmt.Errorf("removing old checkpoint: %w", err)
			}
		}
	}
	return p, nil
}

// NonFinite counts the NaN and Inf values of a floating-point safetensor (0 for other dtypes).
func NonFinite(t safetensors.Tensor) int {
	n := 0
	switch t.DType {
	case "F32":
		for i := 0; i+4 <= len(t.Data); i += 4 {
			// An exponent of all ones is Inf or NaN.
			if binary.LittleEndian.Uint32(t.Data[i:])&0x7f800000 == 0x7f800000 {
				n++
			}
		}
	case "F64":
		for i := 0; i+8 <= len(t.Data); i += 8 {
			if binary.LittleEndian.Uint64(t.Data[i:])&0x7ff0000000000000 == 0x7ff0000000000000 {
				n++
			}
		}
	case "F16":
		for i := 0; i+2 <= len(t.Data); i += 2 {
			if binary.LittleEndian.Uint16(t.Data[i:])&0x7c00 == 0x7c00 {
				n++
			}
		}
	case "BF16":
		for i := 0; i+2 <= len(t.Data); i += 2 {
			if binary.LittleEndian.Uint16(t.Data[i:])&0x7f80 == 0x7f80 {
				n++
			}
		}
	}
	return n
}

// WriteCheckpoint writes a checkpoint file (atomically): the tensors by variable path (without
// the leading "/"), the paths of the non-trainable ones, the settings (hyper-parameters by
// path, e.g. "/adm"; values of unsupported types are left out), the step and extra metadata.
// Save uses it for a store; convert for foreign weights.
func WriteCheckpoint(path string, tensors map[string]safetensors.Tensor, frozen []string, settings map[string]any, step int64, extra map[string]string) error {
	frozen = append([]string{}, frozen...)
	sort.Strings(frozen)
	params, err := encodeSettings(settings)
	if err != nil {
		return err
	}
	frozenJSON, _ := json.Marshal(frozen)
	meta := map[string]string{}
	for k, v := range extra {
		meta[k] = v
	}
	meta[metaFormat] = checkpointFormat
	meta[metaStep] = strconv.FormatInt(step, 10)
	meta[metaParams] = params
	meta[metaFrozen] = string(frozenJSON)
	return safetensors.WriteFile(path, tensors, meta)
}

// List returns the checkpoints in dir, oldest first (none if dir does not exist).
func List(dir string) ([]Checkpoint, error) {
	entries, err := os.ReadDir(dir)
	if os.IsNotExist(err) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var out []Checkpoint
	for _, e := range entries {
		m := checkpointName.FindStringSubmatch(e.Name())
		if m == nil {
			continue
		}
		step, _ := strconv.ParseInt(m[1], 10, 64)
		out = append(out, Checkpoint{Path: filepath.Join(dir, e.Name()), Step: step})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Step < out[j].Step })
	return out, nil
}

// Latest returns the newest checkpoint in dir; ok is false if there is none.
func Latest(dir string) (c Checkpoint, ok bool, err error) {
	all, err := List(dir)
	if err != nil || len(all) == 0 {
		return Checkpoint{}, false, err
	}
	return all[len(all)-1], true, nil
}

// Restore loads every variable and parameter of the checkpoint at path into store, creating the
// variables that do not exist (as float32 where an export wrote them in half precision);
// floating-point values are converted to an existing variable's dtype, and another shape or a
// non-float dtype mismatch is an error naming the variable. Parameters already set in the store
// are overwritten by the checkpoint's; callers apply command-line overrides after Restore.
func Restore(store *model.Store, path string) (Checkpoint, error) {
	st, meta, err := safetensors.ReadFile(path)
	if err != nil {
		return Checkpoint{}, err
	}
	if meta[metaFormat] != checkpointFormat {
		return Checkpoint{}, fmt.Errorf("%s: not a dreamteacher-go checkpoint (format %q)", path, meta[metaFormat])
	}
	var frozen []string
	if err := json.Unmarshal([]byte(meta[metaFrozen]), &frozen); err != nil {
		return Checkpoint{}, fmt.Errorf("%s: corrupt %s metadata: %v", path, metaFrozen, err)
	}
	isFrozen := map[string]bool{}
	for _, p := range frozen {
		isFrozen[p] = true
	}
	for name, t := range st {
		if err := setVariable(store, "/"+name, t, !isFrozen["/"+name]); err != nil {
			return Checkpoint{}, fmt.Errorf("%s: %w", path, err)
		}
	}
	if err := decodeParams(store, meta[metaParams]); err != nil {
		return Checkpoint{}, fmt.Errorf("%s: %w", path, err)
	}
	step, _ := strconv.ParseInt(meta[metaStep], 10, 64)
	return Checkpoint{Path: path, Step: step, Meta: meta}, nil
}

// ReadSettings returns the hyper-parameters stored in the checkpoint at path (the settings of
// the run that wrote it, keys without the leading "/"), reading only its header.
func ReadSettings(path string) (map[string]any, error) {
	meta, err := safetensors.ReadMetadata(path)
	if err != nil {
		return nil, err
	}
	if meta[metaFormat] != checkpointFormat {
		return nil, fmt.Errorf("%s: not a dreamteacher-go checkpoint (format %q)", path, meta[metaFormat])
	}
	scratch := model.NewStore()
	if err := decodeParams(scratch, meta[metaParams]); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	out := map[string]any{}
	for k, v := range scratch.IterParams() {
		out[strings.TrimPrefix(k, "/")] = v
	}
	return out, nil
}

// LoadSpec says which part of a checkpoint LoadScope loads, and where.
type LoadSpec struct {
	From string   // scope in the checkpoint, e.g. "/student/backbone"
	To   string   // scope in the store, e.g. "/model/backbone" (default: From)
	Skip []string // path patterns (path.Match, relative to From) not to load, e.g. "head/*"
	// Strict requires every variable already in the store under To to be in the checkpoint.
	Strict bool
}

// LoadScope copies the variables under spec.From in the checkpoint at path into the store under
// spec.To — for instance a distilled backbone into a fine-tuning model. Only model weights and
// running statistics are loaded (never optimiser state). It fails loudly, listing the names,
// when the scope is empty, when a variable has another shape than the store's, or (Strict) when
// the store has variables the checkpoint lacks.
func LoadScope(store *model.Store, ckptPath string, spec LoadSpec) (loaded int, err error) {
	st, meta, err := safetensors.ReadFile(ckptPath)
	if err != nil {
		return 0, err
	}
	var frozen []string
	_ = json.Unmarshal([]byte(meta[metaFrozen]), &frozen)
	isFrozen := map[string]bool{}
	for _, p := range frozen {
		isFrozen[p] = true
	}
	from := strings.Trim(spec.From, "/")
	to := strings.Trim(spec.To, "/")
	if spec.To == "" {
		to = from
	}
	var problems []string
	found := map[string]bool{}
	for name, t := range st {
		rel, ok := strings.CutPrefix(name, from+"/")
		if from == "" {
			rel, ok = name, true
		}
		if !ok || strings.HasPrefix(name, "optimizer/") {
			continue
		}
		if Skipped(rel, spec.Skip) {
			continue
		}
		dest := "/" + strings.Trim(to+"/"+rel, "/")
		found[dest] = true
		if err := setVariable(store, dest, t, !isFrozen["/"+name]); err != nil {
			problems = append(problems, err.Error())
			continue
		}
		loaded++
	}
	if spec.Strict {
		for v := range store.IterVariables() {
			rel, ok := strings.CutPrefix(strings.TrimPrefix(v.Path(), "/"), to+"/")
			if ok && !found[v.Path()] && !Skipped(rel, spec.Skip) {
				problems = append(problems, fmt.Sprintf("variable %s is not in the checkpoint under %q", v.Path(), spec.From))
			}
		}
	}
	if loaded == 0 && len(problems) == 0 {
		problems = append(problems, fmt.Sprintf("no variables under scope %q (the checkpoint has: %s)", spec.From, topScopes(st)))
	}
	if len(problems) > 0 {
		sort.Strings(problems)
		return loaded, fmt.Errorf("loading %s from %s:\n  %s", spec.From, ckptPath, strings.Join(problems, "\n  "))
	}
	return loaded, nil
}

// underAny reports whether path is under one of the scopes.
func underAny(path string, scopes []string) bool {
	for _, s := range scopes {
		if strings.HasPrefix(path, strings.TrimSuffix(s, "/")+"/") {
			return true
		}
	}
	return false
}

// Skipped reports whether a variable path (relative to the loaded scope) matches one of the
// LoadSpec.Skip patterns: path.Match patterns, where "dir/*" also covers everything under dir.
func Skipped(rel string, patterns []string) bool {
	for _, p := range patterns {
		if ok, _ := path.Match(p, rel); ok {
			return true
		}
		if strings.HasSuffix(p, "/*") && strings.HasPrefix(rel, strings.TrimSuffix(p, "*")) {
			return true
		}
	}
	return false
}

func topScopes(st map[string]safetensors.Tensor) string {
	set := map[string]bool{}
	for name := range st {
		parts := strings.SplitN(name, "/", 3)
		if len(parts) > 2 {
			set["/"+parts[0]+"/"+parts[1]] = true
		} else {
			set["/"+parts[0]] = true
		}
	}
	var out []string
	for s := range set {
		out = append(out, s)
	}
	sort.Strings(out)
	return strings.Join(out, ", ")
}

// setVariable sets (or creates) the store variable at fullPath from a safetensor. A floating-point
// tensor of another precision than an existing variable's (an exported half-precision teacher
// loaded into float32) is converted to the variable's dtype.
func setVariable(store *model.Store, fullPath string, st safetensors.Tensor, trainable bool) error {
	t, err := FromSafetensor(st)
	if err != nil {
		return fmt.Errorf("variable %s: %w", fullPath, err)
	}
	if v := store.GetVariable(fullPath); v != nil {
		if v.Shape().DType != t.DType() && v.Shape().DType.IsFloat() && t.DType().IsFloat() &&
			slices.Equal(v.Shape().Dimensions, t.Shape().Dimensions) {
			if t, err = castFloat(t, v.Shape().DType); err != nil {
				return fmt.Errorf("variable %s: %w", fullPath, err)
			}
		}
		if !v.Shape().Equal(t.Shape()) {
			return fmt.Errorf("variable %s: the checkpoint has shape %s, the model %s", fullPath, t.Shape(), v.Shape())
		}
		return v.SetValue(t)
	}
	if dt := t.DType(); dt == dtypes.Float16 || dt == dtypes.BFloat16 {
		// Only `export` writes half precision; the models compute in float32.
		if t, err = castFloat(t, dtypes.Float32); err != nil {
			return fmt.Errorf("variable %s: %w", fullPath, err)
		}
	}
	v, err := store.CreateVariable(fullPath, t)
	if err != nil {
		return err
	}
	v.SetTrainable(trainable)
	return nil
}

var stDTypes = map[dtypes.DType]string{
	dtypes.Float32: "F32", dtypes.Float64: "F64", dtypes.Float16: "F16", dtypes.BFloat16: "BF16",
	dtypes.Int64: "I64", dtypes.Int32: "I32", dtypes.Int16: "I16", dtypes.Int8: "I8",
	dtypes.Uint64: "U64", dtypes.Uint32: "U32", dtypes.Uint16: "U16", dtypes.Uint8: "U8", dtypes.Bool: "BOOL",
}

// castFloat converts a floating-point tensor (float16, bfloat16, float32 or float64) to another of
// those dtypes, element by element (rounding to nearest even when narrowing).
func castFloat(t *tensors.Tensor, to dtypes.DType) (*tensors.Tensor, error) {
	var vals []float64
	switch t.DType() {
	case dtypes.Float16:
		for _, x := range tensors.MustCopyFlatData[float16.Float16](t) {
			vals = append(vals, x.Float64())
		}
	case dtypes.BFloat16:
		for _, x := range tensors.MustCopyFlatData[bfloat16.BFloat16](t) {
			vals = append(vals, x.Float64())
		}
	case dtypes.Float32:
		for _, x := range tensors.MustCopyFlatData[float32](t) {
			vals = append(vals, float64(x))
		}
	case dtypes.Float64:
		vals = tensors.MustCopyFlatData[float64](t)
	default:
		return nil, fmt.Errorf("cannot convert %s to %s", t.DType(), to)
	}
	dims := t.Shape().Dimensions
	switch to {
	case dtypes.Float16:
		out := make([]float16.Float16, len(vals))
		for i, x := range vals {
			out[i].SetFloat64(x)
		}
		return tensors.FromFlatDataAndDimensions(out, dims...), nil
	case dtypes.BFloat16:
		out := make([]bfloat16.BFloat16, len(vals))
		for i, x := range vals {
			out[i] = bfloat16.FromFloat64(x)
		}
		return tensors.FromFlatDataAndDimensions(out, dims...), nil
	case dtypes.Float32:
		out := make([]float32, len(vals))
		for i, x := range vals {
			out[i] = float32(x)
		}
		return tensors.FromFlatDataAndDimensions(out, dims...), nil
	case dtypes.Float64:
		return tensors.FromFlatDataAndDimensions(vals, dims...), nil
	}
	return nil, fmt.Errorf("cannot convert %s to %s", t.DType(), to)
}

// Export writes the variables of the checkpoint at src under the given scopes (e.g. "/ema/unet",
// a diffusion teacher's EMA weights) to dst, floating-point ones converted to dtype (e.g.
// float16, to ship a small teacher; zero: unchanged), with the checkpoint's metadata (settings,
// command, step), so that it loads wherever the original does (LoadScope converts the precision
// back to the model's). No optimiser state, nothing outside the scopes. It returns the number of
// tensors written; a value that does not fit dtype (a float16 overflow) is an error naming it.
func Export(src, dst string, scopes []string, dtype dtypes.DType) (int, error) {
	st, meta, err := safetensors.ReadFile(src)
	if err != nil {
		return 0, err
	}
	out := map[string]safetensors.Tensor{}
	for name, t := range st {
		if !underAny("/"+name, scopes) {
			continue
		}
		if dtype != dtypes.InvalidDType && safetensors.IsFloat(t.DType) && t.DType != stDTypes[dtype] {
			tt, err := FromSafetensor(t)
			if err == nil {
				tt, err = castFloat(tt, dtype)
			}
			if err == nil {
				t, err = ToSafetensor(tt)
			}
			if err != nil {
				return 0, fmt.Errorf("%s: tensor %s: %w", src, name, err)
			}
			if n := NonFinite(t); n > 0 {
				return 0, fmt.Errorf("%s: tensor %s: %d values do not fit %s", src, name, n, dtype)
			}
		}
		out[name] = t
	}
	if len(out) == 0 {
		return 0, fmt.Errorf("%s: no variables under %s (the checkpoint has: %s)", src, strings.Join(scopes, ", "), topScopes(st))
	}
	meta["exported_from"] = filepath.Base(src)
	return len(out), safetensors.WriteFile(dst, out, meta)
}

// ToSafetensor converts a tensor to its safetensors form (a copy of its bytes).
func ToSafetensor(t *tensors.Tensor) (safetensors.Tensor, error) {
	name, ok := stDTypes[t.DType()]
	if !ok {
		return safetensors.Tensor{}, fmt.Errorf("dtype %s cannot be saved", t.DType())
	}
	var data []byte
	err := t.ConstBytes(func(b []byte) { data = append([]byte(nil), b...) })
	return safetensors.Tensor{DType: name, Shape: append([]int{}, t.Shape().Dimensions...), Data: data}, err
}

// FromSafetensor converts a safetensors array to a tensor.
func FromSafetensor(st safetensors.Tensor) (*tensors.Tensor, error) {
	for dt, name := range stDTypes {
		if name == st.DType {
			t := tensors.FromShape(shapes.Make(dt, st.Shape...))
			err := t.MutableBytes(func(b []byte) { copy(b, st.Data) })
			return t, err
		}
	}
	return nil, fmt.Errorf("unsupported safetensors dtype %q", st.DType)
}

// typedParam is how a hyper-parameter is stored: JSON loses the difference between int and
// float, which GoMLX's typed getters care about.
type typedParam struct {
	Type  string          `json:"type"`
	Value json.RawMessage `json:"value"`
}

func encodeSettings(settings map[string]any) (string, error) {
	out := map[string]typedParam{}
	for key, value := range settings {
		if !strings.HasPrefix(key, "/") {
			key = "/" + key
		}
		var typ string
		switch value.(type) {
		case int:
			typ = "int"
		case int64:
			typ = "int64"
		case float64:
			typ = "float64"
		case float32:
			typ = "float32"
		case string:
			typ = "string"
		case bool:
			typ = "bool"
		case []int:
			typ = "[]int"
		case []float64:
			typ = "[]float64"
		case []string:
			typ = "[]string"
		default:
			continue // graph-only or unserialisable values are not hyper-parameters
		}
		raw, err := json.Marshal(value)
		if err != nil {
			return "", fmt.Errorf("hyper-parameter %s: %w", key, err)
		}
		out[key] = typedParam{Type: typ, Value: raw}
	}
	b, err := json.Marshal(out)
	return string(b), err
}

func decodeParams(store *model.Store, s string) error {
	if s == "" {
		return nil
	}
	var in map[string]typedParam
	if err := json.Unmarshal([]byte(s), &in); err != nil {
		return fmt.Errorf("corrupt hyper-parameters: %v", err)
	}
	for key, p := range in {
		var v any
		var err error
		switch p.Type {
		case "int":
			v, err = unmarshal[int](p.Value)
		case "int64":
			v, err = unmarshal[int64](p.Value)
		case "float64":
			v, err = unmarshal[float64](p.Value)
		case "float32":
			v, err = unmarshal[float32](p.Value)
		case "string":
			v, err = unmarshal[string](p.Value)
		case "bool":
			v, err = unmarshal[bool](p.Value)
		case "[]int":
			v, err = unmarshal[[]int](p.Value)
		case "[]float64":
			v, err = unmarshal[[]float64](p.Value)
		case "[]string":
			v, err = unmarshal[[]string](p.Value)
		default:
			err = fmt.Errorf("unknown type %q", p.Type)
		}
		if err != nil {
			return fmt.Errorf("hyper-parameter %s: %v", key, err)
		}
		store.SetParam(key, v)
	}
	return nil
}

func unmarshal[T any](raw json.RawMessage) (T, error) {
	var v T
	err := json.Unmarshal(raw, &v)
	return v, err
}

// RemoveStaleTemps deletes the temporary files that an interrupted checkpoint write leaves in
// dir (".ckpt-*.tmp-*", as safetensors.WriteFile names them; other atomic writers of ours use the
// same ".<name>.tmp-*" form) and returns their names. Call it when a run starts, before anything
// writes to dir: a run owns its folder.
func RemoveStaleTemps(dir string) ([]string, error) {
	entries, err := os.ReadDir(dir)
	if os.IsNotExist(err) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var removed []string
	for _, e := range entries {
		if e.IsDir() || !strings.HasPrefix(e.Name(), ".") || !strings.Contains(e.Name(), ".tmp-") {
			continue
		}
		if err := os.Remove(filepath.Join(dir, e.Name())); err != nil {
			return removed, fmt.Errorf("removing a stale temporary file: %w", err)
		}
		removed = append(removed, e.Name())
	}
	return removed, nil
}

// MoveAside moves the files of an earlier run in dir (checkpoints, metrics, result.json, PNGs:
// every entry but earlier "restarted-*" folders) into dir/restarted-<time>/, so that a run started
// over in dir neither mixes with them nor resumes from them, and nothing is lost. It returns
// the new folder, or "" when dir holds nothing.
func MoveAside(dir string) (string, error) {
	entries, err := os.ReadDir(dir)
	if os.IsNotExist(err) {
		return "", nil
	}
	if err != nil {
		return "", err
	}
	var move []string
	for _, e := range entries {
		if !strings.HasPrefix(e.Name(), "restarted-") {
			move = append(move, e.Name())
		}
	}
	if len(move) == 0 {
		return "", nil
	}
	aside := filepath.Join(dir, "restarted-"+time.Now().Format("20060102-150405.000"))
	if err := os.Mkdir(aside, 0o755); err != nil {
		return "", fmt.Errorf("--restart: %w", err)
	}
	for _, name := range move {
		if err := os.Rename(filepath.Join(dir, name), filepath.Join(aside, name)); err != nil {
			return aside, fmt.Errorf("--restart: moving the earlier run aside: %w", err)
		}
	}
	return aside, nil
}
