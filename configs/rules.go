package configs

import (
	"fmt"
	"math"
	"slices"
	"sort"
	"strings"

	"github.com/dreamteacher-go/dreamteacher/datasets"
	"github.com/dreamteacher-go/dreamteacher/losses/gan"
	"github.com/dreamteacher-go/dreamteacher/models/adm"
	"github.com/dreamteacher-go/dreamteacher/models/backbones"
	"github.com/dreamteacher-go/dreamteacher/models/biggan"
	"github.com/dreamteacher-go/dreamteacher/models/heads/maskrcnn"
)

// A rule checks the value of one setting; its error says which values are allowed.
type rule func(v any) error

// rules hold what each setting may be. A setting means the same in every experiment that has it
// (steps, batch, lr, ...), so one table serves them all; Check applies the rules of the keys an
// experiment has, before anything is built or trained, and a value out of range is a usage
// error naming the key and the range rather than a failure minutes into the run.
var rules = map[string]rule{
	// Lengths and counts.
	"steps": intAtLeast(1), "epochs": intAtLeast(1), "batch": intAtLeast(1), "eval_batch": intAtLeast(1),
	"d_steps": intAtLeast(1), "diffusion_steps": intAtLeast(1), "sample_steps": intAtLeast(1),
	"warmup": intAtLeast(0), "warmup_epochs": intAtLeast(0), "workers": intAtLeast(0),
	"checkpoint_every": intAtLeast(0), "log_every": intAtLeast(1), "label_count": intAtLeast(0),
	"samples": intAtLeast(0), "overlays": intAtLeast(0), "feature_images": intAtLeast(0), "t": intAtLeast(0),
	"regressor_width": intAtLeast(1), "head_channels": intAtLeast(1), "width": intAtLeast(1),
	"max_instances": intAtLeast(1), "fpn_channels": intAtLeast(1), "rpn_batch": intAtLeast(1),
	"roi_batch": intAtLeast(1), "box_fc_dim": intAtLeast(1), "mask_conv_dim": intAtLeast(1),
	"detections": intAtLeast(1), "test_candidates": intAtLeast(1), "max_size_train": intAtLeast(32),
	"min_size_test": intAtLeast(32), "max_size_test": intAtLeast(32), "num_classes": intAtLeast(0),
	"teacher_classes": intsAtLeast(0), "k": intAtLeast(1),

	// Rates and weights.
	"lr": number(0, false, math.Inf(1), false), "backbone_lr_mult": number(0, true, math.Inf(1), false), "lr_g": number(0, true, math.Inf(1), false),
	"lr_d": number(0, true, math.Inf(1), false), "min_lr": number(0, false, math.Inf(1), false),
	"weight_decay": number(0, false, math.Inf(1), false), "clip": number(0, false, math.Inf(1), false),
	"clip_norm": number(0, false, math.Inf(1), false), "ema": number(0, false, 1, true),
	"momentum": number(0, false, 1, true), "beta1": number(0, false, 1, true), "beta2": number(0, false, 1, true),
	"dropout": number(0, false, 1, true), "label_fraction": number(0, true, 1, false),
	"hflip": number(0, false, 1, false), "vis_threshold": number(0, false, 1, false),
	"tau": number(0, true, math.Inf(1), false), "at_weight": number(0, false, math.Inf(1), false),
	"ld_weight": number(0, false, math.Inf(1), false), "dice_weight": number(0, false, math.Inf(1), false),
	"aux_weight": number(0, false, math.Inf(1), false), "truncation": number(0, false, math.Inf(1), false),
	"canonical_box_size": number(0, true, math.Inf(1), false), "temperature": number(0, true, math.Inf(1), false),
	"key_momentum": number(0, false, 1, false), "jitter_p": number(0, false, 1, false),
	"gray_p": number(0, false, 1, false), "blur_p": probabilities(2, "per view"), "solarize_p": probabilities(2, "per view"),
	"crop_scale": fractions, "blur_sigma": ratio, "jitter": colorJitter,
	"queue": intAtLeast(1), "bn_splits": intAtLeast(1), "proj_hidden": intAtLeast(0), "proj_dim": intAtLeast(1),

	// Image sizes, (height, width).
	"size": pair(8), "crop": pair(32), "canvas": pair(32), "teacher_size": pair(8),
	"eval_size": pair(32), "scale": pair(32), "min_size_train": intsAtLeast(32),
	"ratio": ratio, "anchor_sizes": positives, "rpn_pre_nms_topk": twoInts(1, "(train, test)"), "rpn_post_nms_topk": twoInts(1, "(train, test)"),

	// Names.
	"backbone":       oneOf(backbones.Names),
	"adm":            oneOf(admNames),
	"biggan":         oneOf(biggan.Names),
	"dataset":        oneOf(datasets.Names),
	"optimizer":      oneOf(fixed("adamw", "lamb", "sgd", "lars")),
	"schedule":       oneOf(scheduleNames),
	"noise_schedule": oneOf(fixed("linear", "cosine")),
	"sampler":        oneOf(fixed("ddpm", "ddim")),
	"mode":           oneOf(fixed("feature", "label", "mixed")),
	"loss":           lossName,
	"method":         oneOf(fixed("linear", "knn", "both")),
	"ssl_method":     oneOf(fixed("mocov2", "byol")),
}

