#!/usr/bin/env bash
# bench.sh - libexecutor next to the libraries people use today, in one
# command: build (Release), run every benchmark in --json mode, run fio, keep
# all result lines in one file, draw the chart and print who wins.
#
#   scripts/bench.sh                full run (about 10 minutes on 2 cores):
#                                   bench/results/<date>-<host>.json,
#                                   latest.json and latest.png
#   scripts/bench.sh --quick        fast check; writes to the build directory,
#                                   so the committed results stay as they are
#   scripts/bench.sh --report FILE  the summary and the chart again from a
#                                   results file (FILE.png next to it;
#                                   latest.png for latest.json)
#
# The peers are optional: as root the script installs them with apt-get,
# otherwise it prints the line to run and their rows are skipped. Each
# program explains its figures at its top (bench/bench_pool.c,
# bench/workloads.h, bench/bench_io.c). The results file holds one JSON
# object per line: {"machine":{...}} first, then one line per result with
# bench_pool's fields plus "source", the program that printed it.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)

usage() {
	echo "usage: scripts/bench.sh [--quick | --report FILE]" >&2
	exit 2
}

quick=''
report=''
case "${1:-}" in
--quick) quick=--quick ;;
--report)
	report=${2:-}
	[ -n "$report" ] || usage
	;;
"") ;;
*) usage ;;
esac

have() { command -v "$1" >/dev/null; }

