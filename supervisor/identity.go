package supervisor

// Which pool is which, across masters. Debian names the default pool
// "www" in every PHP version, so a host with two versions has two "www"
// pools: a pool's name alone is no identity. A pool is its name and its
// master's name, and the master's name is the config the master runs,
// which stays the same across restarts: never a pid.

import (
	"errors"
	"fmt"
	"os"
	"path"
	"sort"
	"strings"

	"golang.org/x/sys/unix"
)

// PoolID names one pool among every pool fpmguard watches: its name in its
// config and its master's name (Target.MasterName). Two pools of the same
// name under two masters have two IDs; a pool keeps its ID when its master
// restarts.
type PoolID struct {
	Pool   string
	Master string
}

// String is the ID as people write it: NAME@MASTER, e.g.
// www@/etc/php/8.2/fpm/php-fpm.conf.
func (id PoolID) String() string {
	if id.Master == "" {
		return id.Pool
	}
	return id.Pool + "@" + id.Master
}

// Compare orders IDs by pool name, then by master.
func (id PoolID) Compare(o PoolID) int {
	if c := strings.Compare(id.Pool, o.Pool); c != 0 {
		return c
	}
	return strings.Compare(id.Master, o.Master)
}

// ID is the pool's identity.
func (t Target) ID() PoolID { return PoolID{Pool: t.Name, Master: t.MasterName()} }

// MasterName names the pool's master for every output, stable across
// restarts of php-fpm and of fpmguard:
//
//   - the config the master runs, as php-fpm sees it
//     (/etc/php/8.2/fpm/php-fpm.conf);
//   - for a master in another root, that root first: ROOT//CONFIG, where
//     ROOT is the root's path on fpmguard's side when it has one (a chroot:
//     /srv/php74//etc/php/7.4/fpm/php-fpm.conf), else root:MAJOR:MINOR:INODE
//     of its root directory (another container's, which no path of
//     fpmguard's reaches; the same while that container lives);
//   - for a pool given by --pool, which names no config: its pid file when
//     given (pid=), else the pool's own address.
func (t Target) MasterName() string {
	switch {
	case t.MasterConfig != "" && t.RootName != "":
		return t.RootName + "/" + path.Clean(t.MasterConfig)
	case t.MasterConfig != "":
		return path.Clean(t.MasterConfig)
	case t.MasterPIDFile != "":
		return t.MasterPIDFile
	}
	return t.Address.InRoot().String()
}

// ID is the pool's identity.
func (r *PoolReport) ID() PoolID { return PoolID{Pool: r.Name, Master: r.MasterName} }

// rootName names the root file system at root (/proc/PID/root of a master
// in another root) for MasterName: the path of that root on fpmguard's
// side when there is one, checked to be the same directory (a chroot),
// else the device and inode of its root directory. /proc/PID/root itself
// changes with every restart.
func rootName(root string) string {
	if root == "" {
		return ""
	}
	var theirs unix.Stat_t
	if err := unix.Stat(root+"/", &theirs); err != nil {
		// Discovery stat()ed it a moment ago; nothing better is known.
		return path.Clean(root)
	}
	p := root
	if l, err := os.Readlink(root); err == nil {
		// The kernel names the root as its mount namespace sees it; only
		// a directory of fpmguard's own namespace that is that root names
		// it here.
		p = l
	}
	if path.IsAbs(p) && p != "/" && !strings.HasPrefix(p, "/proc/") {
		var ours unix.Stat_t
		if unix.Stat(p+"/", &ours) == nil && ours.Dev == theirs.Dev && ours.Ino == theirs.Ino {
			return path.Clean(p)
		}
	}
	return fmt.Sprintf("root:%d:%d:%d", unix.Major(uint64(theirs.Dev)), unix.Minor(uint64(theirs.Dev)), theirs.Ino)
}

// Errors of FindPool.
var (
	ErrUnknownPool   = errors.New("no such pool")
	ErrAmbiguousPool = errors.New("more than one pool has that name")
)

// FindPool finds the pool a person named among ids: by its full ID
// (NAME@MASTER), by its name alone when no other pool has it, or by
// NAME@CONFIG with the config as php-fpm sees it, when the master lives in
// another root. A name that fits more than one pool is refused with
// ErrAmbiguousPool, and the error lists the IDs to choose from.
func FindPool(ids []PoolID, ref string) (PoolID, error) {
	for _, id := range ids {
		if id.String() == ref {
			return id, nil
		}
	}
	var found []PoolID
	for _, id := range ids {
		if id.Pool == ref || matchRef(id, ref) {
			found = append(found, id)
		}
	}
	switch len(found) {
	case 0:
		return PoolID{}, fmt.Errorf("pool %q: %w", ref, ErrUnknownPool)
	case 1:
		return found[0], nil
	}
	sort.Slice(found, func(i, j int) bool { return found[i].Compare(found[j]) < 0 })
	names := make([]string, len(found))
	for i, id := range found {
		names[i] = id.String()
	}
	return PoolID{}, fmt.Errorf("pool %q: %w under %d masters: name one as %s", ref, ErrAmbiguousPool, len(found), strings.Join(names, " or "))
}

// matchRef reports whether ref is NAME@M for id, M its master's name or,
// for a master in another root (ROOT//CONFIG), its config. A pool's name
// may hold an @ too: every split is tried.
func matchRef(id PoolID, ref string) bool {
	for i := strings.IndexByte(ref, '@'); i >= 0; {
		name, m := ref[:i], ref[i+1:]
		if name == id.Pool && m != "" && (m == id.Master || strings.HasSuffix(id.Master, "/"+m) && strings.HasPrefix(m, "/")) {
			return true
		}
		j := strings.IndexByte(ref[i+1:], '@')
		if j < 0 {
			break
		}
		i += 1 + j
	}
	return false
}

// Labels names each pool of ids for people, in text: its name alone when
// no other pool of ids has it, its full ID when one does. Machine outputs
// (metrics, JSON) carry the name and the master's name apart instead.
func Labels(ids []PoolID) map[PoolID]string {
	n := map[string]int{}
	for _, id := range ids {
		n[id.Pool]++
	}
	out := make(map[PoolID]string, len(ids))
	for _, id := range ids {
		if n[id.Pool] > 1 {
			out[id] = id.String()
		} else {
			out[id] = id.Pool
		}
	}
	return out
}

// Labels names each pool of the report for people (Labels).
func (r *Report) Labels() map[PoolID]string {
	ids := make([]PoolID, len(r.Pools))
	for i := range r.Pools {
		ids[i] = r.Pools[i].ID()
	}
	return Labels(ids)
}
