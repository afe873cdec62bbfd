package main

import (
	_ "embed"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/dreamteacher-go/dreamteacher/configs"
	"github.com/dreamteacher-go/dreamteacher/datasets/scenes"
	"github.com/dreamteacher-go/dreamteacher/train"
	"github.com/dreamteacher-go/dreamteacher/train/distill"
	"github.com/dreamteacher-go/dreamteacher/train/finetune"
	"github.com/dreamteacher-go/dreamteacher/train/pretrain"
	"github.com/gomlx/compute"
	"github.com/gomlx/gomlx/ml/model"
)

func init() {
	register("demo", "the whole method on generated scenes: teacher, distillation, few-label fine-tuning vs random init", runDemo)
}

// demoTeacher is the demo's teacher, shipped so that the demo spends its minutes on
// distillation and fine-tuning: adm_demo pre-trained on the demo's scenes (their images, no
// labels) with configs/demo_teacher.conf, its EMA UNet exported in float16 (`make demo-teacher`
// trains and exports it again; docs/RESULTS.md has its loss curve and samples).
//
//go:embed demo_teacher.safetensors
var demoTeacher []byte

// demoPlan is what the demo runs: the configs/demo_*.conf files plus the overrides of a size.
type demoPlan struct {
	scenes                      scenes.Config
	teacher, distill, seg, inst []string // --set overrides of each stage
	shipped                     bool     // use demoTeacher (unless --train-teacher)
	describe                    string
}

func demoPlans(quick bool) demoPlan {
	if quick {
		// Under 3 minutes on 2 cores: 32x32 images, the tiny teacher, a few steps each.
		return demoPlan{
			scenes:   scenes.Config{Train: 32, Val: 8, Size: 32, Seed: 1, Objects: true},
			teacher:  []string{"adm=adm_tiny", "size=32,32", "batch=4", "steps=4", "samples=4", "sample_steps=4"},
			distill:  []string{"size=32,32", "small_stem=true", "regressor_width=16", "batch=4", "steps=4", "warmup=1", "feature_images=2"},
			seg:      []string{"small_stem=true", "crop=32,32", "scale=32,32", "head_channels=16", "batch=4", "steps=4", "warmup=1", "overlays=2"},
			inst:     []string{"small_stem=true", "min_size_train=32", "max_size_train=32", "min_size_test=32", "max_size_test=32", "canvas=32,32", "batch=2", "steps=4", "warmup=1", "overlays=2"},
			describe: "quick: 32x32 scenes, 32 train / 8 val images, 8 labelled; a few steps per stage",
		}
	}
	// The scenes the shipped teacher was trained on (Objects changes the labels, not the images).
	return demoPlan{
		scenes:   scenes.Config{Train: 256, Val: 64, Size: 64, Seed: 1, Objects: true},
		shipped:  true,
		describe: "64x64 scenes, objects vs background, 256 train / 64 val images, 8 labelled",
	}
}