# The peers and the tools: the build's own dependencies come from deps.sh.
install_optional() {
	local optional=(g++ libglib2.0-dev libuv1-dev libtbb-dev cthreadpool-dev fio gnuplot-nox jq)
	local missing=() p

	"$root/scripts/deps.sh"
	for p in "${optional[@]}"; do
		if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
			missing+=("$p")
		fi
	done
	[ ${#missing[@]} -eq 0 ] && return 0
	if [ "$(id -u)" -eq 0 ] && have apt-get; then
		echo "bench: installing ${missing[*]}"
		export DEBIAN_FRONTEND=noninteractive
		apt-get update -qq
		apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
	else
		echo "bench: optional packages missing (their rows are skipped): ${missing[*]}" >&2
		echo "bench: install them with:  sudo apt-get install ${missing[*]}" >&2
	fi
}

# Appends the result lines of a program's output to $tmp/all.json, each
# tagged with the program; a line that is not a result (a note, a crash
# message) goes to stderr instead.
collect() { # $1: program name; reads its output on stdin
	local line

	while IFS= read -r line; do
		if jq -e 'type == "object" and has("system")' <<<"$line" >/dev/null 2>&1; then
			jq -c --arg src "$1" '. + {source: $src}' <<<"$line" >>"$tmp/all.json"
		elif [ -n "$line" ]; then
			echo "$1: $line" >&2
		fi
	done
}

# fio: the same page-cached random reads through the kernel's two paths. One
# 64 MiB file, as bench_io's read4k rows use, read once so it is cached;
# invalidate=0 keeps fio from dropping the cache before each job. psync has
# no queue: depth N means min(N, 4) jobs of one read each, like bench_io's
# pread-Nthr rows. io_uring submits and reaps up to N at a time, as a ring
# user does (fio's default, one per system call, only adds system calls).
run_fio() { # $1: build directory
	local file=$1/fio-randread.dat runs=3 secs=2 qd engine depth njobs batch r

	[ -n "$quick" ] && runs=1 secs=1
	if [ ! -f "$file" ] || [ "$(stat -c %s "$file")" -ne $((64 << 20)) ]; then
		head -c $((64 << 20)) /dev/urandom >"$file"
	fi
	cat "$file" >/dev/null
	for qd in 1 32 128; do
		for engine in io_uring psync; do
			if [ "$engine" = psync ]; then
				depth=1 njobs=$((qd < 4 ? qd : 4)) batch=
			else
				depth=$qd njobs=1
				batch="--iodepth_batch_submit=$qd --iodepth_batch_complete_max=$qd"
			fi
			: >"$tmp/fio-runs"
			for ((r = 0; r < runs; r++)); do
				# shellcheck disable=SC2086 # $batch is two options or none
				if ! fio --name=randread --filename="$file" --size=64m --rw=randread --bs=4k \
					--ioengine="$engine" --iodepth="$depth" --numjobs="$njobs" $batch \
					--group_reporting --time_based --runtime="$secs" --invalidate=0 \
					--randrepeat=0 --norandommap --output-format=json \
					>"$tmp/fio.json" 2>"$tmp/fio.err"; then
					echo "bench: fio $engine qd$qd failed: $(head -3 "$tmp/fio.err")" >&2
					continue
				fi
				jq -c --arg sys "fio-$engine" --arg wl "randread4k-qd$qd" '
					.jobs[0].read as $r
					| {system: $sys, workload: $wl, tasks: $r.total_ios,
					   seconds: ($r.runtime / 1000), ns_per_task: (1e9 / $r.iops * 10 | round / 10),
					   tasks_per_s: ($r.iops | round),
					   p50_ns: $r.clat_ns.percentile["50.000000"],
					   p99_ns: $r.clat_ns.percentile["99.000000"], source: "fio"}' \
					"$tmp/fio.json" >>"$tmp/fio-runs"
			done
			# The median run by throughput (the upper middle for an even count).
			jq -sc 'sort_by(.tasks_per_s) | if length > 0 then .[length / 2 | floor] else empty end' \
				"$tmp/fio-runs" >>"$tmp/all.json"
		done
	done
}

# Builds, runs every benchmark and fio; sets $file (the results) and $png.
run_all() {
	local out=${EXE_BUILD_ROOT:-$root/build}/bench-release jobs=${EXE_JOBS:-2}
	local built=() t start results host cpu

	echo "==> building (Release) in $out"
	cmake -S "$root" -B "$out" -DCMAKE_BUILD_TYPE=Release -DEXE_BUILD_TESTS=OFF \
		-DEXE_BUILD_EXAMPLES=OFF >/dev/null
	cmake --build "$out" -j "$jobs" --target executor >/dev/null
	for t in bench_pool bench_peers bench_tbb bench_io bench_queue; do
		# One target at a time: a benchmark that is missing or does not
		# build costs its own rows, not the run.
		if cmake --build "$out" -j "$jobs" --target "$t" >"$out/build-$t.log" 2>&1; then
			built+=("$t")
		elif [ "$t" = bench_tbb ]; then
			echo "bench: tbb-task-group skipped: install libtbb-dev" >&2
		else
			echo "bench: $t not built (see $out/build-$t.log)" >&2
		fi
	done

	results=$root/bench/results
	[ -n "$quick" ] && results=$out/results
	mkdir -p "$results"
	host=$(hostname -s 2>/dev/null || hostname)
	file=$results/$(date +%Y-%m-%d)-$host.json
	cpu=$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -1)
	jq -nc --arg date "$(date -u +%Y-%m-%dT%H:%M:%SZ)" --arg host "$host" --arg cpu "${cpu:-unknown}" \
		--arg kernel "$(uname -r)" --argjson nproc "$(nproc)" --arg mode "${quick:+quick}" \
		--arg commit "$(git -C "$root" rev-parse --short HEAD 2>/dev/null || echo unknown)" \
		'{machine: {date: $date, host: $host, nproc: $nproc, cpu: $cpu, kernel: $kernel,
		  mode: (if $mode == "" then "full" else $mode end), commit: $commit}}' >"$tmp/all.json"

	for t in "${built[@]}"; do
		echo "==> $t --json $quick"
		start=$SECONDS
		if ! "$out/bench/$t" --json $quick >"$tmp/$t.out"; then
			echo "bench: $t failed; its rows are left out" >&2
		fi
		collect "$t" <"$tmp/$t.out"
		echo "    $(grep -c . "$tmp/$t.out" || true) results in $((SECONDS - start)) s"
	done
	if have fio; then
		echo "==> fio (io_uring, psync)"
		start=$SECONDS
		run_fio "$out"
		echo "    done in $((SECONDS - start)) s"
	else
		echo "bench: fio-io_uring, fio-psync skipped: install fio" >&2
	fi

	cp "$tmp/all.json" "$file"
	png=$results/quick.png
	if [ -z "$quick" ]; then
		cp "$file" "$results/latest.json"
		png=$results/latest.png
	fi
}

