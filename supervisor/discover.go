package supervisor

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"

	"github.com/fpmguard/fpmguard/safefile"
	"github.com/fpmguard/fpmguard/supervisor/fpmconf"
	"github.com/shirou/gopsutil/v4/process"
)

// Master is a running php-fpm master found in the process table, one
// fpmguard trusts (trust.go).
type Master struct {
	PID    int
	Config string // the config path as the master sees it
	Root   string // /proc/PID/root when its file system is not ours, else ""
	Cred   MasterCred
}

// FindMasters scans the process table once for the php-fpm masters
// fpmguard trusts by default: root's and its own user's. It is for start-up
// only: the watch loop never scans the whole table.
func FindMasters(ctx context.Context) ([]Master, error) {
	masters, _, err := ScanMasters(ctx, Trust{})
	return masters, err
}

// ScanMasters scans the process table once for processes with a master's
// title. It returns the masters tr trusts and discovers, and why each
// process it does not trust is skipped (an *UntrustedMasterError each).
func ScanMasters(ctx context.Context, tr Trust) (trusted []Master, untrusted []error, err error) {
	pids, err := process.PidsWithContext(ctx)
	if err != nil {
		return nil, nil, fmt.Errorf("listing processes: %w", err)
	}
	for _, pid := range pids {
		if !mayBeMaster(int(pid)) {
			continue
		}
		p := &process.Process{Pid: pid}
		title, err := p.CmdlineWithContext(ctx)
		if err != nil || !IsMasterTitle(title) {
			continue
		}
		cred, err := tr.Verify(int(pid), title, "")
		if err != nil {
			untrusted = append(untrusted, err)
			continue
		}
		m := Master{PID: int(pid), Cred: cred}
		if m.Root, err = foreignRoot(m.PID); err != nil {
			untrusted = append(untrusted, &UntrustedMasterError{PID: m.PID, Err: err})
			continue
		}
		m.Config, _ = MasterConfigFromTitle(title)
		if m.Config != "" && !path.IsAbs(m.Config) {
			// `php-fpm -y rel.conf` names the file relative to its cwd.
			if cwd, err := os.Readlink(fmt.Sprintf("/proc/%d/cwd", pid)); err == nil {
				m.Config = path.Join(cwd, m.Config)
			}
		}
		// Named only when a pattern asks: naming a master in another
		// root stats it.
		if len(tr.Configs) > 0 && !tr.Discovers(configKey(m)) {
			continue
		}
		trusted = append(trusted, m)
	}
	return trusted, untrusted, nil
}

// mayBeMaster reads the first bytes of a process's command line: only one
// that starts as a master's title is read in full. A scan reads every
// process's, and the full read (gopsutil's, which also stats the file)
// made most of a scan's cost: 7 to 9 ms for 300 processes.
func mayBeMaster(pid int) bool {
	fd, err := syscall.Open("/proc/"+strconv.Itoa(pid)+"/cmdline", syscall.O_RDONLY|syscall.O_CLOEXEC|syscall.O_NOFOLLOW, 0)
	if err != nil {
		return false
	}
	defer syscall.Close(fd)
	var head [len(masterTitleCut)]byte
	n, err := syscall.Read(fd, head[:])
	return err == nil && n == len(head) && string(head[:]) == masterTitleCut
}

// foreignRoot returns /proc/PID/root when the process sees another root
// file system than ours (another container sharing our PID namespace), so
// its config and sockets are read through it; else "". When the roots
// cannot be compared (/proc/PID/root needs CAP_SYS_PTRACE for a process
// with capabilities fpmguard lacks), it fails: taking the process for one
// of this host would read this host's files for it.
func foreignRoot(pid int) (string, error) {
	root := "/proc/" + strconv.Itoa(pid) + "/root"
	var theirs, ours syscall.Stat_t
	if err := syscall.Stat(root+"/", &theirs); err != nil {
		return "", fmt.Errorf("cannot tell which root it lives in: %w", &os.PathError{Op: "stat", Path: root, Err: err})
	}
	if err := syscall.Stat("/", &ours); err != nil {
		return "", fmt.Errorf("cannot tell which root it lives in: %w", &os.PathError{Op: "stat", Path: "/", Err: err})
	}
	if theirs.Dev == ours.Dev && theirs.Ino == ours.Ino {
		return "", nil
	}
	return root, nil
}

