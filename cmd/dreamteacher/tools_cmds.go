package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"text/tabwriter"

	"github.com/dreamteacher-go/dreamteacher/configs"
	"github.com/dreamteacher-go/dreamteacher/convert"
	"github.com/dreamteacher-go/dreamteacher/datasets"
	"github.com/dreamteacher-go/dreamteacher/eval/semseg"
	"github.com/dreamteacher-go/dreamteacher/eval/tables"
	"github.com/dreamteacher-go/dreamteacher/models/adm"
	"github.com/dreamteacher-go/dreamteacher/models/backbones"
	"github.com/dreamteacher-go/dreamteacher/models/biggan"
	"github.com/dreamteacher-go/dreamteacher/models/flops"
	"github.com/dreamteacher-go/dreamteacher/train"
	"github.com/dreamteacher-go/dreamteacher/train/pretrain"
	"github.com/dreamteacher-go/dreamteacher/train/probe"
	"github.com/gomlx/compute"
	"github.com/gomlx/compute/dtypes"
	"github.com/gomlx/compute/shapes"
	. "github.com/gomlx/gomlx/core/graph"
	"github.com/gomlx/gomlx/ml/model"
)

func init() {
	register("sample", "draw images from a teacher checkpoint (ADM: DDIM/DDPM; BigGAN) into a PNG grid", runSample)
	register("eval", "evaluate predicted masks (--task semseg), or write the paper's tables with our rows (--table)", runEval)
	register("convert", "convert PyTorch weights (torchvision, timm, guided-diffusion) into a checkpoint", runConvert)
}

func runSample(args []string) error {
	fs, backendFlag := flagSet("sample")
	ckpt := fs.String("checkpoint", "", "a pretrain-diffusion or pretrain-gan checkpoint (file, or its output folder)")
	out := fs.String("out", "samples.png", "PNG to write (a folder: samples.png in it)")
	n := fs.Int("n", 16, "number of images")
	steps := fs.Int("steps", 100, "sampling steps (ADM; respaced)")
	sampler := fs.String("sampler", "ddpm", "ADM sampler: ddpm (ancestral) or ddim")
	ema := fs.Bool("ema", true, "sample with the EMA weights")
	classesFlag := fs.String("classes", "", "BigGAN, class-conditional: comma-separated classes each image's class is drawn from (default: all)")
	if err := parse(fs, args); err != nil {
		return err
	}
	if fi, err := os.Stat(*out); err == nil && fi.IsDir() {
		*out = filepath.Join(*out, "samples.png")
	}
	path, err := checkpointPath("checkpoint", *ckpt)
	if err != nil {
		return err
	}
	if *n <= 0 || *steps <= 0 {
		return usagef("--n and --steps must be positive")
	}
	if err := pretrain.CheckSampler(*sampler); err != nil {
		return usagef("--%v", err)
	}
	settings, err := train.ReadSettings(path)
	if err != nil {
		return err
	}
	b, _, err := newBackend(*backendFlag)
	if err != nil {
		return err
	}
	store := model.NewStore()
	if _, err := train.Restore(store, path); err != nil {
		return err
	}
	if _, ok := settings["biggan"]; ok {
		cfg, name, err := pretrain.GANConfigOf(settings)
		if err != nil {
			return fmt.Errorf("%s: %w", path, err)
		}
		var classes []int
		for _, s := range strings.Split(*classesFlag, ",") {
			if s = strings.TrimSpace(s); s == "" {
				continue
			}
			k, err := strconv.Atoi(s)
			if err != nil {
				return usagef("--classes: %q is not an integer", s)
			}
			classes = append(classes, k)
		}
		if err := biggan.CheckClasses(classes, cfg.NumClasses); err != nil {
			return usagef("--classes: %v (the generator of %s)", err, path)
		}
		if err := pretrain.GANSampleGrid(b, store, cfg, *n, *out, classes...); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "%d samples of %s -> %s\n", *n, name, *out)
		return nil
	}
	name, err := admSampleGrid(b, store, settings, path, *n, *steps, *sampler, *ema, *out)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "%d samples of %s (%s, %d steps) -> %s\n", *n, name, *sampler, *steps, *out)
	return nil
}

