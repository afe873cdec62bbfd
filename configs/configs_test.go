package configs

import (
	"strings"
	"testing"

	"github.com/gomlx/gomlx/ml/model"
)

func TestApplyPrecedenceAndErrors(t *testing.T) {
	defaults := map[string]any{"lr": 4e-3, "steps": 100, "taps": []string{"a", "b"}, "ema": true, "sizes": []int{1, 2}}
	store := model.NewStore()
	store.SetParam("/steps", 7) // as restored from a checkpoint
	SetDefaults(store, defaults)
	if Get[int](store, "steps") != 7 || Get[float64](store, "lr") != 4e-3 {
		t.Fatalf("defaults must not override restored values")
	}
	file, err := Parse("# comment\nlr = 1e-4  # trailing\n\ntaps = x, y\n", "test.conf")
	if err != nil {
		t.Fatal(err)
	}
	set, _ := ParseSet([]string{"steps=12", "sizes=3,4,5"})
	if err := Apply(store, defaults, append(file, set...)); err != nil {
		t.Fatal(err)
	}
	if Get[float64](store, "lr") != 1e-4 || Get[int](store, "steps") != 12 ||
		strings.Join(Get[[]string](store, "taps"), "") != "xy" || len(Get[[]int](store, "sizes")) != 3 {
		t.Errorf("settings not applied: %s", Format(store, defaults))
	}
	bad, _ := Parse("lr = fast\n", "bad.conf")
	if err := Apply(store, defaults, bad); err == nil || !strings.Contains(err.Error(), "bad.conf:1") || !strings.Contains(err.Error(), "lr") {
		t.Errorf("bad value error: %v", err)
	}
	unknown, _ := ParseSet([]string{"learning_rate=1"})
	if err := Apply(store, defaults, unknown); err == nil || !strings.Contains(err.Error(), `unknown setting "learning_rate"`) || !strings.Contains(err.Error(), "lr, sizes") {
		t.Errorf("unknown key error: %v", err)
	}
	if _, err := Parse("just words\n", "x.conf"); err == nil || !strings.Contains(err.Error(), "x.conf:1") {
		t.Errorf("syntax error: %v", err)
	}
	if _, err := Load("no_such_config"); err == nil || !strings.Contains(err.Error(), "embedded configs are") {
		t.Errorf("unknown config error: %v", err)
	}
}

func TestEmbeddedConfigsParse(t *testing.T) {
	for _, name := range Names() {
		if _, err := Load(name); err != nil {
			t.Errorf("%s: %v", name, err)
		}
		text, _ := Text(name)
		if !strings.Contains(text, "dreamteacher ") && !strings.Contains(text, "make ") {
			t.Errorf("%s: the header comment must give the command that runs it", name)
		}
	}
}