# One row per (system, workload) into $tmp/rows.json. Each row gets
#   .value  what it is judged by, per second, higher is better: tasks/s (or
#           reads/s), and 1e9 / p50 on latency rows;
#   .ratio  .value over libexecutor's in the same run: libexecutor-threads
#           for task rows, libexecutor-uring for io rows. The same run means
#           the row's own program (vs_libexecutor when the program computed
#           it); .same is false when the row's program ran no libexecutor
#           (fio), and the ratio is then against the reference run;
#   .plot   the bar height: the reference run's libexecutor value times the
#           ratio. On a shared machine the load drifts between programs by
#           more than the differences between systems, so each program's
#           rows are put on the reference run's scale through its own
#           libexecutor row; rows without one are plotted as measured.
# The reference run is bench_peers for task rows and bench_io for io rows;
# bench_io's read4k-qdN rows join fio's randread4k-qdN (the same reads) and
# its pread-Nthr names become one pread-threads series.
select_rows() { # $1: results file
	jq -sc '
		def lat: .workload | test("^latency");
		def libname: if (.workload | test("^randread")) then "libexecutor-uring"
			     else "libexecutor-threads" end;
		[.[] | select(.system)
		 | .rate = (.tasks_per_s // .ops_per_s)
		 | if (.workload | test("^read4k-qd")) then .workload = "rand" + .workload else . end
		 | .system |= sub("^pread-[0-9]+thr$"; "pread-threads")
		 | .value = (if lat then (if (.p50_ns // 0) > 0 then 1e9 / .p50_ns else null end) else .rate end)
		 | select((.value // 0) > 0)] as $all
		| ($all | map(select(.system == libname))) as $libs
		| ($libs | map(select(.source == "bench_peers" or .source == "bench_io"))) as $ref
		| [$all[]
		   | . as $r
		   | ($ref | map(select(.workload == $r.workload)) | .[0]) as $main
		   | ($libs | map(select(.workload == $r.workload and .source == $r.source)) | .[0]) as $own
		   | select(.system != libname or $own == $main)
		   | if .system == libname then .ratio = 1 | .same = true
		     elif .vs_libexecutor then .ratio = .vs_libexecutor | .same = true
		     elif $own != null then .ratio = .value / $own.value | .same = true
		     elif $main != null then .ratio = .value / $main.value | .same = false
		     else .ratio = null | .same = false end
		   | .plot = (if .same and $main != null then $main.value * .ratio else .value end)]
		| group_by([.system, .workload]) | map(.[0])
	' "$1" >"$tmp/rows.json"
}

task_wl='["empty","empty-batch","callback","spin1us","spin100us","fork-join","latency","latency-hot","latency-worker"]'

# vs lib: the row's ratio (above 1.00x the row beats libexecutor); marked *
# when it compares two runs (see select_rows). Rows are ranked by it.
summary() { # $1: results file
	echo
	echo "summary ($(jq -r 'select(.machine) | .machine.mode' "$1" | head -1) run; vs lib above 1.00x: the row beats libexecutor in the same run)"
	jq -r --argjson twl "$task_wl" '
		. as $rows
		| ($twl + ([$rows[] | .workload | select(test("^randread4k-qd"))] | unique
			   | sort_by(ltrimstr("randread4k-qd") | tonumber))) as $wls
		| $wls[] as $w
		| [$rows[] | select(.workload == $w)] as $g
		| select($g | length > 0)
		| ($g | sort_by(-(.ratio // 0), -.value)) as $sorted
		| ($sorted | map(select(.ratio == 1 and (.system | startswith("libexecutor")))) | .[0]) as $lib
		| ($sorted[]
		   | [$w, .system, (.rate | floor), (.p50_ns // "-"),
		      (if . == $lib or .ratio == null then "-" else .ratio end),
		      (if .same then "" else "*" end), .source]
		   | @tsv),
		  (["", "first: \($sorted[0].system)" + (if $lib != null and $sorted[0] != $lib then
		     ", \($lib.system) is #\([$sorted[] | . == $lib] | index(true) + 1)"
		     else "" end)] | @tsv)
	' "$tmp/rows.json" | awk -F'\t' '
		BEGIN {
			printf "%-16s %-22s %12s %9s %9s  %s\n", "workload", "system", "tasks/s", "p50_ns",
			       "vs lib", "run"
		}
		$2 ~ /^first:/ { printf "%-16s %s\n\n", "", $2; next }
		{
			r = $5
			if (r != "-")
				r = sprintf(r < 0.1 ? "%.3fx" : "%.2fx", r)
			printf "%-16s %-22s %12s %9s %9s  %s\n", $1, $2, $3,
			       $4 == "-" ? "-" : sprintf("%.0f", $4), r $6, $7
		}'
}

# A table per chart panel: one line per workload, one column per system in
# the order given (systems not listed follow, by name), "-" where a system
# has no row. The series names go to <output>.names, one per line.
panel_table() { # $1: jq array of workloads, $2: jq array of systems, $3: output
	jq -r --argjson wls "$1" --argjson order "$2" '
		. as $rows
		| [$rows[] | select(.workload as $w | any($wls[]; . == $w)) | .system] | unique
		| (($order - ($order - .)) + (. - $order)) as $sys
		| ($sys | join("\t")),
		  ($wls[] as $w
		   | [$rows[] | select(.workload == $w)] as $g
		   | select($g | length > 0)
		   | [$w] + [$sys[] as $s | ($g | map(select(.system == $s)) | .[0].plot // "-" | tostring)]
		   | @tsv)
	' "$tmp/rows.json" >"$tmp/table"
	head -1 "$tmp/table" | tr '\t' '\n' >"$3.names"
	tail -n +2 "$tmp/table" >"$3"
}

# The gnuplot lines of one panel. libexecutor's series in reds and oranges,
# the others in distinct cool and neutral tones, so the bars to look for
# stand out in every cluster.
plot_panel() { # $1: table, $2: title
	local reds=("#d62728" "#ff7f0e" "#8c1a10" "#f7b6a0")
	local others=("#1f77b4" "#2ca02c" "#9467bd" "#17becf" "#8c564b" "#7f7f7f" "#bcbd22"
		"#e377c2" "#aec7e8" "#98df8a" "#c5b0d5" "#393b79")
	local col=1 lib=0 other=0 name color clauses=""

	while IFS= read -r name; do
		col=$((col + 1))
		if [[ $name == libexecutor* ]]; then
			color=${reds[lib++ % ${#reds[@]}]}
		else
			color=${others[other++ % ${#others[@]}]}
		fi
		clauses+="${clauses:+, }'$1' using $col:xtic(1) title '$name' lc rgb '$color'"
	done <"$1.names"
	# Clusters sit at x = 0, 1, ...: no blank margin left and right.
	echo "set xrange [-0.6:$(($(wc -l <"$1") - 1)).6]"
	echo "set title \"$2\" font \",13\""
	echo "plot $clauses"
}

chart() { # $1: results file, $2: png
	local machine io_wl panels

	if ! have gnuplot; then
		echo "bench: chart skipped: install gnuplot-nox" >&2
		return 0
	fi
	panel_table "$task_wl" '["libexecutor-threads", "tbb-task-group", "openmp-tasks",
		"glib-thread-pool", "libuv-queue-work", "cthreadpool", "raw-futex-pingpong", "naive-pool", "raw-threads",
		"python-thread-pool", "libexecutor-processes", "python-process-pool", "raw-processes"]' \
		"$tmp/tasks.tsv"
	io_wl=$(jq -c '[.[] | .workload | select(test("^randread4k-qd"))] | unique
		| sort_by(ltrimstr("randread4k-qd") | tonumber)' "$tmp/rows.json")
	panel_table "$io_wl" '["libexecutor-uring", "libexecutor-fallback", "liburing", "fio-io_uring",
		"fio-psync", "pread-threads"]' "$tmp/io.tsv"
	panels=1
	[ -s "$tmp/io.tsv" ] && panels=2
	# The machine the figures came from, as the results file recorded it.
	machine=$(jq -r 'select(.machine) | .machine
		| "\(.nproc) CPUs (\(.cpu)), Linux \(.kernel), \(.date[0:10]), median of "
		  + (if .mode == "quick" then "3 runs (quick)" else "5 runs" end)' "$1" | head -1)
	{
		cat <<EOF
set terminal pngcairo size 1500,$((panels * 560 + 60)) font "DejaVu Sans,10" noenhanced
set output '$2'
set datafile separator "\t"
set datafile missing "-"
set style data histograms
set style histogram clustered gap 1.5
set style fill solid 0.95 border rgb "#333333"
set logscale y 10
set format y "%.0s%c"
set grid ytics mytics lc rgb "#dddddd", lc rgb "#f0f0f0"
set key outside right top vertical Left reverse samplen 2 spacing 1.1
set ylabel "per second (log scale, higher is better)"
set xtics nomirror scale 0 font ",11"
set multiplot layout $panels,1 title "libexecutor vs peers - $machine\nrows of other programs are put on bench_peers' / bench_io's scale through their own run's libexecutor row (raw figures: the .json)" font ",11"
EOF
		plot_panel "$tmp/tasks.tsv" "thread pools: tasks/s (latency rows: 1 / p50 submit-to-result, one task at a time)"
		if [ "$panels" -eq 2 ]; then
			plot_panel "$tmp/io.tsv" "io: 4 KiB random reads of a page-cached 64 MiB file, reads/s (qdN: N in flight)"
		fi
		echo "unset multiplot"
	} >"$tmp/chart.gp"
	if gnuplot "$tmp/chart.gp" 2>"$tmp/gnuplot.err"; then
		echo "chart: $2"
	else
		echo "bench: gnuplot failed:" >&2
		cat "$tmp/gnuplot.err" >&2
	fi
}

if [ -z "$report" ]; then
	install_optional
fi
if ! have jq; then
	echo "bench: jq is needed to collect the results: sudo apt-get install jq" >&2
	exit 1
fi
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

if [ -n "$report" ]; then
	[ -f "$report" ] || { echo "bench: no such file: $report" >&2; exit 1; }
	file=$report
	case $report in
	latest.json | */latest.json) png=$(dirname "$report")/latest.png ;;
	*) png=${report%.json}.png ;;
	esac
else
	run_all
fi
select_rows "$file"
summary "$file"
chart "$file" "$png"
echo "results: $file${quick:+ (quick: bench/results/ left as it was)}"
