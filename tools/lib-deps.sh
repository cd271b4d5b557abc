# shellcheck shell=bash disable=SC2034 # the lists are used by the scripts that source this
# lib-deps.sh — sourced by tools/setup.sh and tools/test.sh: the Debian
# packages spbmalloc needs, and one function that installs the missing ones.
#
#   spb_deps_ensure PKG...   install what is missing with apt-get when root
#                            (one `apt-get update` first, only if something is
#                            missing), else print the apt-get line and fail.
# On a system without dpkg it prints what to install and lets the build try.

# What building and testing needs.
SPB_BUILD_PKGS=(cmake make gcc g++ pkg-config python3 libnuma-dev liburcu-dev libhwloc-dev libbenchmark-dev libmicrohttpd-dev)
# What the benchmarks compare against and the tools around them use.
SPB_PEER_PKGS=(libjemalloc-dev libgoogle-perftools-dev libmimalloc-dev tmux python3 sqlite3)
# What the test suite drives besides the build: the real programs run under
# LD_PRELOAD, the live-view check (tmux), the comparison smoke test.
SPB_TEST_PKGS=(tmux python3 perl git sqlite3 xz-utils libmimalloc-dev redis-server redis-tools gnuplot-nox spin curl)

spb_deps_missing()
{
	local p
	for p in "$@"; do
		dpkg-query -W -f='${Status}\n' "$p" 2>/dev/null | grep -q 'ok installed' || echo "$p"
	done
}

spb_deps_ensure()
{
	local missing
	if ! command -v dpkg-query >/dev/null 2>&1; then
		echo "spbmalloc: not a Debian-like system; make sure these (or your" \
			"distribution's equivalents) are installed: $*" >&2
		return 0
	fi
	missing=$(spb_deps_missing "$@" | tr '\n' ' ')
	missing=${missing% }
	if [ -z "$missing" ]; then
		return 0
	fi
	if [ "$(id -u)" -ne 0 ]; then
		echo "spbmalloc: missing packages: $missing" >&2
		echo "spbmalloc: install them with:" >&2
		echo "  sudo apt-get update && sudo apt-get install -y $missing" >&2
		return 1
	fi
	echo "spbmalloc: installing $missing"
	if [ -z "${SPB_APT_UPDATED:-}" ]; then
		DEBIAN_FRONTEND=noninteractive apt-get update -q </dev/null
		SPB_APT_UPDATED=1
	fi
	# shellcheck disable=SC2086 # word splitting of the package list is wanted
	DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
		$missing </dev/null
}

# spb_nproc: the cores to build with.
spb_nproc()
{
	nproc 2>/dev/null || getconf _NPROCESSORS_ONLN 2>/dev/null || echo 2
}