// admSampleGrid draws n samples of the ADM teacher restored into store from the checkpoint at
// path (whose settings are given) into the PNG grid out, and returns the ADM configuration's name.
func admSampleGrid(b compute.Backend, store *model.Store, settings map[string]any, path string, n, steps int, sampler string, ema bool, out string) (string, error) {
	name, ok := settings["adm"].(string)
	if !ok {
		return "", fmt.Errorf("%s: not a teacher checkpoint (no adm or biggan setting)", path)
	}
	cfg, err := adm.GetConfig(name)
	if err != nil {
		return "", err
	}
	proc, err := pretrain.Process(store, cfg)
	if err != nil {
		return "", err
	}
	size := settings["size"].([]int)
	scope := "unet"
	if ema {
		scope = "ema/unet"
	}
	m := pretrain.ScopedUNet(cfg, scope)
	return name, pretrain.SampleGrid(b, store, proc, cfg, m, sampler, n, size[0], size[1], steps, out)
}

// checkpointPath resolves a checkpoint flag: a file, or the newest checkpoint of a folder.
func checkpointPath(flagName, p string) (string, error) {
	if p == "" {
		return "", usagef("--%s is required", flagName)
	}
	st, err := os.Stat(p)
	if err != nil {
		return "", usagef("--%s: %s does not exist", flagName, p)
	}
	if !st.IsDir() {
		return p, nil
	}
	ck, ok, err := train.Latest(p)
	if err != nil {
		return "", err
	}
	if !ok {
		return "", usagef("--%s: no checkpoint (ckpt-*.safetensors) in %s", flagName, p)
	}
	return ck.Path, nil
}

func runEval(args []string) error {
	if task, rest, err := extractFlag(args, "task", ""); err != nil {
		return err
	} else if task == "linear-probe" || task == "knn" {
		return runProbe(task, rest)
	}
	fs, _ := flagSet("eval")
	task := fs.String("task", "", "semseg: compare predicted masks with a dataset's labels; linear-probe or knn: classify a backbone's frozen features (eval --task linear-probe -h)")
	dataset := fs.String("dataset", "", "registered dataset: "+strings.Join(datasets.Names(), ", "))
	data := fs.String("data", "", "the dataset's root folder")
	split := fs.String("split", "val", "split")
	preds := fs.String("predictions", "", "folder of predicted masks: <image base name>.png, class indices (as predict writes them)")
	keepZero := fs.Bool("keep-zero-label", false, "keep label 0 as a class where the dataset ignores it (ADE20K layout, the scenes), as a run with keep_zero_label=true")
	table := fs.String("table", "", "write a paper table with our rows: "+strings.Join(tables.Names(), ", "))
	var rows setFlag
	fs.Var(&rows, "row", "our row for --table: 'METHOD|COLUMN=RUN[#key];...', RUN a run folder or its result.json (repeatable)")
	outFlag := fs.String("out", "", "with --table: write <out>.md and <out>.csv (default: print Markdown)")
	results := fs.String("results", "", "comma-separated run folders, result.json files or quoted glob patterns of them ('out/camvid/*'): print their results as a table (see --layout)")
	layout := fs.String("layout", "auto", resultsLayoutHelp)
	if err := parse(fs, args); err != nil {
		return err
	}
	if *table != "" {
		return writeTable(*table, rows, *outFlag)
	}
	if *results != "" {
		return resultsTable(strings.Split(*results, ","), *layout)
	}
	if *task != "semseg" {
		return usagef("--task: want semseg, linear-probe or knn (or use --table)")
	}
	if *dataset == "" {
		return usagef("--dataset is required (known: %s)", strings.Join(datasets.Names(), ", "))
	}
	if err := requireDir("data", *data); err != nil {
		return err
	}
	if err := requireDir("predictions", *preds); err != nil {
		return err
	}
	ds, err := datasets.Open(*dataset, *data, *split, datasets.Options{Task: "semantic", KeepZeroLabel: *keepZero})
	if err != nil {
		return err
	}
	res, err := evalPredictions(ds, *preds)
	if err != nil {
		return err
	}
	fmt.Fprint(stdout, res.Format(ds.Classes()))
	m := res.Metrics() // rounded as mmseg prints them
	fmt.Fprintf(stdout, "mIoU %.2f  mAcc %.2f  aAcc %.2f  (%d images of %s)\n", m["mIoU"], m["mAcc"], m["aAcc"], ds.Len(), ds.Name())
	return nil
}