// Discover finds the running masters tr trusts and turns every pool of
// their configs into targets. The error says why each other process with
// a master's title was skipped, and which master's config could not be
// read; the pools found are still returned.
func Discover(ctx context.Context, tr Trust) ([]Target, error) {
	masters, errs, err := ScanMasters(ctx, tr)
	if err != nil {
		return nil, err
	}
	if len(masters) == 0 {
		return nil, errors.Join(append([]error{ErrNoMaster}, errs...)...)
	}
	var targets []Target
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

// Discovery follows the running masters from one scan of the process
// table to the next, for serve with no pool named: a scan at a slow
// cadence finds masters started after fpmguard, and the new master of a
// restarted php-fpm (systemctl restart), whose new pid the targets of the
// old one do not name. A master is known by the config it runs, in its
// root: the one that replaces it is the same php-fpm. A master seen again
// as it was (its pid, start and program) keeps its targets; only a new or
// reloaded one's config is read. A master gone and not replaced keeps its
// targets: its pools are reported down, not dropped. It is not safe for
// concurrent use.
type Discovery struct {
	Trust Trust
	known []*knownMaster    // in the order they were first found
	told  map[titleKey]bool // untrusted processes already reported
}

// knownMaster is a master's config as a scan last found it running.
type knownMaster struct {
	key     string // the config it runs, in its root: the same across restarts
	pid     int
	start   uint64 // with pid, one process
	exec    uint64 // its program's ExecID: a reload runs it anew
	targets []Target
	running bool // found by the last scan
}

// Scan scans the process table once. It returns the pools of every master
// found so far, running or not, and whether they changed since the last
// scan. err says what is new since the last scan: a process with a
// master's title fpmguard does not trust (each is told once), a new
// master whose config could not be read. Found says whether any master
// was found yet.
func (d *Discovery) Scan(ctx context.Context) (targets []Target, changed bool, err error) {
	masters, untrusted, err := ScanMasters(ctx, d.Trust)
	if err != nil {
		return d.targets(), false, err
	}
	errs := d.tell(ctx, untrusted)
	for _, k := range d.known {
		k.running = false
	}
	for _, m := range newestOfEach(ctx, masters) {
		k := d.find(m.key)
		if k == nil {
			k = &knownMaster{key: m.key}
			d.known = append(d.known, k)
		}
		k.running = true
		if k.pid == m.PID && k.start == m.start && k.exec == m.exec {
			continue
		}
		k.pid, k.start, k.exec = m.PID, m.start, m.exec
		ts, err := TargetsOfMaster(m.Master)
		if err != nil {
			// Told once for this master: it is not read again until it
			// changes. The pools of the one it replaced stay.
			errs = append(errs, err)
			continue
		}
		k.targets, changed = ts, true
	}
	return d.targets(), changed, errors.Join(errs...)
}

// Found reports a master found by a scan, running or not.
func (d *Discovery) Found() bool { return len(d.known) > 0 }

// Missing reports a master found by an earlier scan that the last one did
// not find running: a php-fpm stopped, or restarting.
func (d *Discovery) Missing() bool {
	for _, k := range d.known {
		if !k.running {
			return true
		}
	}
	return false
}

func (d *Discovery) targets() []Target {
	var out []Target
	for _, k := range d.known {
		out = append(out, k.targets...)
	}
	return out
}

func (d *Discovery) find(key string) *knownMaster {
	for _, k := range d.known {
		if k.key == key {
			return k
		}
	}
	return nil
}

// tell returns the untrusted processes not told before, and forgets those
// gone.
func (d *Discovery) tell(ctx context.Context, untrusted []error) []error {
	seen := map[titleKey]bool{}
	var errs []error
	for _, err := range untrusted {
		key := titleKey{}
		if ue, ok := errors.AsType[*UntrustedMasterError](err); ok {
			osp, _ := SystemProcs.ReadProcess(ctx, ue.PID)
			key = titleKey{ue.PID, osp.StartTicks}
		}
		seen[key] = true
		if !d.told[key] {
			errs = append(errs, err)
		}
	}
	d.told = seen
	return errs
}

// scanned is a trusted master found by a scan, with what tells its
// process and program apart, and the key of the config it runs.
type scanned struct {
	Master
	key         string
	start, exec uint64
}

// newestOfEach keeps, of the masters running one config, the one started
// last: an old master still ending beside its replacement is no longer
// the one to watch.
func newestOfEach(ctx context.Context, masters []Master) []scanned {
	var out []scanned
	for _, m := range masters {
		osp, _ := SystemProcs.ReadProcess(ctx, m.PID)
		s := scanned{Master: m, key: configKey(m), start: osp.StartTicks, exec: osp.ExecID}
		if i := slices.IndexFunc(out, func(o scanned) bool { return o.key == s.key }); i >= 0 {
			if s.start > out[i].start {
				out[i] = s
			}
			continue
		}
		out = append(out, s)
	}
	return out
}

// configKey names the config a master runs, in its root, as MasterName
// does: the same for the master that replaces it. A master whose title
// does not name its config is known by its pid alone.
func configKey(m Master) string {
	if m.Config == "" {
		return "pid " + strconv.Itoa(m.PID)
	}
	return Target{MasterConfig: m.Config, RootName: rootName(m.Root)}.MasterName()
}

// TargetsOfMaster reads a master's config through its root. A config found
// this way was named by no operator, so it is read as the master reads it
// and no more: files only root may change, readable by the master's user,
// ${VAR} from the master's own environment, and errors that quote none of
// it.
func TargetsOfMaster(m Master) ([]Target, error) {
	if m.Config == "" {
		return nil, fmt.Errorf("php-fpm master %d: %w", m.PID, ErrTitleCut)
	}
	cfg, err := fpmconf.Load(m.Config, fpmconf.Options{
		Root:   m.Root,
		Getenv: masterEnv(m.PID),
		Files:  safefile.Rules{Owners: []uint32{0}, NoOtherWrite: true, ReadableBy: m.Cred.ReadableBy()},
		Redact: true,
	})
	if err != nil {
		return nil, fmt.Errorf("php-fpm master %d: %w", m.PID, err)
	}
	return TargetsFromConfig(cfg, m.Root, m.PID, "discovered")
}

// maxEnviron bounds a master's environment: the kernel's own bound on the
// arguments and environment of a program is 2 MiB or a quarter of its
// stack limit.
const maxEnviron = 4 << 20

// masterEnv looks a variable up in a master's own environment, as php-fpm
// expanded ${VAR} when it read its config. php-fpm overwrites that
// environment with its process title once started (checked on 8.2: every
// byte reads 0), and then every variable is unset here; where it is not, a
// master's value is used, never fpmguard's.
func masterEnv(pid int) func(string) (string, bool) {
	b, err := readProcFileMax(pid, "environ", maxEnviron)
	env := map[string]string{}
	if err == nil {
		for _, kv := range strings.Split(string(b), "\x00") {
			if k, v, ok := strings.Cut(kv, "="); ok && k != "" {
				env[k] = v
			}
		}
	}
	return func(k string) (string, bool) {
		v, ok := env[k]
		return v, ok
	}
}

// LoadFPMConfig reads a php-fpm config the operator named into targets.
// The master is found through the config's pid file. ${VAR} expands from
// fpmguard's own environment: the operator starts both, and chose to name
// this file.
func LoadFPMConfig(path string) ([]Target, error) {
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, &SourceError{Source: SourceFPMConfig, Value: path, Err: err}
	}
	cfg, err := fpmconf.Load(abs, fpmconf.Options{Getenv: os.LookupEnv})
	if err != nil {
		return nil, err
	}
	return TargetsFromConfig(cfg, "", 0, "config")
}

