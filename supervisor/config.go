package supervisor

import (
	"context"
	"fmt"
)

// ResolveTargets decides what to watch: the pools given with --pool, plus
// every pool of each --fpm-config file; with none of these, every pool of
// every running master.
func ResolveTargets(ctx context.Context, specs []string, fpmConfigs []string) ([]Target, error) {
	var targets []Target
	for _, s := range specs {
		t, err := ParsePoolSpec(s)
		if err != nil {
			return nil, err
		}
		targets = append(targets, t)
	}
	for _, c := range fpmConfigs {
		ts, err := LoadFPMConfig(c)
		if err != nil {
			return nil, fmt.Errorf("--fpm-config: %w", err)
		}
		targets = append(targets, ts...)
	}
	if len(targets) > 0 {
		return targets, nil
	}
	return Discover(ctx)
}