// evalPredictions scores the predicted masks in dir, <image base name>.png each, against the
// semantic labels of ds.
func evalPredictions(ds datasets.Dataset, dir string) (semseg.Result, error) {
	ev := semseg.New(len(ds.Classes()), datasets.IgnoreLabel)
	pather, _ := ds.(datasets.Pather)
	for i := range ds.Len() {
		s, err := ds.Get(i)
		if err != nil {
			return semseg.Result{}, err
		}
		img := s.Path
		if pather != nil {
			img = pather.Path(i)
		}
		predPath := filepath.Join(dir, datasets.Stem(img)+".png")
		pred, w, h, err := semseg.ReadMask(predPath)
		if err != nil {
			return semseg.Result{}, err
		}
		if w != s.Image.W || h != s.Image.H {
			return semseg.Result{}, fmt.Errorf("%s is %dx%d, its label (image %s) is %dx%d", predPath, w, h, img, s.Image.W, s.Image.H)
		}
		label := make([]int32, len(s.Semantic))
		for j, v := range s.Semantic {
			label[j] = int32(v)
		}
		if err := ev.Process(pred, label); err != nil {
			return semseg.Result{}, fmt.Errorf("%s: %w", predPath, err)
		}
	}
	return ev.Evaluate(), nil
}

func runConvert(args []string) error {
	fs, _ := flagSet("convert")
	input := fs.String("input", "", "PyTorch checkpoint (.pt/.pth/.safetensors) or catalogue name (see --list)")
	out := fs.String("out", "", "checkpoint to write (.safetensors, or a folder)")
	family := fs.String("family", "", "resnet, convnext or adm (default: from --input)")
	arch := fs.String("arch", "", "architecture, e.g. resnet50, convnext_tiny, adm_256x256_uncond")
	scope := fs.String("scope", "/model/backbone", "scope of the weights in the checkpoint")
	cache := fs.String("cache", convert.DefaultCacheDir(), "folder of downloaded weights (timm/... entries go to the Hugging Face cache, "+convert.HubCacheDir()+")")
	offline := fs.Bool("offline", false, "never download (a missing file is an error saying what to fetch and where)")
	list := fs.Bool("list", false, "list the catalogue of known pretrained weights")
	if err := parse(fs, args); err != nil {
		return err
	}
	if *list {
		tw := tabwriter.NewWriter(stdout, 0, 0, 2, ' ', 0)
		for _, e := range convert.Catalogue() {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", e.Name, e.Family, e.Arch, e.URL)
		}
		return tw.Flush()
	}
	if *input == "" || *out == "" {
		return usagef("--input and --out are required")
	}
	rep, err := convert.Run(context.Background(), convert.Options{Family: *family, Arch: *arch, Input: *input, Out: *out,
		Scope: *scope, CacheDir: *cache, Offline: *offline, Progress: stdout})
	if err != nil {
		return err
	}
	fmt.Fprintln(stdout, rep.String())
	return nil
}

