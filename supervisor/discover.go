package supervisor

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"strconv"
	"syscall"

	"github.com/fpmguard/fpmguard/supervisor/fpmconf"
	"github.com/shirou/gopsutil/v4/process"
)

// Master is a running php-fpm master found in the process table.
type Master struct {
	PID    int
	Config string // the config path as the master sees it
	Root   string // /proc/PID/root when its file system is not ours, else ""
}

// FindMasters scans the process table once for php-fpm masters. It is for
// start-up only: the watch loop never scans the whole table.
func FindMasters(ctx context.Context) ([]Master, error) {
	pids, err := process.PidsWithContext(ctx)
	if err != nil {
		return nil, fmt.Errorf("listing processes: %w", err)
	}
	var out []Master
	for _, pid := range pids {
		p := &process.Process{Pid: pid}
		title, err := p.CmdlineWithContext(ctx)
		if err != nil || !IsMasterTitle(title) {
			continue
		}
		m := Master{PID: int(pid)}
		m.Config, _ = MasterConfigFromTitle(title)
		m.Root = foreignRoot(m.PID)
		if m.Config != "" && !path.IsAbs(m.Config) {
			// `php-fpm -y rel.conf` names the file relative to its cwd.
			if cwd, err := os.Readlink(fmt.Sprintf("/proc/%d/cwd", pid)); err == nil {
				m.Config = path.Join(cwd, m.Config)
			}
		}
		out = append(out, m)
	}
	return out, nil
}

// foreignRoot returns /proc/PID/root when the process sees another root
// file system than ours (another container sharing our PID namespace), so
// its config and sockets are read through it; else "".
func foreignRoot(pid int) string {
	root := "/proc/" + strconv.Itoa(pid) + "/root"
	var theirs, ours syscall.Stat_t
	if syscall.Stat(root+"/", &theirs) != nil || syscall.Stat("/", &ours) != nil {
		return ""
	}
	if theirs.Dev == ours.Dev && theirs.Ino == ours.Ino {
		return ""
	}
	return root
}

// Discover finds running masters and turns every pool of their configs into
// targets. A master whose config cannot be read is reported in the error,
// and the others are still returned.
func Discover(ctx context.Context) ([]Target, error) {
	masters, err := FindMasters(ctx)
	if err != nil {
		return nil, err
	}
	if len(masters) == 0 {
		return nil, ErrNoMaster
	}
	var targets []Target
	var errs []error
	for _, m := range masters {
		ts, err := TargetsOfMaster(m)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		targets = append(targets, ts...)
	}
	return targets, errors.Join(errs...)
}

// TargetsOfMaster reads a master's config through its root.
func TargetsOfMaster(m Master) ([]Target, error) {
	if m.Config == "" {
		return nil, fmt.Errorf("php-fpm master %d: %w", m.PID, ErrTitleCut)
	}
	cfg, err := fpmconf.Load(m.Config, fpmconf.Options{Root: m.Root})
	if err != nil {
		return nil, fmt.Errorf("php-fpm master %d: %w", m.PID, err)
	}
	return TargetsFromConfig(cfg, m.Root, m.PID, "discovered")
}

// LoadFPMConfig reads a php-fpm config into targets. The master is found
// through the config's pid file.
func LoadFPMConfig(path string) ([]Target, error) {
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, &SourceError{Source: SourceFPMConfig, Value: path, Err: err}
	}
	cfg, err := fpmconf.Load(abs, fpmconf.Options{})
	if err != nil {
		return nil, err
	}
	return TargetsFromConfig(cfg, "", 0, "config")
}
