// Package configstest helps the recipes' tests build their settings stores.
package configstest

import (
	"testing"

	"github.com/dreamteacher-go/dreamteacher/configs"
	"github.com/gomlx/gomlx/ml/model"
)

// Store is configs.NewStore(defaults, nil, set...) for a test: an error fails it.
func Store(t testing.TB, defaults map[string]any, set ...string) *model.Store {
	t.Helper()
	store, err := configs.NewStore(defaults, nil, set...)
	if err != nil {
		t.Fatal(err)
	}
	return store
}
