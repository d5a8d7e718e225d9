#!/usr/bin/env bash
# Whole-process wall time of CLI calls, median of 9 runs, beside `python -c "import lark"`.
#   bash bench/cli.sh
# Targets (issue #5): lrdsl parse ≤ 2.5× that; terminal plot ≤ 3.5× that.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
LRDSL=${LRDSL:-.venv/bin/lrdsl}
EXPR="warmup(5) >> cosine(0.1, 100) | plateau(val_loss, 0.5)"
"$LRDSL" parse "$EXPR" > /dev/null  # warm the grammar cache and the page cache

median() {  # median wall seconds of 9 runs of "$@"
  for _ in 1 2 3 4 5 6 7 8 9; do
    s=$(date +%s.%N); "$@" > /dev/null; e=$(date +%s.%N)
    awk -v s="$s" -v e="$e" 'BEGIN { print e - s }'
  done | sort -n | sed -n 5p
}
base=$(median "$PY" -c "import lark")
parse=$(median "$LRDSL" parse "$EXPR")
plot=$(median env COLUMNS=100 LINES=30 "$LRDSL" parse --plot "$EXPR")
printf '%-34s %8s %7s %7s\n' "command" "seconds" "ratio" "target"
printf '%-34s %8.3f %7s %7s\n' 'python -c "import lark"' "$base" "1.00" ""
for row in "lrdsl parse EXPR:$parse:2.5" "lrdsl parse --plot EXPR:$plot:3.5"; do
  IFS=: read -r name secs target <<< "$row"
  ratio=$(awk -v a="$secs" -v b="$base" 'BEGIN { print a / b }')
  verdict=$(awk -v r="$ratio" -v t="$target" 'BEGIN { print (r <= t) ? 1 : 0 }')
  printf '%-34s %8.3f %7.2f %7s %s\n' "$name" "$secs" "$ratio" "≤$target" "$([ "$verdict" = 1 ] && echo ok || echo MISS)"
done