// Check applies the rules to the experiment's settings as they are in the store (defaults, a
// resumed checkpoint's values, the config and --set applied), and the checks that involve two
// settings. The error names the key, its value and what is allowed.
func Check(store modelStore, defaults map[string]any) error {
	for _, k := range sortedKeys(defaults) {
		r, ok := rules[k]
		if !ok {
			continue
		}
		v, _ := store.GetParam("/" + k)
		if (IsEmptyList(v) && IsEmptyList(defaults[k])) || (v == "" && defaults[k] == "") {
			continue // empty by default means "derived" (the teacher's size, a checkpoint's backbone)
		}
		if err := r(v); err != nil {
			return fmt.Errorf("setting %s = %s: %v", k, formatValue(v), err)
		}
	}
	// lr = 0 stands for "derive it" (Mask R-CNN's SGD rate scaled to the batch) only where the
	// default is 0; elsewhere it would train nothing.
	if def, ok := defaults["lr"].(float64); ok && def > 0 {
		if v, _ := store.GetParam("/lr"); v == 0.0 {
			return fmt.Errorf("setting lr = 0: want a finite number > 0")
		}
	}
	get := func(k string) (int, bool) {
		if _, has := defaults[k]; !has {
			return 0, false
		}
		v, _ := store.GetParam("/" + k)
		n, ok := v.(int)
		return n, ok
	}
	// MoCo: one step's keys must fit the queue, and the batch must split into the BatchNorm
	// parts of shuffle BN.
	if b, ok := get("batch"); ok {
		if q, ok := get("queue"); ok && q < b {
			return fmt.Errorf("setting queue = %d: must hold one batch of keys, batch = %d", q, b)
		}
		if p, ok := get("bn_splits"); ok && p > 0 && b%p != 0 {
			return fmt.Errorf("setting bn_splits = %d: must divide batch = %d", p, b)
		}
	}
	// Warm-up must end before a decaying schedule does (detectron2's named schedules, such as
	// Mask R-CNN's 1x, fix their own length and warm-up).
	sched, _ := store.GetParam("/schedule")
	if _, named := maskrcnn.Schedules[fmt.Sprint(sched)]; !named && sched != "constant" {
		if w, ok := get("warmup"); ok && w > 0 {
			if s, ok := get("steps"); ok && w >= s {
				return fmt.Errorf("setting warmup = %d: must be below steps = %d (lower warmup, or raise steps)", w, s)
			}
		}
		if w, ok := get("warmup_epochs"); ok && w > 0 {
			if e, ok := get("epochs"); ok && w >= e {
				return fmt.Errorf("setting warmup_epochs = %d: must be below epochs = %d", w, e)
			}
		}
	}
	return nil
}

// modelStore is the part of model.Store that Check reads.
type modelStore interface {
	GetParam(fullPath string) (any, bool)
}

func intAtLeast(min int) rule {
	return func(v any) error {
		n, ok := v.(int)
		if !ok || n < min {
			return fmt.Errorf("want an integer >= %d", min)
		}
		return nil
	}
}

