package main

import (
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/alecthomas/kingpin/v2"
)

// The command line around kingpin: flags written before their command are
// moved after it, and kingpin's own errors become one line that names the
// flag and a fix, as the value types' errors do.

// hoistFlags moves the flags given before the command to right after it:
// `fpmguard --timeout 2s status` is `fpmguard status --timeout 2s`. Such
// flags were global once; each command declares its own now. kingpin's
// own flags (--help, --version) stay where they are, and so does anything
// hoistFlags cannot read for sure.
func hoistFlags(app *kingpin.Application, args []string) []string {
	m := app.Model()
	var moved []string
	i := 0
	for i < len(args) {
		a := args[i]
		if a == "--" || !strings.HasPrefix(a, "-") || a == "-" {
			break
		}
		f := anyFlagModel(m, a)
		if f == nil || appFlag(m, f.Name) {
			return args
		}
		moved = append(moved, a)
		i++
		if !f.IsBoolFlag() && !strings.Contains(a, "=") && !isShortWithValue(a) {
			if i >= len(args) {
				return args
			}
			moved = append(moved, args[i])
			i++
		}
	}
	if len(moved) == 0 || i >= len(args) {
		return args
	}
	path := []string{args[i]}
	cmd := commandNamed(m.Commands, args[i])
	if cmd == nil {
		return args
	}
	if len(cmd.Commands) > 0 && i+1 < len(args) && commandNamed(cmd.Commands, args[i+1]) != nil {
		path = append(path, args[i+1])
	}
	out := append(slices.Clone(path), moved...)
	return append(out, args[i+len(path):]...)
}

// switchValues rewrites --NAME=VALUE of a switch as --NAME or --no-NAME:
// kingpin reads no value after a switch's "=", and would leave VALUE
// behind as an argument, which run would take for php-fpm's command.
func switchValues(app *kingpin.Application, args []string) ([]string, error) {
	m := app.Model()
	out := slices.Clone(args)
	for i, a := range args {
		if a == "--" {
			break
		}
		name, value, ok := strings.Cut(strings.TrimPrefix(a, "--"), "=")
		if !ok || !strings.HasPrefix(a, "--") {
			continue
		}
		f := anyFlagModel(m, "--"+name)
		if f == nil || !f.IsBoolFlag() {
			continue
		}
		on, err := strconv.ParseBool(value)
		if err != nil {
			return nil, &badFlag{f.Name, value, fmt.Sprintf("a switch: write --%s or --no-%s", f.Name, f.Name)}
		}
		if name != f.Name { // --no-NAME=true
			on = !on
		}
		out[i] = "--" + f.Name
		if !on {
			out[i] = "--no-" + f.Name
		}
	}
	return out, nil
}

// isShortWithValue is -ojson: a short flag with its value attached.
func isShortWithValue(a string) bool {
	return !strings.HasPrefix(a, "--") && len(a) > 2
}

// anyFlagModel is the flag token a names in any command, nil if none.
// --no-NAME names the switch NAME.
func anyFlagModel(m *kingpin.ApplicationModel, a string) *kingpin.FlagModel {
	var found *kingpin.FlagModel
	match := func(f *kingpin.FlagModel) bool {
		if name, ok := strings.CutPrefix(a, "--"); ok {
			name, _, _ = strings.Cut(name, "=")
			if f.Name == name {
				return true
			}
			off, ok := strings.CutPrefix(name, "no-")
			return ok && f.Name == off && f.IsBoolFlag()
		}
		return len(a) >= 2 && f.Short != 0 && rune(a[1]) == f.Short
	}
	var walk func(flags []*kingpin.FlagModel, cmds []*kingpin.CmdModel)
	walk = func(flags []*kingpin.FlagModel, cmds []*kingpin.CmdModel) {
		for _, f := range flags {
			if found == nil && match(f) {
				found = f
			}
		}
		for _, c := range cmds {
			walk(c.Flags, c.Commands)
		}
	}
	walk(m.Flags, m.Commands)
	return found
}

func appFlag(m *kingpin.ApplicationModel, name string) bool {
	return slices.ContainsFunc(m.Flags, func(f *kingpin.FlagModel) bool { return f.Name == name })
}

func commandNamed(cmds []*kingpin.CmdModel, name string) *kingpin.CmdModel {
	for _, c := range cmds {
		if c.Name == name || slices.Contains(c.Aliases, name) {
			return c
		}
	}
	return nil
}

// commandOf is the command args select, as far as it can be told without
// parsing them ("" when none): check's answer to a bad flag is UNKNOWN.
func commandOf(app *kingpin.Application, args []string) string {
	m := app.Model()
	for i := 0; i < len(args); i++ {
		a := args[i]
		if a == "--" {
			return ""
		}
		if !strings.HasPrefix(a, "-") {
			if c := commandNamed(m.Commands, a); c != nil {
				return c.FullCommand
			}
			return ""
		}
		if f := anyFlagModel(m, a); f != nil && !f.IsBoolFlag() && !strings.Contains(a, "=") && !isShortWithValue(a) {
			i++
		}
	}
	return ""
}

var (
	errExpectedArg  = regexp.MustCompile(`^expected argument for flag '(-{1,2}[^']+)'$`)
	errUnknownFlag  = regexp.MustCompile(`^unknown (?:long|short) flag '(-{1,2}[^']+)'$`)
	errExpectedCmd  = regexp.MustCompile(`^expected command but got "(.*)"$`)
	errRepeated     = regexp.MustCompile(`^flag '([^']+)' cannot be repeated$`)
	errRequiredArg  = regexp.MustCompile(`^required argument '([^']+)' not provided$`)
	errSubcommand   = regexp.MustCompile(`^must select a subcommand of '([^']+)'$`)
	errUnexpected   = regexp.MustCompile(`^unexpected (.*)$`)
	errNoCommand    = regexp.MustCompile(`^(?:command not specified|expected command but got nothing)$`)
	errRequiredFlag = regexp.MustCompile(`^required flag (-{1,2}\S+) not provided$`)
)

