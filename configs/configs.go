// Package configs holds one config file per experiment of the paper and per demo (the *.conf
// files beside this one, embedded in the binary) and the code that applies them.
//
// A config file is lines of `key = value`; `#` starts a comment. The comment at the top of each
// file gives the exact command that runs it. Values are typed by the experiment's defaults: an
// unknown key, or a value of the wrong type, is an error naming the file, line and key.
//
// Hyper-parameters live in the model store (GoMLX's model.Store params), so every checkpoint
// stores them. Precedence, lowest first: the experiment's defaults, the values restored from a
// checkpoint, the config file, then --set key=value flags.
package configs

import (
	"bufio"
	"embed"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"

	"github.com/gomlx/gomlx/ml/model"
)

//go:embed *.conf
var files embed.FS

// Setting is one key = value with where it came from ("configs/x.conf:3" or "--set").
type Setting struct {
	Key, Value, Origin string
}

// Names lists the embedded configs (without ".conf").
func Names() []string {
	entries, _ := files.ReadDir(".")
	var names []string
	for _, e := range entries {
		names = append(names, strings.TrimSuffix(e.Name(), ".conf"))
	}
	sort.Strings(names)
	return names
}

// Load reads a config given as a file path or as the name of an embedded config.
func Load(nameOrPath string) ([]Setting, error) {
	if data, err := os.ReadFile(nameOrPath); err == nil {
		return Parse(string(data), nameOrPath)
	} else if strings.ContainsRune(nameOrPath, filepath.Separator) || strings.HasSuffix(nameOrPath, ".conf") {
		return nil, fmt.Errorf("config %s: %w", nameOrPath, err)
	}
	data, err := files.ReadFile(nameOrPath + ".conf")
	if err != nil {
		return nil, fmt.Errorf("unknown config %q: not a file, and the embedded configs are %s", nameOrPath, strings.Join(Names(), ", "))
	}
	return Parse(string(data), "configs/"+nameOrPath+".conf")
}

// Text returns the text of an embedded config.
func Text(name string) (string, error) {
	data, err := files.ReadFile(name + ".conf")
	return string(data), err
}

// Parse reads config text; origin names it in errors.
func Parse(text, origin string) ([]Setting, error) {
	var out []Setting
	sc := bufio.NewScanner(strings.NewReader(text))
	line := 0
	for sc.Scan() {
		line++
		s := sc.Text()
		if i := strings.IndexByte(s, '#'); i >= 0 {
			s = s[:i]
		}
		s = strings.TrimSpace(s)
		if s == "" {
			continue
		}
		k, v, ok := strings.Cut(s, "=")
		if !ok || strings.TrimSpace(k) == "" {
			return nil, fmt.Errorf("%s:%d: want `key = value`, got %q", origin, line, s)
		}
		out = append(out, Setting{Key: strings.TrimSpace(k), Value: strings.TrimSpace(v), Origin: fmt.Sprintf("%s:%d", origin, line)})
	}
	return out, nil
}

// ParseSet reads --set flags (key=value).
func ParseSet(flags []string) ([]Setting, error) {
	var out []Setting
	for _, f := range flags {
		k, v, ok := strings.Cut(f, "=")
		if !ok || strings.TrimSpace(k) == "" {
			return nil, fmt.Errorf("--set %q: want key=value", f)
		}
		out = append(out, Setting{Key: strings.TrimSpace(k), Value: strings.TrimSpace(v), Origin: "--set"})
	}
	return out, nil
}

// SetDefaults sets each default that the store does not have yet (values restored from a
// checkpoint are kept).
func SetDefaults(store *model.Store, defaults map[string]any) {
	for k, v := range defaults {
		if _, found := store.GetParam("/" + k); !found {
			store.SetParam("/"+k, v)
		}
	}
}