// number accepts a finite float between lo and hi (each bound open or closed).
func number(lo float64, loOpen bool, hi float64, hiOpen bool) rule {
	desc := fmt.Sprintf("want a finite number in %s%g, %g%s", map[bool]string{false: "[", true: "("}[loOpen], lo, hi,
		map[bool]string{false: "]", true: ")"}[hiOpen])
	if math.IsInf(hi, 1) {
		desc = fmt.Sprintf("want a finite number %s %g", map[bool]string{false: ">=", true: ">"}[loOpen], lo)
	}
	return func(v any) error {
		x, ok := v.(float64)
		if !ok || math.IsNaN(x) || math.IsInf(x, 0) || x < lo || (loOpen && x == lo) || x > hi || (hiOpen && x == hi) {
			return fmt.Errorf("%s", desc)
		}
		return nil
	}
}

// pair accepts (height, width), each >= min. (An empty list passes where the default is empty.)
func pair(min int) rule { return twoInts(min, "height,width") }

// twoInts accepts two integers, each >= min; names says what they are.
func twoInts(min int, names string) rule {
	return func(v any) error {
		s, _ := v.([]int)
		if len(s) != 2 || s[0] < min || s[1] < min {
			return fmt.Errorf("want two integers %s, each >= %d", names, min)
		}
		return nil
	}
}

// IsEmptyList reports whether a setting's value is a list with no elements.
func IsEmptyList(v any) bool {
	switch x := v.(type) {
	case []int:
		return len(x) == 0
	case []float64:
		return len(x) == 0
	case []string:
		return len(x) == 0
	}
	return false
}

func intsAtLeast(min int) rule {
	return func(v any) error {
		s, _ := v.([]int)
		if len(s) == 0 || slices.Min(s) < min {
			return fmt.Errorf("want one or more integers, each >= %d", min)
		}
		return nil
	}
}

func ratio(v any) error {
	s, _ := v.([]float64)
	if len(s) != 2 || !(s[0] > 0) || !(s[1] >= s[0]) || math.IsInf(s[1], 0) {
		return fmt.Errorf("want two finite numbers lo,hi with 0 < lo <= hi")
	}
	return nil
}

// fractions accepts lo,hi with 0 < lo <= hi <= 1 (an area fraction range).
func fractions(v any) error {
	s, _ := v.([]float64)
	if len(s) != 2 || !(s[0] > 0) || !(s[1] >= s[0]) || s[1] > 1 {
		return fmt.Errorf("want two numbers lo,hi with 0 < lo <= hi <= 1")
	}
	return nil
}

// probabilities accepts n numbers in [0, 1]; what says what they are.
func probabilities(n int, what string) rule {
	return func(v any) error {
		s, _ := v.([]float64)
		if len(s) != n || slices.ContainsFunc(s, func(x float64) bool { return !(x >= 0 && x <= 1) }) {
			return fmt.Errorf("want %d probabilities in [0, 1], %s", n, what)
		}
		return nil
	}
}

// colorJitter accepts the strengths brightness,contrast,saturation,hue: each >= 0, hue <= 0.5.
func colorJitter(v any) error {
	s, _ := v.([]float64)
	if len(s) != 4 || slices.ContainsFunc(s, func(x float64) bool { return !(x >= 0) || math.IsInf(x, 0) }) || s[3] > 0.5 {
		return fmt.Errorf("want brightness,contrast,saturation,hue: finite numbers >= 0, hue <= 0.5")
	}
	return nil
}

func positives(v any) error {
	s, _ := v.([]float64)
	for _, x := range s {
		if !(x > 0) || math.IsInf(x, 0) {
			return fmt.Errorf("want finite numbers > 0")
		}
	}
	if len(s) == 0 {
		return fmt.Errorf("want finite numbers > 0")
	}
	return nil
}

func oneOf(names func() []string) rule {
	return func(v any) error {
		s, _ := v.(string)
		known := names()
		if !slices.Contains(known, s) {
			return fmt.Errorf("want one of %s", strings.Join(known, ", "))
		}
		return nil
	}
}

func fixed(names ...string) func() []string { return func() []string { return names } }

func admNames() []string {
	names := make([]string, 0, len(adm.Configs))
	for n := range adm.Configs {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

func scheduleNames() []string {
	names := []string{"constant", "cosine", "poly"}
	for n := range maskrcnn.Schedules {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

func lossName(v any) error {
	s, _ := v.(string)
	if _, err := gan.ParseLoss(s); err != nil {
		return err
	}
	return nil
}