func inspectModel(args []string) error {
	if len(args) == 0 || strings.HasPrefix(args[0], "-") {
		return usagef("inspect model NAME: a backbone (%s), an ADM (%s) or a BigGAN (%s)",
			strings.Join(backbones.Names(), ", "), strings.Join(adm.ConfigNames(), ", "), strings.Join(biggan.Names(), ", "))
	}
	name := args[0]
	fs, backendFlag := flagSet("inspect model")
	size := fs.String("size", "", "input height,width (default: the model's own, 224 for backbones)")
	classes := fs.Int("classes", 1000, "classification head of a backbone (0: none)")
	if err := parse(fs, args[1:]); err != nil {
		return err
	}
	b, _, err := newBackend(*backendFlag)
	if err != nil {
		return err
	}
	h, w, err := parseSize(*size)
	if err != nil {
		return err
	}
	var rep flops.Report
	var reference string
	switch {
	case contains(backbones.Names(), name):
		if h == 0 {
			h, w = 224, 224
		}
		rep, err = flops.Backbone(b, name, backbones.Options{NumClasses: *classes}, 1, h, w)
		if e, _ := backbones.Get(name); e.ReferenceCount > 0 && *classes == 1000 {
			reference = fmt.Sprintf("%s: %d parameters", e.Reference, e.ReferenceCount)
		}
	case contains(adm.ConfigNames(), name):
		cfg, _ := adm.GetConfig(name)
		if h == 0 {
			h, w = cfg.InputSize()
		}
		if err := cfg.CheckInputSize(h, w); err != nil {
			return usagef("--size: %v", err)
		}
		rep, err = flops.Inspect(b, shapes.Make(dtypes.Float32, 1, h, w, cfg.InChannels), func(scope *model.Scope, x *Node) map[string]*Node {
			t := Zeros(x.Graph(), shapes.Make(dtypes.Float32, 1))
			var y *Node
			if cfg.NumClasses > 0 {
				y = Zeros(x.Graph(), shapes.Make(dtypes.Int32, 1))
			}
			o := adm.New(scope, cfg).Done(x, t, y)
			outs := map[string]*Node{"eps": o.Eps}
			for k, v := range o.Taps {
				outs["tap "+k] = v
			}
			return outs
		})
		reference = fmt.Sprintf("guided-diffusion create_model: %d parameters", adm.NumParams(cfg))
	case contains(biggan.Names(), name):
		cfg, _ := biggan.Get(name)
		rep, err = flops.Inspect(b, shapes.Make(dtypes.Float32, 1, cfg.DimZ), func(scope *model.Scope, z *Node) map[string]*Node {
			var y *Node
			if cfg.Conditional() {
				y = Zeros(z.Graph(), shapes.Make(dtypes.Int32, 1))
			}
			o := biggan.Generate(scope, z, y, cfg)
			outs := map[string]*Node{"image": o.Image}
			for k, v := range o.Taps {
				outs["tap "+k] = v
			}
			return outs
		})
		g, d := biggan.NumParams(cfg)
		reference = fmt.Sprintf("BigGAN-PyTorch: generator %d, discriminator %d parameters (generator shown)", g, d)
	default:
		return usagef("unknown model %q: backbones %s; ADM %s; BigGAN %s", name, strings.Join(backbones.Names(), ", "),
			strings.Join(adm.ConfigNames(), ", "), strings.Join(biggan.Names(), ", "))
	}
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "model:       %s\ninput:       %s\nparameters:  %d (trainable), buffers %d\n", name, rep.Input, rep.Params, rep.Buffers)
	if reference != "" {
		fmt.Fprintf(stdout, "reference:   %s\n", reference)
	}
	fmt.Fprintf(stdout, "forward:     %s\noutputs:\n", rep.Counts)
	names := make([]string, 0, len(rep.Outputs))
	for k := range rep.Outputs {
		names = append(names, k)
	}
	sort.Strings(names)
	for _, k := range names {
		fmt.Fprintf(stdout, "  %-24s %s\n", k, rep.Outputs[k])
	}
	return nil
}

func parseSize(s string) (int, int, error) {
	if s == "" {
		return 0, 0, nil
	}
	var h, w int
	if n, err := fmt.Sscanf(s, "%d,%d", &h, &w); err != nil || n != 2 || h <= 0 || w <= 0 {
		return 0, 0, usagef("--size: want height,width, got %q", s)
	}
	return h, w, nil
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// writeTable prints (or writes) a paper table with our rows. Each row is
// "METHOD|COLUMN=result.json[#key];COLUMN=..." where key is the result's metric (default: mIoU
// for a semseg result, APbb or APmk by the column's name for an instseg result).
func writeTable(name string, rows []string, out string) error {
	t, err := tables.PaperTable(name)
	if err != nil {
		return usagef("--table: %v", err)
	}
	for _, spec := range rows {
		method, cells, ok := strings.Cut(spec, "|")
		if !ok || method == "" {
			return usagef("--row %q: want METHOD|COLUMN=result.json[#key];...", spec)
		}
		row := tables.Row{Method: method, Source: tables.Ours, Values: map[string]float64{}}
		for _, cell := range strings.Split(cells, ";") {
			col, src, ok := strings.Cut(cell, "=")
			if !ok {
				return usagef("--row %q: cell %q is not COLUMN=result.json", spec, cell)
			}
			path, key, _ := strings.Cut(src, "#")
			v, err := resultValue(path, key, col)
			if err != nil {
				return err
			}
			row.Values[col] = v
		}
		if err := t.Add(row); err != nil {
			return usagef("--row: %v", err)
		}
	}
	if out == "" {
		fmt.Fprint(stdout, t.Markdown())
		return nil
	}
	if err := os.WriteFile(out+".md", []byte(t.Markdown()), 0o644); err != nil {
		return err
	}
	if err := os.WriteFile(out+".csv", []byte(t.CSV()), 0o644); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "wrote %s.md and %s.csv\n", out, out)
	return nil
}

