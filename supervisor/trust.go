package supervisor

// Which processes fpmguard trusts as php-fpm masters.
//
// Any user can start a process whose title reads "php-fpm: master process
// (CONF)", and the pool user can write php-fpm's pid file. fpmguard acts
// for a master (reads its config and files as root, signals it, tests its
// config) only once the kernel has vouched for it: every uid of the
// process is root's, fpmguard's own, or one the operator named; its
// binary is a file only root may change; and its title names the config
// fpmguard expects.

import (
	"errors"
	"fmt"
	"os"
	"os/user"
	"path"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/fpmguard/fpmguard/safefile"
	"golang.org/x/sys/unix"
)

// Trust says whose php-fpm masters fpmguard acts for. Its zero value
// trusts masters of root and of fpmguard's own user.
type Trust struct {
	// MasterUsers are more uids masters may run as: php-fpm run as a user
	// of its own (a container's, say) beside a root fpmguard. Processes of
	// such a user (its pool's PHP code, often) can pass for its master, so
	// fpmguard reads for such a master only what that user may read.
	MasterUsers []uint32
	// Configs, when set, narrows discovery to the masters whose name (the
	// config they run, as MasterName gives it) matches one of these
	// path.Match patterns: one fpmguard per application on a host or in a
	// pod that runs several. Other masters are left alone: not probed, not
	// reported. Pools named by their socket or config are not discovery's,
	// and are kept whatever their master.
	Configs []string
}

// Discovers reports whether discovery keeps the master of this name.
func (tr Trust) Discovers(name string) bool {
	if len(tr.Configs) == 0 {
		return true
	}
	for _, pattern := range tr.Configs {
		if ok, _ := path.Match(pattern, name); ok {
			return true
		}
	}
	return false
}

// ownUID is fpmguard's own user.
var ownUID = uint32(os.Geteuid())

// uids lists the users a trusted master may run as.
func (tr Trust) uids() []uint32 {
	return append([]uint32{0, ownUID}, tr.MasterUsers...)
}

// FileOwners lists the users who may own the files fpmguard reads on a
// trusted master's behalf: its pid file and slowlogs.
func (tr Trust) FileOwners() []uint32 { return tr.uids() }

// UntrustedMasterError is a process with a master's title that fpmguard
// does not act for, and why.
type UntrustedMasterError struct {
	PID int
	Err error // why
}

func (e *UntrustedMasterError) Error() string {
	return fmt.Sprintf("php-fpm master %d is not trusted: %v", e.PID, e.Err)
}

func (e *UntrustedMasterError) Unwrap() error { return e.Err }

// ErrUntrustedUser marks an UntrustedMasterError whose only fault is the
// user the master runs as: the operator may name that user.
var ErrUntrustedUser = errors.New("it runs as a user fpmguard does not trust for php-fpm masters")

// MasterCred is what the kernel says of a master's user, once trusted.
type MasterCred struct {
	UID  uint32
	GIDs []uint32 // its group and its supplementary groups
}

// ReadableBy is the credentials fpmguard reads files with on the master's
// behalf: nil for a root master, which may read anything.
func (c MasterCred) ReadableBy() *safefile.Cred {
	if c.UID == 0 {
		return nil
	}
	return &safefile.Cred{UID: c.UID, GIDs: c.GIDs}
}

// Verify says whether process pid, whose title is title, is a php-fpm
// master fpmguard trusts, running config conf ("" for any): an
// *UntrustedMasterError when it is not. The process's title must have
// been read by the caller.
func (tr Trust) Verify(pid int, title, conf string) (MasterCred, error) {
	untrusted := func(format string, args ...any) (MasterCred, error) {
		return MasterCred{}, &UntrustedMasterError{PID: pid, Err: fmt.Errorf(format, args...)}
	}
	if !IsMasterTitle(title) {
		return untrusted("its title is not a php-fpm master's")
	}
	cred, err := readCred(pid)
	if err != nil {
		return untrusted("cannot read its user: %w", err)
	}
	if !contains(tr.uids(), cred.UID) {
		return MasterCred{}, &UntrustedMasterError{PID: pid, Err: fmt.Errorf("%w: uid %d%s", ErrUntrustedUser, cred.UID, userName(cred.UID))}
	}
	if why := checkBinary(pid); why != "" {
		return untrusted("%s", why)
	}
	if conf != "" {
		if have, ok := MasterConfigFromTitle(title); ok && !sameConfig(pid, have, conf) {
			return untrusted("it runs config %s, not %s", have, conf)
		}
	}
	return cred, nil
}