func runDemo(args []string) error {
	fs, backendFlag := flagSet("demo")
	out := fs.String("out", "out/demo", "output folder")
	quick := fs.Bool("quick", false, "the few-step variant (under 3 minutes; run by the tests)")
	trainTeacher := fs.Bool("train-teacher", false, "pre-train the teacher (configs/demo_teacher.conf) instead of using the shipped one")
	seed := fs.Int("seed", 0, "the seed of the distillation and of both fine-tunings (their labelled images, data order and head initialisation)")
	if err := parse(fs, args); err != nil {
		return err
	}
	b, choice, err := newBackend(*backendFlag)
	if err != nil {
		return err
	}
	plan := demoPlans(*quick)
	seedSet := fmt.Sprintf("seed=%d", *seed)
	plan.distill = append(plan.distill, seedSet)
	plan.seg = append(plan.seg, seedSet)
	plan.inst = append(plan.inst, seedSet)
	fmt.Fprintf(stdout, "DreamTeacher demo (%s, seed %d) on backend %s\n", plan.describe, *seed, choice.Config)
	log := io.Writer(os.Stderr)
	t0 := time.Now()

	data := filepath.Join(*out, "scenes")
	stage := func(name string) func() time.Duration {
		fmt.Fprintf(stdout, "== %s\n", name)
		start := time.Now()
		return func() time.Duration { return time.Since(start) }
	}
	done := stage("generating the scenes dataset into " + data)
	if err := scenes.Ensure(data, plan.scenes); err != nil {
		return err
	}
	genTime := done()

	run := func(conf string, defaults map[string]any, overrides []string, dir string) (*model.Store, error) {
		settings, err := configs.Load(conf)
		if err != nil {
			return nil, err
		}
		store, err := configs.NewStore(defaults, settings, append([]string{"data=" + data}, overrides...)...)
		if err != nil {
			return nil, err
		}
		if err := os.RemoveAll(dir); err != nil { // the demo always starts afresh
			return nil, err
		}
		return store, os.MkdirAll(dir, 0o755)
	}

	var teacher pretrain.DiffusionResult
	teacherDir := filepath.Join(*out, "teacher")
	shipped := plan.shipped && !*trainTeacher
	if shipped {
		done = stage("1/4 the shipped ADM teacher (pre-trained on these scenes' images, no labels): its samples")
		if teacher, err = shippedTeacher(b, teacherDir); err != nil {
			return err
		}
	} else {
		done = stage("1/4 pre-training the ADM teacher (no labels)")
		store, err := run("demo_teacher", pretrain.DiffusionDefaults(), plan.teacher, teacherDir)
		if err != nil {
			return err
		}
		if teacher, err = pretrain.Diffusion(b, store, teacherDir, log); err != nil {
			return err
		}
	}
	teacherTime := done()

	done = stage("2/4 distilling the teacher into ResNet-18 (no labels)")
	store, err := run("demo_distill", distill.Defaults(), append([]string{"teacher=" + teacher.Checkpoint}, plan.distill...), filepath.Join(*out, "distill"))
	if err != nil {
		return err
	}
	student, err := distill.Run(b, store, filepath.Join(*out, "distill"), log)
	if err != nil {
		return err
	}
	distillTime := done()

	type row struct {
		name              string
		miou, apbb, apmk  float64
		segTime, instTime time.Duration
		segPNG, instPNG   string
	}
	rows := []row{{name: "DreamTeacher (distilled)"}, {name: "random init"}}
	inits := []string{student.Checkpoint, "random"}
	for i := range rows {
		r := &rows[i]
		tag := []string{"dt", "random"}[i]
		done = stage(fmt.Sprintf("3/4 semantic segmentation, %s backbone", r.name))
		dir := filepath.Join(*out, "semseg-"+tag)
		store, err = run("demo_semseg", finetune.SemsegDefaults(), append([]string{"init=" + inits[i]}, plan.seg...), dir)
		if err != nil {
			return err
		}
		seg, err := finetune.Semseg(b, store, dir, log)
		if err != nil {
			return err
		}
		r.miou, r.segPNG, r.segTime = 100*seg.Metrics.MIoU, seg.Overlays, done()
		if err := writeResult(dir, semsegResult(seg, settingsMap(store, finetune.SemsegDefaults()))); err != nil {
			return err
		}

		done = stage(fmt.Sprintf("4/4 instance segmentation, %s backbone", r.name))
		dir = filepath.Join(*out, "instseg-"+tag)
		store, err = run("demo_instseg", finetune.InstsegDefaults(), append([]string{"init=" + inits[i]}, plan.inst...), dir)
		if err != nil {
			return err
		}
		inst, err := finetune.Instseg(b, store, dir, log)
		if err != nil {
			return err
		}
		r.apbb, r.apmk, r.instPNG, r.instTime = inst.APbb, inst.APmk, inst.Overlays, done()
		if err := writeResult(dir, instsegResult(inst, settingsMap(store, finetune.InstsegDefaults()))); err != nil {
			return err
		}
	}

	var md strings.Builder
	fmt.Fprintf(&md, "DreamTeacher demo: %s, seed %d; backend %s; total %s\n\n", plan.describe, *seed, choice.Config, time.Since(t0).Round(time.Second))
	fmt.Fprintf(&md, "| backbone | mIoU | APbb | APmk | semseg time | instseg time |\n|---|---:|---:|---:|---:|---:|\n")
	for _, r := range rows {
		fmt.Fprintf(&md, "| %s | %s | %s | %s | %s | %s |\n", r.name, num1(r.miou), num1(r.apbb), num1(r.apmk),
			r.segTime.Round(time.Second), r.instTime.Round(time.Second))
	}
	teacherRow := fmt.Sprintf("teacher pre-training (%d steps, final loss %.3f)", teacher.Steps, teacher.LastLoss)
	if shipped {
		teacherRow = fmt.Sprintf("shipped teacher (%d steps; `make demo-teacher` retrains it): %d samples", teacher.Steps, demoSamples)
	}
	fmt.Fprintf(&md, "\n| stage | time |\n|---|---:|\n| generate scenes | %s |\n| %s | %s |\n| distillation (%d steps, loss %.3f -> %.3f) | %s |\n",
		genTime.Round(time.Second), teacherRow, teacherTime.Round(time.Second),
		student.Steps, student.FirstLoss, student.LastLoss, distillTime.Round(time.Second))
	fmt.Fprintf(&md, "\nPictures:\n- teacher samples: %s\n- teacher vs student features (PCA): %s\n", teacher.Samples, student.Features)
	for _, r := range rows {
		fmt.Fprintf(&md, "- %s predictions: %s, %s\n", r.name, r.segPNG, r.instPNG)
	}
	report := filepath.Join(*out, "demo.md")
	if err := os.WriteFile(report, []byte(md.String()), 0o644); err != nil {
		return err
	}
	fmt.Fprintln(stdout)
	fmt.Fprint(stdout, md.String())
	fmt.Fprintf(stdout, "\nEverything is in %s (this table: %s).\n", *out, report)
	return nil
}

func num1(v float64) string {
	if math.IsNaN(v) {
		return "-"
	}
	return fmt.Sprintf("%.1f", v)
}

// demoSamples is how many images the demo draws from the shipped teacher.
const demoSamples = 16

// shippedTeacher writes demoTeacher into dir and draws demoSamples images from it with the
// sampler its training run used.
func shippedTeacher(b compute.Backend, dir string) (pretrain.DiffusionResult, error) {
	if err := os.RemoveAll(dir); err != nil {
		return pretrain.DiffusionResult{}, err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return pretrain.DiffusionResult{}, err
	}
	res := pretrain.DiffusionResult{Checkpoint: filepath.Join(dir, "teacher.safetensors"), Samples: filepath.Join(dir, "samples.png")}
	if err := os.WriteFile(res.Checkpoint, demoTeacher, 0o644); err != nil {
		return res, err
	}
	settings, err := train.ReadSettings(res.Checkpoint)
	if err != nil {
		return res, err
	}
	store := model.NewStore()
	if _, err := train.Restore(store, res.Checkpoint); err != nil {
		return res, err
	}
	res.Steps = int64(settings["steps"].(int))
	sampler, _ := settings["sampler"].(string)
	steps, _ := settings["sample_steps"].(int)
	_, err = admSampleGrid(b, store, settings, res.Checkpoint, demoSamples, steps, sampler, true, res.Samples)
	return res, err
}
