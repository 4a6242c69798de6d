#!/usr/bin/env bash
# Train a ranker adapter on letter_lookup samples only (no ranking samples), for benchmarks/letter_binding.py:
# can SmolLM2-135M learn which letter names which title at all? One core, one thread; the last step is kept
# (no validation before it: eval_first=false, eval_every=steps).
#   bash benchmarks/letter_binding_train.sh runs/sample-base runs/bench-binding/lookup-only-300 300 [core [override...]]
set -euo pipefail
cd "$(dirname "$0")/.."
SOURCE=$1 RUN=$2 STEPS=$3 CORE=${4:-0}
shift $(( $# < 4 ? $# : 4 ))
mkdir -p "$RUN"
for sub in data retrieval index preferences; do
  [ -e "$RUN/$sub" ] || cp -r "$SOURCE/$sub" "$RUN/$sub"
done
OMP_NUM_THREADS=1 taskset -c "$CORE" .venv/bin/ulmrec train -c sample "run_dir=$RUN" \
  retrieval.train_candidates=true tasks.enabled=[letter_lookup] tasks.ratios.letter_lookup=.inf \
  tasks.train_candidates=retriever tasks.shuffle_candidates=false tasks.missing_target=skip \
  ranker.baseline=false "ranker.max_steps=$STEPS" "ranker.eval_every=$STEPS" ranker.eval_first=false \
  ranker.eval_users=100 ranker.batch_size=2 ranker.patience=0 ranker.num_threads=1 ranker.index_token_grad=all "$@"
