package supervisor

// Which PHP a master runs: read from its binary's ELF file (phpbin), never
// by running it. Advice depends on it: pm.status_listen came with PHP 8.0
// and access.suppress_path with 8.2, and php-fpm refuses a config naming a
// directive it does not have (docs/versions.md).

import (
	"os"
	"strconv"
	"sync"
	"syscall"

	"github.com/fpmguard/fpmguard/phpbin"
)

// binaryKey names a binary file: its device and inode.
type binaryKey struct {
	dev, ino uint64
}

// maxBinaries bounds the cache of versions: a host runs a few php-fpm
// builds.
const maxBinaries = 64

// phpVersions caches the version of each binary file read. A binary is
// what it is whoever runs it, so the cache is the package's, not a
// Prober's.
var phpVersions struct {
	sync.Mutex
	m map[binaryKey]phpbin.Version
}

// MasterPHPVersion returns the PHP version of the binary master pid runs,
// the zero Version when it cannot be read: /proc/PID/exe of a process
// with capabilities fpmguard lacks is closed to it without CAP_SYS_PTRACE.
// Call it for a verified master only (trust.go): the binary is then one
// only root may change. It is read once per binary file, which a stat of
// /proc/PID/exe names on every call, so a master that a reload re-executed
// from an upgraded binary (the same pid) is read again.
func MasterPHPVersion(pid int) phpbin.Version {
	exe := "/proc/" + strconv.Itoa(pid) + "/exe"
	var st syscall.Stat_t
	if err := syscall.Stat(exe, &st); err != nil {
		return phpbin.Version{}
	}
	key := binaryKey{st.Dev, st.Ino}
	phpVersions.Lock()
	v, ok := phpVersions.m[key]
	phpVersions.Unlock()
	if ok {
		return v
	}
	v = readPHPVersion(exe, key)
	phpVersions.Lock()
	if phpVersions.m == nil || len(phpVersions.m) >= maxBinaries {
		phpVersions.m = map[binaryKey]phpbin.Version{}
	}
	phpVersions.m[key] = v
	phpVersions.Unlock()
	return v
}

// readPHPVersion reads the version from exe, if it is still the file key
// names: the process may have exec'd since the stat.
func readPHPVersion(exe string, key binaryKey) phpbin.Version {
	f, err := os.Open(exe)
	if err != nil {
		return phpbin.Version{}
	}
	defer f.Close()
	var st syscall.Stat_t
	if err := syscall.Fstat(int(f.Fd()), &st); err != nil || (binaryKey{st.Dev, st.Ino}) != key || st.Mode&syscall.S_IFMT != syscall.S_IFREG {
		return phpbin.Version{}
	}
	b, err := phpbin.Read(f, st.Size)
	if err != nil {
		return phpbin.Version{}
	}
	return b.Version
}