// resultFile is the result.json a --row or --results path names: the file, or a run folder's.
func resultFile(path string) string {
	if st, err := os.Stat(path); err == nil && st.IsDir() {
		return filepath.Join(path, "result.json")
	}
	return path
}

// resultValue reads one metric of a result.json (or of a run folder's).
func resultValue(path, key, column string) (float64, error) {
	path = resultFile(path)
	data, err := os.ReadFile(path)
	if err != nil {
		return 0, usagef("--row: %v", err)
	}
	var r map[string]any
	if err := json.Unmarshal(data, &r); err != nil {
		return 0, fmt.Errorf("%s: %v", path, err)
	}
	if key == "" {
		switch {
		case r["task"] == "semseg":
			key = "mIoU"
		case strings.Contains(column, "APmk"):
			key = "APmk"
		case strings.Contains(column, "APbb"):
			key = "APbb"
		default:
			return 0, usagef("--row: say which metric of %s goes in %q (COLUMN=%s#key)", path, column, path)
		}
	}
	v, ok := r[key].(float64)
	if !ok {
		return 0, fmt.Errorf("%s has no number %q", path, key)
	}
	return v, nil
}

// runProbe is `eval --task linear-probe|knn`: the frozen features of a pre-trained backbone
// (--init, a run folder or checkpoint) classified by a linear probe or k-NN on a labelled
// dataset (--data, ImageNet layout), the paper's linear-probe table.
func runProbe(task string, args []string) error {
	e := newExperiment("eval --task "+task, "out/"+task, probe.Defaults())
	e.fs.String("task", task, "linear-probe or knn")
	e.fs.String("data", "", "the labelled dataset's root folder (= --set data=...)")
	e.fs.String("init", "", "the pre-trained backbone: a run folder, a checkpoint, or random (= --set init=...)")
	method := map[string]string{"linear-probe": "linear", "knn": "knn"}[task]
	pre := []string{"--set", "method=" + method}
	for i, a := range args { // the shorthands become settings, before the user's --set
		for _, name := range []string{"data", "init"} {
			if a == "--"+name && i+1 < len(args) {
				pre = append(pre, "--set", name+"="+args[i+1])
			} else if v, ok := strings.CutPrefix(a, "--"+name+"="); ok {
				pre = append(pre, "--set", name+"="+v)
			}
		}
	}
	b, store, err := e.prepare(append(pre, args...))
	if err != nil {
		return err
	}
	if e.dry != nil {
		os.RemoveAll(e.dry.tempDir)
		return usagef("--dry-run: a probe has no training loop to time (it encodes each image once)")
	}
	in := configs.Get[string](store, "init")
	if in == "" {
		return usagef("--init is required: a run folder, a checkpoint, or random")
	}
	if in != "random" {
		p, err := checkpointPath("init", in)
		if err != nil {
			return err
		}
		store.SetParam("/init", p)
	}
	res, err := probe.Run(b, store, os.Stderr)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "%s (%s) on %d train / %d val images, %d classes, %d-d features:\n", res.Backbone, in, res.TrainImages, res.ValImages, res.Classes, res.FeatureDim)
	out := map[string]any{"task": task, "backbone": res.Backbone, "train_images": res.TrainImages, "val_images": res.ValImages,
		"encode_seconds": res.EncodeTime.Seconds(), "settings": settingsMap(store, e.defaults)}
	if method == "linear" {
		fmt.Fprintf(stdout, "linear probe: top-1 %.2f (train %.2f)\n", res.LinearTop1, res.LinearTrain)
		out["top1"], out["train_top1"] = res.LinearTop1, res.LinearTrain
	} else {
		fmt.Fprintf(stdout, "k-NN: top-1 %.2f, top-5 %.2f\n", res.KNNTop1, res.KNNTop5)
		out["top1"], out["top5"] = res.KNNTop1, res.KNNTop5
	}
	return writeResult(*e.out, out)
}
