package opcache

import (
	"bytes"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// Root is php-fpm's file system as fpmguard reaches it: its own, or that of
// a master in another container (seen through /proc/PID/root), with a
// pool's chroot below it.
type Root struct {
	// MasterPID is the master whose root holds php-fpm's files; 0 when
	// php-fpm shares fpmguard's root.
	MasterPID int
	// Chroot is the pool's chroot inside that root, "" for none: php-fpm's
	// workers see the paths below it.
	Chroot string
}

func (r Root) String() string {
	var s string
	if r.MasterPID > 0 {
		s = fmt.Sprintf("the root of php-fpm master %d", r.MasterPID)
	} else {
		s = "fpmguard's root"
	}
	if r.Chroot != "" {
		s += ", chroot " + r.Chroot
	}
	return s
}

// Place is the directory of fpmguard's scripts in php-fpm's file system.
//
// Everything written there runs inside php-fpm, and whoever may change a
// directory on its way may swap what php-fpm runs after fpmguard checked
// it. So every directory from the root down must belong to root or to
// fpmguard's user and be writable by nobody else (a sticky directory such
// as /tmp may be on the way, not at the end), and no symlink is followed:
// a link planted in another container's root must never turn a write there
// into a write on the host. Each directory is opened from the one before it
// with O_NOFOLLOW, so the checks and the writes are made on the same
// directories, whatever is renamed meanwhile.
type Place struct {
	Root Root
	Dir  string // absolute, as php-fpm's workers see it
}

// Install makes sure the place holds exactly the embedded status script,
// writing it (atomically, with a rename) when it is missing or differs, and
// returns its path as php-fpm sees it. fpmguard calls it before each use.
func (p Place) Install() (string, error) {
	d, err := p.open()
	if err != nil {
		return "", err
	}
	defer unix.Close(d.fd)
	name := ScriptName()
	if err := sameContent(d.fd, name, Script); err == nil {
		return path.Join(p.Dir, name), nil
	}
	if d.refuse != nil {
		return "", d.refuse
	}
	if err := writeFile(d.fd, name, Script); err != nil {
		return "", d.writeError(err)
	}
	return path.Join(p.Dir, name), nil
}

// action writes the script of one action into the place's actions
// directory and returns its path as php-fpm sees it, and a function that
// removes it.
func (p Place) action(req actionRequest) (string, func(), error) {
	d, err := p.open()
	if err != nil {
		return "", nil, err
	}
	defer unix.Close(d.fd)
	if d.refuse != nil {
		return "", nil, d.refuse
	}
	afd, err := openActions(d.fd, path.Join(d.shown, actionsDir))
	if err != nil {
		return "", nil, d.writeError(err)
	}
	removeStale(afd)
	name := actionName()
	if err := writeNew(afd, name, actionScript(req)); err != nil {
		unix.Close(afd)
		return "", nil, d.writeError(err)
	}
	return path.Join(p.Dir, actionsDir, name), func() {
		_ = unix.Unlinkat(afd, name, 0)
		unix.Close(afd)
	}, nil
}

// actionsDir holds the action scripts, below the place.
const actionsDir = "actions"

// openActions opens (or creates) the actions directory below the place,
// mode 0711: a pool user may run a script there whose name it knows, and
// list none. It is fpmguard's own: a mode that lets others list it is set
// back.
func openActions(dirfd int, shown string) (int, error) {
	fd, err := walkOne(dirfd, shown, actionsDir, true, true, 0o711)
	if err != nil {
		return -1, err
	}
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err == nil && st.Mode&0o044 == 0 {
		return fd, nil
	}
	if err := chmodDir(fd, 0o711); err != nil {
		unix.Close(fd)
		return -1, fmt.Errorf("making %s unlistable: %w", shown, err)
	}
	return fd, nil
}

// staleAction is the age past which an action script is a leftover: a
// call lasts --timeout, seconds at most.
const staleAction = time.Minute

// removeStale removes action scripts left by an fpmguard killed mid-call,
// so that no name a status page once showed keeps working.
func removeStale(afd int) {
	f, err := os.Open("/proc/self/fd/" + strconv.Itoa(afd))
	if err != nil {
		return
	}
	defer f.Close()
	names, _ := f.Readdirnames(-1)
	for _, n := range names {
		var st unix.Stat_t
		if !strings.HasPrefix(n, actionPrefix) || unix.Fstatat(afd, n, &st, unix.AT_SYMLINK_NOFOLLOW) != nil {
			continue
		}
		if time.Since(time.Unix(st.Mtim.Unix())) > staleAction {
			_ = unix.Unlinkat(afd, n, 0)
		}
	}
}

// dir is an open directory of a place.
type dir struct {
	fd     int
	shown  string // how to name it in a message
	root   Root
	refuse error // why nothing may be written there, if so
}

// writeError says what a failed write inside a place means, and the one
// step that fixes it.
func (d dir) writeError(err error) error {
	if err == nil {
		return nil
	}
	step := "give fpmguard a directory of its own: owned by its user, mode 0755"
	if d.root.MasterPID > 0 {
		step = fmt.Sprintf("mount a volume at %s in php-fpm's container (read-only there) and in fpmguard's, owned by root and mode 0755 (examples/kubernetes/sidecar.yaml)", d.shown)
	}
	switch {
	case errors.Is(err, unix.EROFS):
		return fmt.Errorf("placing the opcache script: %s is read-only in %s: %w; %s", d.shown, d.root, err, step)
	case errors.Is(err, unix.EACCES), errors.Is(err, unix.EPERM):
		return fmt.Errorf("placing the opcache script: fpmguard may not write %s in %s: %w; run fpmguard as root, or %s", d.shown, d.root, err, step)
	}
	if d.root == (Root{}) {
		return fmt.Errorf("placing the opcache script: %w", err)
	}
	return fmt.Errorf("placing the opcache script in %s: %w", d.root, err)
}

// open opens the place's directory, creating what is missing. For a
// master in another root, the directory is the one inside that root,
// unless fpmguard's own directory at the same path is the very
// same one (a volume both containers mount): fpmguard then writes through
// its own, which may be writable where php-fpm's view of it is read-only.
func (p Place) open() (dir, error) {
	if !path.IsAbs(p.Dir) || strings.ContainsRune(p.Dir, 0) {
		return dir{}, fmt.Errorf("opcache script directory %q must be an absolute path", p.Dir)
	}
	full := path.Join("/", p.Root.Chroot, p.Dir)
	own := dir{shown: full, root: Root{Chroot: p.Root.Chroot}}
	if p.Root.MasterPID <= 0 {
		own.root = p.Root
		fd, err := walkFrom(ownRoot, full, true)
		own.fd = fd
		return own, own.writeError(err)
	}
	mr, err := openMasterRoot(p.Root.MasterPID)
	if err != nil {
		if !errors.Is(err, unix.EACCES) && !errors.Is(err, unix.EPERM) {
			return dir{}, err
		}
		// fpmguard may not look into php-fpm's root (no CAP_SYS_PTRACE, or
		// another user): only a volume both containers mount at the same
		// path can work, and fpmguard writes its own side of it.
		fd, err2 := walkFrom(ownRoot, full, false)
		if err2 != nil {
			return dir{}, fmt.Errorf("%w; and here %w: mount a volume at %s in php-fpm's container and in fpmguard's (examples/kubernetes/sidecar.yaml)", err, err2, full)
		}
		own.fd = fd
		return own, nil
	}
	defer mr.close()
	theirs := dir{shown: full, root: p.Root}
	tfd, err := walk(mr.fd, full, false)
	if err == nil {
		if ofd, err := walkFrom(ownRoot, full, false); err == nil {
			if sameFile(ofd, tfd) {
				unix.Close(tfd)
				own.fd = ofd
				return own, nil
			}
			unix.Close(ofd)
		}
		// A copy already there is read, and used when it is right.
		theirs.fd, theirs.refuse = tfd, mr.writable()
		return theirs, nil
	}
	if !errors.Is(err, fs.ErrNotExist) {
		return dir{}, theirs.writeError(err)
	}
	if err := mr.writable(); err != nil {
		return dir{}, err
	}
	theirs.fd, err = walk(mr.fd, full, true)
	if err != nil {
		return dir{}, theirs.writeError(err)
	}
	return theirs, nil
}

// masterRoot is a master's root directory, opened through its /proc entry.
type masterRoot struct {
	pid    int
	procfd int // /proc/PID: every later open names the same process
	fd     int
}

func openMasterRoot(pid int) (*masterRoot, error) {
	procfd, err := unix.Open("/proc/"+strconv.Itoa(pid), unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("opening the root of php-fpm master %d: %w", pid, err)
	}
	// "root" is a link to the process's root directory, which the kernel
	// follows to that directory itself, not by name.
	fd, err := unix.Openat(procfd, "root", unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		unix.Close(procfd)
		return nil, fmt.Errorf("opening the root of php-fpm master %d: %w", pid, err)
	}
	return &masterRoot{pid: pid, procfd: procfd, fd: fd}, nil
}

func (m *masterRoot) close() {
	unix.Close(m.fd)
	unix.Close(m.procfd)
}

// writable refuses to write into a root whose mounts a user namespace of
// its own controls. Anyone may create one (unshare -Urm) and bind-mount a
// host directory they can read, /etc say, where fpmguard's directory would
// be: a write there, by root, would land on the host. A mount namespace
// owned by fpmguard's own user namespace was set up by a process as
// privileged as fpmguard (a container runtime), and only such a one may
// change its mounts.
func (m *masterRoot) writable() error {
	ns, err := unix.Openat(m.procfd, "ns/mnt", unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("reading the mount namespace of php-fpm master %d: %w", m.pid, err)
	}
	defer unix.Close(ns)
	owner, err := unix.IoctlRetInt(ns, unix.NS_GET_USERNS)
	if err != nil {
		return fmt.Errorf("reading the owner of php-fpm master %d's mount namespace: %w", m.pid, err)
	}
	defer unix.Close(owner)
	var theirs, ours unix.Stat_t
	if err := unix.Fstat(owner, &theirs); err != nil {
		return fmt.Errorf("reading the owner of php-fpm master %d's mount namespace: %w", m.pid, err)
	}
	if err := unix.Stat("/proc/self/ns/user", &ours); err != nil {
		return fmt.Errorf("reading fpmguard's user namespace: %w", err)
	}
	if theirs.Dev != ours.Dev || theirs.Ino != ours.Ino {
		return fmt.Errorf("php-fpm master %d runs in a user namespace of its own, whose mounts fpmguard does not trust: it writes nothing into its root; mount a volume at the opcache directory in php-fpm's container and in fpmguard's (examples/kubernetes/sidecar.yaml)", m.pid)
	}
	return nil
}

// ownRoot stands for fpmguard's own root directory in walkFrom.
const ownRoot = -1

func walkFrom(root int, full string, create bool) (int, error) {
	if root != ownRoot {
		return walk(root, full, create)
	}
	fd, err := unix.Open("/", unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return -1, fmt.Errorf("opening /: %w", err)
	}
	defer unix.Close(fd)
	return walk(fd, full, create)
}

// walk opens the directory full below the root directory rootfd, one
// component at a time, each opened from the one before with O_NOFOLLOW
// and checked (see Place). create makes what is missing, mode 0755.
func walk(rootfd int, full string, create bool) (int, error) {
	parts := strings.Split(strings.Trim(path.Clean(full), "/"), "/")
	cur, err := unix.Dup(rootfd)
	if err != nil {
		return -1, err
	}
	sofar := ""
	for i, name := range parts {
		if name == "" { // full is "/"
			break
		}
		sofar += "/" + name
		next, err := walkOne(cur, sofar, name, i == len(parts)-1, create, 0o755)
		unix.Close(cur)
		if err != nil {
			return -1, err
		}
		cur = next
	}
	return cur, nil
}

// walkOne opens directory name in parent (sofar names it for messages),
// following no link, creating it with perm when missing and create is set,
// and checks it. The last directory of a place may not be writable by
// others even when sticky.
func walkOne(parent int, sofar, name string, last, create bool, perm uint32) (int, error) {
	if name == "." || name == ".." {
		return -1, fmt.Errorf("%s: no . or .. may stand in the path of fpmguard's scripts", sofar)
	}
	flags := unix.O_PATH | unix.O_DIRECTORY | unix.O_NOFOLLOW | unix.O_CLOEXEC
	fd, err := unix.Openat(parent, name, flags, 0)
	made := false
	if errors.Is(err, unix.ENOENT) && create {
		if err := unix.Mkdirat(parent, name, perm); err != nil && !errors.Is(err, unix.EEXIST) {
			return -1, fmt.Errorf("creating %s: %w", sofar, err)
		}
		made = true
		fd, err = unix.Openat(parent, name, flags, 0)
	}
	if err != nil {
		var st unix.Stat_t
		switch {
		case errors.Is(err, unix.ENOENT):
			return -1, fmt.Errorf("%s: %w", sofar, fs.ErrNotExist)
		case unix.Fstatat(parent, name, &st, unix.AT_SYMLINK_NOFOLLOW) == nil && st.Mode&unix.S_IFMT == unix.S_IFLNK:
			return -1, fmt.Errorf("%s is a symlink: fpmguard follows no link on the way to its scripts; give it a directory whose path holds none", sofar)
		case errors.Is(err, unix.ENOTDIR):
			return -1, fmt.Errorf("%s is not a directory", sofar)
		}
		return -1, fmt.Errorf("opening %s: %w", sofar, err)
	}
	if made {
		// mkdir's mode passed through the umask; the pool user must be
		// able to reach the scripts whatever fpmguard's umask is.
		if err := chmodDir(fd, perm); err != nil {
			unix.Close(fd)
			return -1, fmt.Errorf("creating %s: %w", sofar, err)
		}
	}
	if err := checkDir(fd, sofar, last); err != nil {
		unix.Close(fd)
		return -1, err
	}
	return fd, nil
}

func chmodDir(fd int, perm uint32) error {
	rfd, err := unix.Openat(fd, ".", unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer unix.Close(rfd)
	return unix.Fchmod(rfd, perm)
}

// checkDir checks one directory on the way to fpmguard's scripts.
func checkDir(fd int, sofar string, last bool) error {
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return fmt.Errorf("checking %s: %w", sofar, err)
	}
	mode := st.Mode & 0o7777
	if st.Uid != 0 && int(st.Uid) != os.Geteuid() {
		return fmt.Errorf("%s belongs to uid %d: the directories of fpmguard's scripts must belong to root or to fpmguard's user", sofar, st.Uid)
	}
	if mode&0o022 != 0 && (last || mode&unix.S_ISVTX == 0) {
		return fmt.Errorf("%s is writable by others (mode %o): chmod go-w it, or give fpmguard another directory", sofar, mode)
	}
	return nil
}

func sameFile(a, b int) bool {
	var sa, sb unix.Stat_t
	return unix.Fstat(a, &sa) == nil && unix.Fstat(b, &sb) == nil && sa.Dev == sb.Dev && sa.Ino == sb.Ino
}

// maxScriptBytes bounds what fpmguard reads of a file that should be its
// script: anything larger is not.
const maxScriptBytes = 64 << 10

// sameContent reports (nil) whether name in dirfd is a regular file holding
// exactly want. It follows no link, never blocks on a FIFO, and reads a
// bounded amount. Its errors never quote the file.
func sameContent(dirfd int, name string, want []byte) error {
	fd, err := unix.Openat(dirfd, name, unix.O_RDONLY|unix.O_NONBLOCK|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return err
	}
	f := os.NewFile(uintptr(fd), name)
	defer f.Close()
	return contentOf(f, want)
}

func contentOf(f *os.File, want []byte) error {
	fi, err := f.Stat()
	if err != nil {
		return err
	}
	if !fi.Mode().IsRegular() {
		return fmt.Errorf("%w: not a regular file", ErrScriptMismatch)
	}
	got, err := io.ReadAll(io.LimitReader(f, maxScriptBytes))
	if err != nil {
		return err
	}
	if !bytes.Equal(got, want) {
		return fmt.Errorf("%w (want sha256 %s…)", ErrScriptMismatch, ScriptHash[:12])
	}
	return nil
}

// writeFile replaces name in dirfd with data, through a new file and a
// rename: a worker never sees half a script.
func writeFile(dirfd int, name string, data []byte) error {
	tmp := ".fpmguard-opcache-" + rand.Text() + ".tmp"
	if err := writeNew(dirfd, tmp, data); err != nil {
		return err
	}
	if err := unix.Renameat(dirfd, tmp, dirfd, name); err != nil {
		_ = unix.Unlinkat(dirfd, tmp, 0)
		return err
	}
	return nil
}

// writeNew creates name in dirfd, which must not exist, mode 0644: every
// pool user may read it.
func writeNew(dirfd int, name string, data []byte) error {
	fd, err := unix.Openat(dirfd, name, unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o600)
	if err != nil {
		return err
	}
	f := os.NewFile(uintptr(fd), name)
	_, err = f.Write(data)
	if err == nil {
		err = f.Chmod(0o644)
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		_ = unix.Unlinkat(dirfd, name, 0)
	}
	return err
}

// ErrScriptMismatch says the file at a script path is not fpmguard's.
var ErrScriptMismatch = errors.New("the opcache script differs from this fpmguard's")

// Verify checks that script, a path as php-fpm sees it inside root, holds
// exactly the embedded status script: the copy an operator placed
// (--opcache-script). It is read inside the root: links are followed only
// as far as they stay in it, so that a link planted there never makes
// fpmguard read a file of its own root.
func (r Root) Verify(script string) error {
	if !path.IsAbs(script) {
		return fmt.Errorf("opcache script %q must be an absolute path as php-fpm sees it", script)
	}
	base := "/"
	if r.MasterPID > 0 {
		base = "/proc/" + strconv.Itoa(r.MasterPID) + "/root"
	}
	root, err := os.OpenRoot(base)
	if errors.Is(err, fs.ErrPermission) && r.MasterPID > 0 {
		// fpmguard may not look into php-fpm's root: the script can only
		// be on a volume both mount, and fpmguard reads its own side.
		root, err = os.OpenRoot("/")
	}
	if err != nil {
		return fmt.Errorf("verifying opcache script %s: %w", script, err)
	}
	defer root.Close()
	if r.Chroot != "" {
		inner, err := root.OpenRoot(strings.TrimPrefix(path.Clean(r.Chroot), "/"))
		if err != nil {
			return fmt.Errorf("verifying opcache script %s: opening the chroot: %w", script, err)
		}
		defer inner.Close()
		root = inner
	}
	f, err := root.OpenFile(strings.TrimPrefix(path.Clean(script), "/"), os.O_RDONLY|unix.O_NONBLOCK, 0)
	if err != nil {
		return fmt.Errorf("verifying opcache script %s in %s: %w", script, r, err)
	}
	defer f.Close()
	if err := contentOf(f, Script); err != nil {
		return fmt.Errorf("verifying opcache script %s in %s: %w; copy examples/php/fpmguard-opcache.php of this version there", script, r, err)
	}
	return nil
}
