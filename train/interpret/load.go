package interpret

import (
	"encoding/json"
	"fmt"
	"github.com/dreamteacher-go/dreamteacher/train/teachers"
	"maps"
	"slices"
	"strings"

	"github.com/dreamteacher-go/dreamteacher/internal/safetensors"
	"github.com/dreamteacher-go/dreamteacher/models/heads/interpreter"
	"github.com/dreamteacher-go/dreamteacher/train"
	. "github.com/gomlx/gomlx/core/graph"
	"github.com/gomlx/gomlx/ml/model"
	"github.com/gomlx/gomlx/support/exceptions"
)

// Interpreter is a trained interpreter loaded into a store, with what it was trained on: the
// teacher of label distillation.
type Interpreter struct {
	Scope      string // where its variables are in the store
	Config     interpreter.Config
	NumClasses int
	Classes    []string
	Checkpoint string

	// The teacher it was trained on: its checkpoint and scope, ADM configuration, encoding
	// timestep, taps and image size. Label distillation must encode with the same.
	Teacher      string
	TeacherScope string
	ADM          string
	T            int
	Taps         []string
	Size         []int
}

// LoadInterpreter copies the interpreter of a checkpoint written by Run (its /interpreter
// scope) into store under the scope `to` (e.g. "/label/interpreter"), makes those variables
// non-trainable, and returns its configuration and what it was trained on.
//
// Label distillation then builds, inside its training graph, the teacher's features with the
// same teacher, t and taps (CheckTeacher verifies them) and the interpreter's logits with
// Logits, and applies losses/distill to them.
func LoadInterpreter(store *model.Store, ckpt, to string) (*Interpreter, error) {
	settings, err := train.ReadSettings(ckpt)
	if err != nil {
		return nil, fmt.Errorf("interpreter: %w", err)
	}
	meta, err := safetensors.ReadMetadata(ckpt)
	if err != nil {
		return nil, fmt.Errorf("interpreter: %w", err)
	}
	it := &Interpreter{Scope: "/" + strings.Trim(to, "/"), Checkpoint: ckpt}
	var ok [8]bool
	var width int
	var dropout float64
	it.Teacher, ok[0] = settings["teacher"].(string)
	it.TeacherScope, ok[1] = settings["teacher_scope"].(string)
	it.ADM, ok[2] = settings["adm"].(string)
	it.T, ok[3] = settings["t"].(int)
	it.Taps, ok[4] = settings["taps"].([]string)
	it.Size, ok[5] = settings["size"].([]int)
	width, ok[6] = settings["width"].(int)
	dropout, ok[7] = settings["dropout"].(float64)
	if slices.Contains(ok[:], false) || meta[metaClasses] == "" {
		return nil, fmt.Errorf("interpreter %s: not a checkpoint of interpreter training (settings teacher, teacher_scope, adm, t, taps, size, width, dropout and the class names expected)", ckpt)
	}
	if err := json.Unmarshal([]byte(meta[metaClasses]), &it.Classes); err != nil {
		return nil, fmt.Errorf("interpreter %s: corrupt %s metadata: %v", ckpt, metaClasses, err)
	}
	it.Config = interpreterConfig(width, dropout)
	if _, err := train.LoadScope(store, ckpt, train.LoadSpec{From: InterpreterScope, To: it.Scope}); err != nil {
		return nil, fmt.Errorf("interpreter: %w", err)
	}
	for v := range store.IterVariables() {
		if strings.HasPrefix(v.Path(), it.Scope+"/") {
			v.SetTrainable(false)
		}
	}
	logits := store.GetVariable(it.Scope + "/logits/weights")
	if logits == nil {
		return nil, fmt.Errorf("interpreter %s: no variable %s/logits/weights", ckpt, InterpreterScope)
	}
	it.NumClasses = logits.Shape().Dim(3)
	if it.NumClasses != len(it.Classes) {
		return nil, fmt.Errorf("interpreter %s: %d logits but %d class names", ckpt, it.NumClasses, len(it.Classes))
	}
	return it, nil
}

// CheckTeacher reports whether a teacher encodes as the one the interpreter was trained on:
// same ADM configuration, timestep and taps (in any order). The error names both values.
func (it *Interpreter) CheckTeacher(t *teachers.Diffusion) error {
	var diffs []string
	if t.Name != it.ADM {
		diffs = append(diffs, fmt.Sprintf("adm %q, the interpreter's %q", t.Name, it.ADM))
	}
	if t.Step != it.T {
		diffs = append(diffs, fmt.Sprintf("t %d, the interpreter's %d", t.Step, it.T))
	}
	have, want := slices.Sorted(slices.Values(t.TapNames())), slices.Sorted(slices.Values(it.Taps))
	if !slices.Equal(have, want) {
		diffs = append(diffs, fmt.Sprintf("taps %v, the interpreter's %v", have, want))
	}
	if len(diffs) > 0 {
		return fmt.Errorf("the teacher %s does not encode as the one the interpreter %s was trained on: %s",
			t.Checkpoint, it.Checkpoint, strings.Join(diffs, "; "))
	}
	return nil
}

// Logits builds the loaded interpreter on the teacher's features (keyed by tap name, e.g.
// teachers.Diffusion.Features) under scope, which must be the interpreter's scope in the store (the `to`
// of LoadInterpreter), and returns its logits [N, h, w, NumClasses] at the finest tap's
// resolution, frozen and without gradient (interpreter.TeacherLogits). Pass them as the
// teacher of losses/distill: distill.New(student, zg).Tau(4).Done(), resized to the student's
// resolution.
func (it *Interpreter) Logits(scope *model.Scope, feats map[string]*Node) *Node {
	if scope.Scope() != it.Scope {
		exceptions.Panicf("interpreter loaded under %q built under %q: use the scope it was loaded into", it.Scope, scope.Scope())
	}
	have := slices.Sorted(maps.Keys(feats))
	if want := slices.Sorted(slices.Values(it.Taps)); !slices.Equal(have, want) {
		exceptions.Panicf("interpreter at %q: trained on the taps %v, given %v", it.Scope, want, have)
	}
	return interpreter.TeacherLogits(scope, feats, it.NumClasses, it.Config)
}