// Apply sets the settings into the store, converting each value to the type of the key's
// default. Unknown keys and bad values are errors naming the setting's origin.
func Apply(store *model.Store, defaults map[string]any, settings []Setting) error {
	for _, s := range settings {
		def, ok := defaults[s.Key]
		if !ok {
			return fmt.Errorf("%s: unknown setting %q; known settings are %s", s.Origin, s.Key, strings.Join(sortedKeys(defaults), ", "))
		}
		v, err := convert(s.Value, def)
		if err != nil {
			return fmt.Errorf("%s: %s = %q: %v", s.Origin, s.Key, s.Value, err)
		}
		store.SetParam("/"+s.Key, v)
	}
	return nil
}

func convert(value string, like any) (any, error) {
	switch like.(type) {
	case int:
		return strconv.Atoi(value)
	case int64:
		return strconv.ParseInt(value, 10, 64)
	case float64:
		return strconv.ParseFloat(value, 64)
	case bool:
		return strconv.ParseBool(value)
	case string:
		return strings.Trim(value, `"`), nil
	case []int:
		var out []int
		for _, f := range splitList(value) {
			n, err := strconv.Atoi(f)
			if err != nil {
				return nil, fmt.Errorf("want a comma-separated list of integers")
			}
			out = append(out, n)
		}
		return out, nil
	case []float64:
		var out []float64
		for _, f := range splitList(value) {
			n, err := strconv.ParseFloat(f, 64)
			if err != nil {
				return nil, fmt.Errorf("want a comma-separated list of numbers")
			}
			out = append(out, n)
		}
		return out, nil
	case []string:
		return splitList(value), nil
	}
	return nil, fmt.Errorf("unsupported setting type %T", like)
}

func splitList(s string) []string {
	s = strings.Trim(strings.TrimSpace(s), "[]")
	if s == "" {
		return nil
	}
	var out []string
	for _, f := range strings.Split(s, ",") {
		out = append(out, strings.TrimSpace(f))
	}
	return out
}

func sortedKeys(m map[string]any) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// Get returns the setting key from the store. A missing key or another type is a programming
// error (defaults are always set first): it panics naming the key.
func Get[T any](store *model.Store, key string) T {
	v, found := store.GetParam("/" + key)
	if !found {
		panic(fmt.Sprintf("setting %q is not set (missing from the experiment's defaults?)", key))
	}
	t, ok := v.(T)
	if !ok {
		var zero T
		panic(fmt.Sprintf("setting %q is %T (%v), want %T", key, v, v, zero))
	}
	return t
}

// Format lists the settings of the defaults' keys as they are in the store, one per line.
func Format(store *model.Store, defaults map[string]any) string {
	var b strings.Builder
	for _, k := range sortedKeys(defaults) {
		v, _ := store.GetParam("/" + k)
		fmt.Fprintf(&b, "%s = %v\n", k, formatValue(v))
	}
	return b.String()
}

func formatValue(v any) string {
	switch x := v.(type) {
	case []int:
		s := make([]string, len(x))
		for i, n := range x {
			s[i] = strconv.Itoa(n)
		}
		return strings.Join(s, ",")
	case []float64:
		s := make([]string, len(x))
		for i, n := range x {
			s[i] = strconv.FormatFloat(n, 'g', -1, 64)
		}
		return strings.Join(s, ",")
	case []string:
		return strings.Join(x, ",")
	}
	return fmt.Sprint(v)
}

// NewStore is a store with the defaults, then the settings, then the key=value overrides.
func NewStore(defaults map[string]any, settings []Setting, set ...string) (*model.Store, error) {
	overrides, err := ParseSet(set)
	if err != nil {
		return nil, err
	}
	store := model.NewStore()
	SetDefaults(store, defaults)
	if err := Apply(store, defaults, append(append([]Setting{}, settings...), overrides...)); err != nil {
		return nil, err
	}
	if err := Check(store, defaults); err != nil {
		return nil, err
	}
	return store, nil
}
