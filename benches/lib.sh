# Shared by the bench scripts (sourced, with WORK set to a scratch directory).

# One measurement: wall milliseconds, peak RSS (KiB) and CPU milliseconds (user + system) of a
# command; output removed first. CPU time is printed beside wall time because this machine is
# shared: under load a tool's wall time says as much about its share of the scheduler (a
# process with more runnable threads gets more of it) as about its own work.
measure() { # out cmd...
  local out=$1; shift
  rm -f "$out"
  local t0 t1
  t0=$(date +%s%N)
  /usr/bin/time -f '%M %U %S' -o "$WORK/rss" "$@" >/dev/null 2>"$WORK/err" || { cat "$WORK/err" >&2; return 1; }
  t1=$(date +%s%N)
  awk -v ms=$(( (t1 - t0) / 1000000 )) '{ printf "%d %d %d\n", ms, $1, ($2 + $3) * 1000 }' "$WORK/rss"
}
