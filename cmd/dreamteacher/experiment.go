package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"reflect"
	"slices"
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
	command  string // what the run is, as its checkpoints record it: "distill", "finetune --task semseg"
	backend  *string
	config   *string
	sets     setFlag
	out      *string
	restart  *bool
	skipBad  *bool
	dryRun   *int // steps timed by --dry-run (0: a real run)
	dryBatch *int
	dry      *dryRun // set by prepare for a dry run
	defaults map[string]any
}

func newExperiment(command, defaultOut string, defaults map[string]any) *experiment {
	fs, b := flagSet(strings.Fields(command)[0])
	e := &experiment{fs: fs, command: command, backend: b, defaults: defaults}
	e.config = fs.String("config", "", "experiment config: a name among "+strings.Join(configs.Names(), ", ")+", or a file")
	fs.Var(&e.sets, "set", "override one setting, key=value (repeatable); see --show-settings")
	e.out = fs.String("out", defaultOut, "output folder (checkpoints, metrics.jsonl, PNGs); a run found there resumes")
	e.restart = fs.Bool("restart", false, "start over: the earlier run's files in --out are moved aside to --out/restarted-<time>/")
	e.dryRun = fs.Int("dry-run", 0, "time N steps on the real data at --dry-run-batch and print the plan (settings, backend, steps per epoch, projected time); writes nothing to --out")
	e.dryBatch = fs.Int("dry-run-batch", 2, "the batch of a dry run (the projection scales the step time to the run's batch)")
	if _, ok := defaults["skip_bad"]; ok {
		e.skipBad = fs.Bool("skip-bad", false, "leave out images that fail to load, listing them in the output and result.json (= --set skip_bad=true)")
	}
	return e
}

// commandParam records in the store, and so in every checkpoint, which command started the run.
const commandParam = "/run/command"

// resumable are the settings a resumed run may change: how long it trains, how often it logs and
// saves, how its data are read and where they lie, and what it draws at the end. Every other
// setting defines the run (the model and its graph, the data it learns from, the optimisation)
// and must be the one its checkpoints were written with.
var resumable = map[string]bool{
	"steps": true, "epochs": true, "checkpoint_every": true, "log_every": true, "workers": true, "data": true,
	"skip_bad": true, "samples": true, "sample_steps": true, "sampler": true, "overlays": true,
	"feature_images": true, "eval_batch": true, "vis_threshold": true,
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
	if e.skipBad != nil && *e.skipBad {
		settings = append(settings, configs.Setting{Key: "skip_bad", Value: "true", Origin: "--skip-bad"})
	}
	if *show {
		store := model.NewStore()
		configs.SetDefaults(store, e.defaults)
		if err := configs.Apply(store, e.defaults, settings); err != nil {
			return nil, nil, usagef("%v", err)
		}
		if err := configs.Check(store, e.defaults); err != nil {
			return nil, nil, usagef("%v", err)
		}
		fmt.Fprint(stdout, configs.Format(store, e.defaults))
		return nil, nil, flag.ErrHelp
	}
	store := model.NewStore()
	var resumed map[string]any // the settings of the checkpoint resumed from
	var resumedFrom string
	if !*e.restart {
		if ck, ok, err := train.Latest(*e.out); err != nil {
			return nil, nil, err
		} else if ok {
			if resumed, err = e.checkCommand(ck.Path); err != nil {
				return nil, nil, err
			}
			if _, err := train.Restore(store, ck.Path); err != nil {
				return nil, nil, fmt.Errorf("resuming from %s: %w", ck.Path, err)
			}
			resumedFrom = ck.Path
			fmt.Fprintf(os.Stderr, "resuming from %s (step %d)\n", ck.Path, ck.Step)
		}
	}
	configs.SetDefaults(store, e.defaults)
	if err := configs.Apply(store, e.defaults, settings); err != nil {
		return nil, nil, usagef("%v", err)
	}
	if err := configs.Check(store, e.defaults); err != nil {
		return nil, nil, usagef("%v", err)
	}
	if resumed != nil {
		if err := e.checkSettings(store, resumed, resumedFrom); err != nil {
			return nil, nil, err
		}
	}
	store.SetParam(commandParam, e.command)
	for _, key := range pathSettings {
		v, ok := store.GetParam("/" + key)
		p, isString := v.(string)
		if _, known := e.defaults[key]; !ok || !known || !isString || p == "" || p == "random" || strings.HasPrefix(p, "random:") {
			continue
		}
		if key == "data" {
			if ds, _ := store.GetParam("/dataset"); ds == "scenes" {
				continue // generated into the folder when missing
			}
		}
		if _, err := os.Stat(p); err != nil {
			if *e.dryRun > 0 && (key == "teacher" || key == "init") {
				return nil, nil, usagef("setting %s: %s does not exist; a dry run times the same with random weights: --set %s=%s",
					key, p, key, map[string]string{"teacher": "random:<its adm configuration, e.g. adm_256x256_uncond>", "init": "random"}[key])
			}
			return nil, nil, usagef("setting %s: %s does not exist", key, p)
		}
	}
	b, _, err := newBackend(*e.backend)
	if err != nil {
		return nil, nil, err
	}
	if *e.dryRun > 0 {
		return b, store, e.startDryRun(b, store)
	}
	if *e.restart {
		if aside, err := train.MoveAside(*e.out); err != nil {
			return nil, nil, err
		} else if aside != "" {
			fmt.Fprintf(os.Stderr, "--restart: the earlier run's files are now in %s\n", aside)
		}
	}
	if err := os.MkdirAll(*e.out, 0o755); err != nil {
		return nil, nil, err
	}
	if removed, err := train.RemoveStaleTemps(*e.out); err != nil {
		return nil, nil, err
	} else if len(removed) > 0 {
		fmt.Fprintf(os.Stderr, "removed %d temporary files left by an interrupted write: %s\n", len(removed), strings.Join(removed, ", "))
	}
	if err := os.WriteFile(filepath.Join(*e.out, "settings.conf"), []byte(configs.Format(store, e.defaults)), 0o644); err != nil {
		return nil, nil, err
	}
	return b, store, nil
}

