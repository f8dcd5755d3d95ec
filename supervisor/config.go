package supervisor

import (
	"context"
	"errors"
	"fmt"
)

// ResolveTargets decides what to watch: the pools of specs, plus every
// pool of each php-fpm config; with none of these, every pool of every
// running master tr trusts.
func ResolveTargets(ctx context.Context, specs []string, fpmConfigs []string, tr Trust) ([]Target, error) {
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
			if !errors.As(err, new(*SourceError)) {
				err = &SourceError{Source: SourceFPMConfig, Value: c, Err: err}
			}
			return nil, err
		}
		targets = append(targets, ts...)
	}
	if len(targets) > 0 {
		if _, dup := once(targets); dup != nil {
			return nil, dup
		}
		return targets, nil
	}
	targets, err := Discover(ctx, tr)
	targets, dup := once(targets)
	return targets, errors.Join(err, dup)
}

// once keeps the first of the targets with one ID, and says which came
// twice: the same config named twice, or two masters running one config
// (an old one still ending beside a new one). Every output and action
// keys pools by their ID.
func once(targets []Target) ([]Target, error) {
	seen := map[PoolID]bool{}
	var out []Target
	var errs []error
	for _, t := range targets {
		id := t.ID()
		if seen[id] {
			errs = append(errs, fmt.Errorf("pool %s is given twice", id))
			continue
		}
		seen[id] = true
		out = append(out, t)
	}
	return out, errors.Join(errs...)
}

// Source names where pools come from, for errors.
type Source int

// The sources of pools.
const (
	SourcePoolSpec  Source = iota + 1 // ADDR[,key=value...]
	SourceFPMConfig                   // a php-fpm.conf
)

// SourceError is a pool source that could not be used: it says which and
// why. The command line names the flag that gave it.
type SourceError struct {
	Source Source
	Value  string
	Err    error
}

func (e *SourceError) Error() string {
	if e.Source == SourcePoolSpec {
		return fmt.Sprintf("pool %q: %v", e.Value, e.Err)
	}
	return fmt.Sprintf("php-fpm config %q: %v", e.Value, e.Err)
}

func (e *SourceError) Unwrap() error { return e.Err }

// Discovery's failures.
var (
	ErrNoMaster = errors.New("no php-fpm master process found")
	// ErrTitleCut: php-fpm cut its title short, so it does not name the
	// config; the config must be named by hand.
	ErrTitleCut = errors.New("its process title does not name its config (php-fpm cut it short)")
)
