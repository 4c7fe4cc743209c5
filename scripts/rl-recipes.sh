#!/usr/bin/env bash
# The RL recipe search of issue "RL that visibly works": short DiFFPO runs from a shipped base, one
# line per recipe "name|flags", each in runs/recipes/<name> (skipped when its result.json exists, so
# the search resumes). Usage: scripts/rl-recipes.sh TASK STEPS RECIPES_FILE [THREADS]
set -euo pipefail
cd "$(dirname "$0")/.."
task=$1 steps=$2 recipes=$3 threads=${4:-1}
mkdir -p runs/recipes
while IFS='|' read -r name flags; do
  [ -z "$name" ] && continue
  out=runs/recipes/$task-$name
  [ -f "$out/result.json" ] && continue
  # shellcheck disable=SC2086
  node dist/esm/app/cli.js train --task "$task" --steps "$steps" --threads "$threads" --out "$out" $flags > "$out.log" 2>&1 || echo "failed: $name"
done < "$recipes"
node -e '
const fs = require("fs"), dir = "runs/recipes";
for (const d of fs.readdirSync(dir).filter((d) => d.startsWith(process.argv[1] + "-") && fs.existsSync(`${dir}/${d}/result.json`))) {
  const r = JSON.parse(fs.readFileSync(`${dir}/${d}/result.json`, "utf8"));
  const at = (ps) => ps.find((p) => p.strategy.threshold === r.threshold);
  const m = fs.readFileSync(`${dir}/${d}/metrics.jsonl`, "utf8").trim().split("\n").map(JSON.parse);
  const flat = m.reduce((a, x) => a + x.zeroVariance, 0) / m.length;
  console.log(`${d}: acc ${at(r.before).accuracy.toFixed(3)} -> ${at(r.after).accuracy.toFixed(3)}, NFE ${at(r.before).meanNfe.toFixed(2)} -> ${at(r.after).meanNfe.toFixed(2)}, ${r.steps} steps in ${r.seconds.toFixed(0)} s, zero-variance groups ${(100 * flat).toFixed(0)}%`);
}' "$task"