// readCred reads a process's user and groups from /proc/PID/status. Every
// uid of the process (real, effective, saved, file system) must be the
// same: a set-uid program started by the pool user has a real uid of the
// pool user's and an effective one of root's, and is no root master.
func readCred(pid int) (MasterCred, error) {
	b, err := readProcFile(pid, "status")
	if err != nil {
		return MasterCred{}, err
	}
	var c MasterCred
	var uids, gids []uint32
	for _, line := range strings.Split(string(b), "\n") {
		key, rest, ok := strings.Cut(line, ":")
		if !ok {
			continue
		}
		switch key {
		case "Uid":
			uids = parseIDs(rest)
		case "Gid":
			gids = parseIDs(rest)
		case "Groups":
			c.GIDs = append(c.GIDs, parseIDs(rest)...)
		}
	}
	if len(uids) != 4 || len(gids) != 4 {
		return MasterCred{}, errors.New("no Uid and Gid lines in its status")
	}
	for _, u := range uids[1:] {
		if u != uids[0] {
			return MasterCred{}, fmt.Errorf("its uids differ (real %d, effective %d, saved %d, file system %d): a set-uid program", uids[0], uids[1], uids[2], uids[3])
		}
	}
	c.UID = uids[0]
	c.GIDs = append([]uint32{gids[0]}, c.GIDs...)
	return c, nil
}

func parseIDs(s string) []uint32 {
	var out []uint32
	for _, f := range strings.Fields(s) {
		n, err := strconv.ParseUint(f, 10, 32)
		if err != nil {
			return nil
		}
		out = append(out, uint32(n))
	}
	return out
}

func contains(list []uint32, v uint32) bool {
	for _, x := range list {
		if x == v {
			return true
		}
	}
	return false
}

// userName is " (name)" for a uid this host names, for messages.
func userName(uid uint32) string {
	if u, err := user.LookupId(strconv.FormatUint(uint64(uid), 10)); err == nil {
		return " (" + u.Username + ")"
	}
	return ""
}

// checkBinary says what is wrong with the binary a process runs, "" when
// only root may change it. It looks at the file the kernel runs, through
// a descriptor of /proc/PID/exe, never at a path: the path may have been
// replaced since the process started.
func checkBinary(pid int) string {
	fd, err := unix.Open("/proc/"+strconv.Itoa(pid)+"/exe", unix.O_PATH|unix.O_CLOEXEC, 0)
	if err != nil {
		if errors.Is(err, unix.EACCES) || errors.Is(err, unix.EPERM) {
			// The binary of another user's process, or of one holding
			// capabilities fpmguard lacks, is shown only with
			// CAP_SYS_PTRACE (a sidecar may run without it). The user
			// check stands alone then: a process of the pool user fails
			// it, and fpmguard never runs a master's binary anyway.
			return ""
		}
		return fmt.Sprintf("cannot look at its binary: %v", err)
	}
	defer unix.Close(fd)
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return fmt.Sprintf("cannot look at its binary: %v", err)
	}
	owners := []uint32{0, ownUID}
	switch {
	case st.Mode&unix.S_IFMT != unix.S_IFREG:
		return "its binary is not a regular file"
	case !contains(owners, st.Uid):
		return fmt.Sprintf("its binary belongs to uid %d%s, not to root", st.Uid, userName(st.Uid))
	case st.Mode&0o022 != 0:
		return fmt.Sprintf("its binary is writable by its group or others (mode %04o)", st.Mode&0o7777)
	}
	return ""
}

// sameConfig reports whether a master's title, naming have, names conf.
// A relative path is the master's own, from its working directory.
func sameConfig(pid int, have, conf string) bool {
	if !path.IsAbs(have) {
		cwd, err := os.Readlink("/proc/" + strconv.Itoa(pid) + "/cwd")
		if err != nil {
			return false
		}
		have = path.Join(cwd, have)
	}
	if filepath.Clean(have) == filepath.Clean(conf) {
		return true
	}
	// The same file by another name, a link of /etc/php, say. Only a
	// name on this host's own root can be compared so.
	a, errA := os.Stat(have)
	b, errB := os.Stat(conf)
	return errA == nil && errB == nil && os.SameFile(a, b)
}