// explainParseError turns one of kingpin's errors about args into one
// line naming the flag and a fix. A badFlag passes unchanged, and an
// error kingpin may word otherwise some day passes as it is.
func explainParseError(app *kingpin.Application, args []string, err error) error {
	var bf *badFlag
	if errors.As(err, &bf) {
		return err
	}
	m := app.Model()
	msg := err.Error()
	cmd := commandOf(app, args)
	help := "fpmguard --help"
	if cmd != "" {
		help = "fpmguard " + cmd + " --help"
	}
	switch {
	case errExpectedArg.MatchString(msg):
		token := errExpectedArg.FindStringSubmatch(msg)[1]
		f := anyFlagModel(m, token)
		i := slices.Index(args, token)
		if f == nil || i < 0 || i+1 >= len(args) || args[i+1] == "--" {
			return fmt.Errorf("%s needs a value; see %s", token, help)
		}
		value := args[i+1]
		// The value began with "-": kingpin took it for a flag. Check it
		// as the flag would, on a value of its own type.
		if err := checkValue(f, value); err != nil {
			return err
		}
		return &badFlag{f.Name, value, fmt.Sprintf(`a value that begins with "-" must be joined to its flag: --%s=%s`, f.Name, value)}
	case errUnknownFlag.MatchString(msg):
		token := errUnknownFlag.FindStringSubmatch(msg)[1]
		if owners := commandsWithFlag(m, token); len(owners) > 0 && cmd != "" {
			return fmt.Errorf("%s is not a flag of %s: it is one of %s; see %s", token, cmd, orList(owners), help)
		}
		return fmt.Errorf("unknown flag %s; see %s", token, help)
	case errExpectedCmd.MatchString(msg):
		got := errExpectedCmd.FindStringSubmatch(msg)[1]
		return fmt.Errorf("unknown command %q; the commands are %s; see fpmguard --help", got, orList(commandNames(m)))
	case errNoCommand.MatchString(msg):
		return fmt.Errorf("no command given; the commands are %s; see fpmguard --help", orList(commandNames(m)))
	case errRepeated.MatchString(msg):
		return fmt.Errorf("--%s is given twice: give it once", errRepeated.FindStringSubmatch(msg)[1])
	case errRequiredArg.MatchString(msg) && cmd == "run":
		return errors.New("run needs php-fpm's command line after --, e.g. fpmguard run -- php-fpm8.2 -F -y /etc/php/8.2/fpm/php-fpm.conf")
	case errRequiredArg.MatchString(msg):
		return fmt.Errorf("%s needs <%s>; see %s", cmd, errRequiredArg.FindStringSubmatch(msg)[1], help)
	case errSubcommand.MatchString(msg):
		name := errSubcommand.FindStringSubmatch(msg)[1]
		var subs []string
		if c := commandNamed(m.Commands, name); c != nil {
			for _, s := range c.Commands {
				subs = append(subs, s.Name)
			}
		}
		return fmt.Errorf("%s needs a subcommand: %s; see fpmguard %s --help", name, orList(subs), name)
	case errRequiredFlag.MatchString(msg):
		return fmt.Errorf("%s is required; see %s", errRequiredFlag.FindStringSubmatch(msg)[1], help)
	case errUnexpected.MatchString(msg):
		return fmt.Errorf("unexpected %s: %s takes no such argument; see %s", errUnexpected.FindStringSubmatch(msg)[1], orDefault(cmd, "fpmguard"), help)
	}
	return err
}

func orDefault(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

// checkValue runs flag f's own check on value, on a fresh value of its
// type: the command line is refused anyway, and nothing is kept.
func checkValue(f *kingpin.FlagModel, value string) error {
	var fresh kingpin.Value
	switch v := f.Value.(type) {
	case *durationValue:
		c := *v
		c.to = new(time.Duration)
		fresh = &c
	case *intValue[int]:
		c := *v
		c.to = new(int)
		fresh = &c
	case *intValue[int64]:
		c := *v
		c.to = new(int64)
		fresh = &c
	case *shareValue:
		c := *v
		c.to = new(float64)
		fresh = &c
	case *textValue:
		c := *v
		c.to, c.list = new(string), nil
		fresh = &c
	default:
		return nil
	}
	return fresh.Set(value)
}

// commandsWithFlag lists the commands that declare (and show) the flag
// token names.
func commandsWithFlag(m *kingpin.ApplicationModel, token string) []string {
	name, _, _ := strings.Cut(strings.TrimLeft(token, "-"), "=")
	var out []string
	var walk func(cmds []*kingpin.CmdModel)
	walk = func(cmds []*kingpin.CmdModel) {
		for _, c := range cmds {
			if slices.ContainsFunc(c.Flags, func(f *kingpin.FlagModel) bool { return f.Name == name && !f.Hidden }) {
				out = append(out, c.FullCommand)
			}
			walk(c.Commands)
		}
	}
	walk(m.Commands)
	return out
}

func commandNames(m *kingpin.ApplicationModel) []string {
	var out []string
	for _, c := range m.Commands {
		if !c.Hidden && c.Name != "help" {
			out = append(out, c.Name)
		}
	}
	return out
}
