package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/dreamteacher-go/dreamteacher/configs"
	"github.com/dreamteacher-go/dreamteacher/train"
	"github.com/gomlx/compute"
	"github.com/gomlx/gomlx/ml/model"
)

// setFlag collects repeated --set key=value flags.
type setFlag []string

func (s *setFlag) String() string     { return strings.Join(*s, " ") }
func (s *setFlag) Set(v string) error { *s = append(*s, v); return nil }

// experiment holds the flags every training command shares.
type experiment struct {
	fs       *flag.FlagSet
	backend  *string
	config   *string
	sets     setFlag
	out      *string
	restart  *bool
	defaults map[string]any
}

func newExperiment(name, defaultOut string, defaults map[string]any) *experiment {
	fs, b := flagSet(name)
	e := &experiment{fs: fs, backend: b, defaults: defaults}
	e.config = fs.String("config", "", "experiment config: a name among "+strings.Join(configs.Names(), ", ")+", or a file")
	fs.Var(&e.sets, "set", "override one setting, key=value (repeatable); see --show-settings")
	e.out = fs.String("out", defaultOut, "output folder (checkpoints, metrics.jsonl, PNGs); a run found there resumes")
	e.restart = fs.Bool("restart", false, "ignore checkpoints in --out and start over (they are kept until overwritten)")
	return e
}

// pathSettings are settings naming files or folders that must exist (when set).
var pathSettings = []string{"data", "teacher", "init", "interpreter"}

// prepare parses the flags and builds the store: settings from the defaults, the checkpoint
// found in --out (variables too), the config and --set, in increasing precedence. A missing
// config, a bad setting or a missing path is a usage error naming it.
func (e *experiment) prepare(args []string) (compute.Backend, *model.Store, error) {
	show := e.fs.Bool("show-settings", false, "print the settings (defaults, then --config and --set applied) and exit")
	if err := parse(e.fs, args); err != nil {
		return nil, nil, err
	}
	var settings []configs.Setting
	if *e.config != "" {
		s, err := configs.Load(*e.config)
		if err != nil {
			return nil, nil, usagef("--config: %v", err)
		}
		settings = s
	}
	s, err := configs.ParseSet(e.sets)
	if err != nil {
		return nil, nil, usagef("%v", err)
	}
	settings = append(settings, s...)
	if *show {
		store := model.NewStore()
		configs.SetDefaults(store, e.defaults)
		if err := configs.Apply(store, e.defaults, settings); err != nil {
			return nil, nil, usagef("%v", err)
		}
		fmt.Fprint(stdout, configs.Format(store, e.defaults))
		return nil, nil, flag.ErrHelp
	}
	store := model.NewStore()
	if !*e.restart {
		if ck, ok, err := train.Latest(*e.out); err != nil {
			return nil, nil, err
		} else if ok {
			if _, err := train.Restore(store, ck.Path); err != nil {
				return nil, nil, fmt.Errorf("resuming from %s: %w", ck.Path, err)
			}
			fmt.Fprintf(os.Stderr, "resuming from %s (step %d)\n", ck.Path, ck.Step)
		}
	}
	configs.SetDefaults(store, e.defaults)
	if err := configs.Apply(store, e.defaults, settings); err != nil {
		return nil, nil, usagef("%v", err)
	}
	for _, key := range pathSettings {
		v, ok := store.GetParam("/" + key)
		p, isString := v.(string)
		if _, known := e.defaults[key]; !ok || !known || !isString || p == "" || p == "random" {
			continue
		}
		if key == "data" {
			if ds, _ := store.GetParam("/dataset"); ds == "scenes" {
				continue // generated into the folder when missing
			}
		}
		if _, err := os.Stat(p); err != nil {
			return nil, nil, usagef("setting %s: %s does not exist", key, p)
		}
	}
	b, _, err := newBackend(*e.backend)
	if err != nil {
		return nil, nil, err
	}
	if err := os.MkdirAll(*e.out, 0o755); err != nil {
		return nil, nil, err
	}
	if err := os.WriteFile(filepath.Join(*e.out, "settings.conf"), []byte(configs.Format(store, e.defaults)), 0o644); err != nil {
		return nil, nil, err
	}
	return b, store, nil
}

// writeResult saves a run's summary as result.json in its output folder.
func writeResult(dir string, result map[string]any) error {
	b, err := json.MarshalIndent(result, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(dir, "result.json"), append(b, '\n'), 0o644)
}

// settingsMap returns the experiment's settings as stored, for result.json.
func settingsMap(store *model.Store, defaults map[string]any) map[string]any {
	out := map[string]any{}
	keys := make([]string, 0, len(defaults))
	for k := range defaults {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		v, _ := store.GetParam("/" + k)
		out[k] = v
	}
	return out
}
