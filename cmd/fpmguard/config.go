package main

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"sort"
	"strconv"
	"strings"

	"github.com/alecthomas/kingpin/v2"
	"go.yaml.in/yaml/v3"
)

// parseArgs parses the command line, then fills every flag the command line
// did not set from the --config file. The file's keys are long flag names;
// a repeatable flag takes a list, and each pool may be a --pool string or a
// map of its options with `listen` for the address.
func parseArgs(app *kingpin.Application, c *cli, args []string) (string, error) {
	args, err := switchValues(app, hoistFlags(app, args))
	if err != nil {
		return "", err
	}
	// Parse first: it answers shell completion (--completion-bash), for
	// which a partial command line is no error. It fails where
	// ParseContext does.
	cmd, err := app.Parse(args)
	if err != nil {
		return cmd, explainParseError(app, args, err)
	}
	if c.config == "" {
		return cmd, nil
	}
	pctx, err := app.ParseContext(args)
	if err != nil {
		return cmd, explainParseError(app, args, err)
	}
	given := map[string]bool{}
	for _, el := range pctx.Elements {
		if f, ok := el.Clause.(*kingpin.FlagClause); ok {
			given[f.Model().Name] = true
		}
	}
	file, err := loadConfigFile(c.config)
	if err != nil {
		return cmd, err
	}
	flags := commandFlags(app, cmd)
	keys := make([]string, 0, len(file))
	for k := range file {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		name, values := switchKey(flags, k, file[k])
		f, known := flags[name]
		if !known {
			if anyFlag(app, name) {
				continue // a flag of another command
			}
			return cmd, fmt.Errorf("config %s: unknown key %q; keys are the long flag names of `fpmguard %s --help`", c.config, k, cmd)
		}
		if name == "config" {
			return cmd, fmt.Errorf("config %s: a config file cannot name another with config", c.config)
		}
		if given[name] {
			continue
		}
		for _, v := range values {
			if err := f.Value.Set(v); err != nil {
				var bf *badFlag
				if errors.As(err, &bf) {
					return cmd, fmt.Errorf("config %s: %s %q: %s", c.config, k, v, bf.fix)
				}
				return cmd, fmt.Errorf("config %s: %s: %v", c.config, k, err)
			}
		}
	}
	return cmd, nil
}

// commandFlags maps the long names of the global flags and cmd's flags.
func commandFlags(app *kingpin.Application, cmd string) map[string]*kingpin.FlagModel {
	m := app.Model()
	out := map[string]*kingpin.FlagModel{}
	for _, f := range m.Flags {
		out[f.Name] = f
	}
	for _, sub := range m.Commands {
		if sub.FullCommand == cmd {
			for _, f := range sub.Flags {
				out[f.Name] = f
			}
		}
	}
	return out
}

// switchKey reads key no-NAME of a switch NAME (no-opcache: true) as the
// switch turned the other way, as --no-opcache is on the command line.
func switchKey(flags map[string]*kingpin.FlagModel, key string, values []string) (string, []string) {
	name, ok := strings.CutPrefix(key, "no-")
	if f, known := flags[name]; !ok || !known || !f.IsBoolFlag() || len(values) != 1 {
		return key, values
	}
	b, err := strconv.ParseBool(values[0])
	if err != nil {
		return name, values // the switch's own check says why
	}
	return name, []string{strconv.FormatBool(!b)}
}

func anyFlag(app *kingpin.Application, name string) bool {
	for _, sub := range app.Model().Commands {
		for _, f := range sub.Flags {
			if f.Name == name {
				return true
			}
		}
	}
	return false
}

// loadConfigFile reads the YAML file into flag values as strings.
func loadConfigFile(path string) (map[string][]string, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("reading config: %w", err)
	}
	var raw map[string]yaml.Node
	if err := yaml.NewDecoder(bytes.NewReader(data)).Decode(&raw); err != nil && !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("config %s is not valid YAML: %v", path, err)
	}
	out := map[string][]string{}
	for k, node := range raw {
		vals, err := nodeValues(k, &node)
		if err != nil {
			return nil, fmt.Errorf("config %s: line %d: %w", path, node.Line, err)
		}
		out[k] = vals
	}
	return out, nil
}

// nodeValues turns a scalar, a list of scalars, or (for pool) a list of
// maps into flag values.
func nodeValues(key string, n *yaml.Node) ([]string, error) {
	switch n.Kind {
	case yaml.ScalarNode:
		return []string{n.Value}, nil
	case yaml.SequenceNode:
		var out []string
		for _, item := range n.Content {
			switch {
			case item.Kind == yaml.ScalarNode:
				out = append(out, item.Value)
			case item.Kind == yaml.MappingNode && key == "pool":
				spec, err := poolSpecFromMap(item)
				if err != nil {
					return nil, err
				}
				out = append(out, spec)
			default:
				return nil, fmt.Errorf("%s: list items must be plain values", key)
			}
		}
		return out, nil
	}
	return nil, fmt.Errorf("%s: expected a value or a list of values", key)
}

// poolSpecFromMap writes a pool map as the --pool string it stands for.
func poolSpecFromMap(n *yaml.Node) (string, error) {
	var m map[string]string
	if err := n.Decode(&m); err != nil {
		return "", fmt.Errorf("pool: each option must be a plain value: %v", err)
	}
	listen, ok := m["listen"]
	if !ok {
		return "", errors.New("pool: no listen address; write e.g. listen: unix:///run/php/www.sock")
	}
	delete(m, "listen")
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	parts := []string{listen}
	for _, k := range keys {
		if strings.Contains(m[k], ",") {
			return "", fmt.Errorf("pool: %s %q must not contain a comma", k, m[k])
		}
		parts = append(parts, k+"="+m[k])
	}
	return strings.Join(parts, ","), nil
}