// ErrNotStarted says that a master fpmguard started does not show a
// master's title yet: php-fpm sets it once it has read its config, and
// until then the process may still be the program that starts it
// (chroot(1), say), in fpmguard's own root.
var ErrNotStarted = errors.New("php-fpm has not started yet")

// RunMasterRoot says where master pid, a child fpmguard started itself
// (`run`), lives once php-fpm runs: "" for fpmguard's own root, else its
// /proc/PID/root. It must still be fpmguard's child and a master tr
// trusts: a pid freed meanwhile could be anyone's.
func RunMasterRoot(ctx context.Context, pid int, tr Trust) (string, error) {
	osp, err := SystemProcs.ReadProcess(ctx, pid)
	switch {
	case err != nil:
		return "", err
	case osp.PPID != os.Getpid():
		return "", fmt.Errorf("process %d is no longer fpmguard's child", pid)
	case !IsMasterTitle(osp.Title):
		return "", ErrNotStarted
	}
	if _, err := tr.Verify(pid, osp.Title, ""); err != nil {
		return "", err
	}
	return foreignRoot(pid)
}

// LoadRunConfig reads the config named on `run`'s php-fpm command line as
// its master pid reads it, in root (RunMasterRoot): `run -- chroot ROOT
// php-fpm -y CONF` names CONF as php-fpm sees it inside ROOT. As with
// --fpm-config, the operator named it: ${VAR} expands from fpmguard's
// environment, which the master inherited. A relative path is the
// master's, from its working directory.
func LoadRunConfig(conf, root string, pid int) ([]Target, error) {
	if root == "" {
		ts, err := LoadFPMConfig(conf)
		for i := range ts {
			ts[i].MasterPID = pid
		}
		return ts, err
	}
	if !path.IsAbs(conf) {
		conf = path.Join(cwdInRoot(pid), conf)
	}
	cfg, err := fpmconf.Load(conf, fpmconf.Options{Root: root, Getenv: os.LookupEnv})
	if err != nil {
		return nil, err
	}
	return TargetsFromConfig(cfg, root, pid, "config")
}

// cwdInRoot is the working directory of process pid as it sees it inside
// its root: "/" when that cannot be told.
func cwdInRoot(pid int) string {
	proc := "/proc/" + strconv.Itoa(pid)
	cwd, err1 := os.Readlink(proc + "/cwd")
	root, err2 := os.Readlink(proc + "/root")
	if err1 != nil || err2 != nil {
		return "/"
	}
	if rel, ok := strings.CutPrefix(cwd, strings.TrimSuffix(root, "/")); ok && (rel == "" || strings.HasPrefix(rel, "/")) {
		return "/" + strings.TrimPrefix(rel, "/")
	}
	return "/"
}