// checkCommand returns the settings of the checkpoint at path after checking that it was written
// by this command: a folder holding another kind of run (a teacher's checkpoints in a
// fine-tuning folder) is refused before anything is loaded.
func (e *experiment) checkCommand(path string) (map[string]any, error) {
	saved, err := train.ReadSettings(path)
	if err != nil {
		return nil, fmt.Errorf("resuming from %s: %w", path, err)
	}
	what, _ := saved[strings.TrimPrefix(commandParam, "/")].(string)
	if what == "" {
		// Checkpoints from before the command was recorded, or written by convert: the settings
		// tell whether they belong to this kind of run.
		same := true
		for k := range e.defaults {
			if _, ok := saved[k]; !ok {
				same = false
			}
		}
		if same {
			return saved, nil
		}
		what = "another kind of"
	}
	if what != e.command {
		return nil, usagef("--out %s holds a %s run (%s), not a %s run: choose another --out, or add --restart to move its files aside and start over",
			*e.out, what, filepath.Base(path), e.command)
	}
	return saved, nil
}

// checkSettings compares the settings that define the run with those of the checkpoint resumed
// from; the first difference is a usage error naming the setting and both values.
func (e *experiment) checkSettings(store *model.Store, saved map[string]any, path string) error {
	for _, k := range slices.Sorted(maps.Keys(e.defaults)) {
		if resumable[k] {
			continue
		}
		now, _ := store.GetParam("/" + k)
		then, ok := saved[k]
		if !ok {
			continue // a setting added since the checkpoint was written: its default applies
		}
		if !reflect.DeepEqual(now, then) && !(configs.IsEmptyList(now) && configs.IsEmptyList(then)) {
			return usagef("setting %s: the run in %s was started with %v (%s), this command asks for %v; "+
				"choose another --out, or add --restart to move its files aside and start over",
				k, *e.out, then, filepath.Base(path), now)
		}
	}
	return nil
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
