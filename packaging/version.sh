#!/bin/sh
# fpmguard's version, one string for the binary, the image and build_info,
# and its mapping to a version dpkg and rpm accept.
#
#   packaging/version.sh                    the version: git describe
#   packaging/version.sh package VERSION    VERSION as a .deb/.rpm version
#
# The version is `git describe --tags --match 'v[0-9]*' --dirty`:
#   v1.2.3                   on a tag
#   v1.2.3-5-gabc1234        5 commits after it
#   v1.2.3-rc.1-5-gabc1234   after a pre-release tag
# with -dirty appended when the tree has uncommitted changes. Before the
# first tag, git has nothing to describe from and prints a bare hash; the
# version is then v0.0.0-N-gHASH, N being every commit up to HEAD, which
# reads and sorts like the forms above.
#
# The package version keeps every part of it and changes only the
# separators, so each field can be read back from the other:
#   v1.2.3                   1.2.3
#   v1.2.3-5-gabc1234        1.2.3+5.gabc1234
#   v1.2.3-rc.1-5-gabc1234   1.2.3~rc.1+5.gabc1234
#   v1.2.3-5-gabc1234-dirty  1.2.3+5.gabc1234.dirty
#   v1.2.3-dirty             1.2.3+0.dirty
# The leading v goes (a Debian version starts with a digit); the
# pre-release's - becomes ~, which sorts before the release in dpkg and in
# rpm (4.10 and later); the commit count and hash follow +, which sorts
# after the release and before the next one in both. rpm forbids - in a
# version, and dpkg allows it only before a Debian revision: neither is
# left. The package's own revision (Debian revision, RPM release) is 1,
# set in packaging/nfpm.yaml.
set -eu

describe() {
	if v=$(git describe --tags --match 'v[0-9]*' --dirty 2>/dev/null); then
		echo "$v"
		return
	fi
	# No tag yet: v0.0.0-N-gHASH[-dirty].
	hash=$(git describe --always --dirty 2>/dev/null) || { echo dev; return; }
	n=$(git rev-list --count HEAD)
	echo "v0.0.0-$n-g$hash"
}

package() {
	v=$1
	rest=${v#v}
	suffix=
	dirty=
	case $rest in
	*-dirty)
		rest=${rest%-dirty}
		dirty=.dirty
		;;
	esac
	# -N-gHASH at the end: git describe's distance from the tag.
	if snap=$(printf '%s\n' "$rest" | sed -n 's/^\(.*\)-\([0-9][0-9]*\)-g\([0-9a-f][0-9a-f]*\)$/\2.g\3/p') && [ -n "$snap" ]; then
		rest=$(printf '%s\n' "$rest" | sed 's/-[0-9][0-9]*-g[0-9a-f][0-9a-f]*$//')
		suffix=$snap$dirty
	elif [ -n "$dirty" ]; then
		# Changes on the tag itself: 0 commits after it, which sorts
		# before the first commit after it.
		suffix=0$dirty
	fi
	# The tag's pre-release: its first - becomes ~, any other a dot.
	case $rest in
	*-*) rest=$(printf '%s\n' "$rest" | sed 's/-/~/; s/-/./g') ;;
	esac
	out=$rest${suffix:++$suffix}
	if ! printf '%s\n' "$out" | grep -Eq '^[0-9]+(\.[0-9]+)*(~[A-Za-z0-9.]+)?(\+[A-Za-z0-9.]+)?$'; then
		echo "version.sh: version \"$v\" cannot be a package version; tag the commit vX.Y.Z, or run make package VERSION=vX.Y.Z" >&2
		exit 1
	fi
	echo "$out"
}

case ${1:-} in
"") describe ;;
package)
	[ $# -eq 2 ] || { echo "usage: $0 package VERSION" >&2; exit 2; }
	package "$2"
	;;
*)
	echo "usage: $0 [package VERSION]" >&2
	exit 2
	;;
esac
