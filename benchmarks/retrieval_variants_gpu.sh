#!/usr/bin/env bash
# LRURec recipe variants on full Beauty and Games, all eight trainings at once on one GPU (run through the
# device tool from the repo root, with runs/beauty/data and runs/games/data present; $OUT receives the results).
# Variants: b = length-bucketed batches, r = uniformly random batches; 2 = dropout 0.2 (LlamaRec's code),
# 5 = dropout 0.5 (the LRURec paper). Each run is the real `retrieve` stage in its own copy of the tree, so its
# stage.json is valid for runs/<dataset>; the variant with the best *validation* Recall@10 is packed per dataset.
# Turned into benchmarks/results/retrieval_variants_h200.{json,md} by benchmarks/retrieval_variants_report.py.
export PYTHONUNBUFFERED=1
declare -A V=([b2]="retrieval.bucket_batches=true retrieval.dropout=0.2 retrieval.attn_dropout=0.2"
              [r2]="retrieval.bucket_batches=false retrieval.dropout=0.2 retrieval.attn_dropout=0.2"
              [b5]="retrieval.bucket_batches=true retrieval.dropout=0.5 retrieval.attn_dropout=0.5"
              [r5]="retrieval.bucket_batches=false retrieval.dropout=0.5 retrieval.attn_dropout=0.5")
for v in b2 r2 b5 r5; do
  mkdir -p /tmp/w_$v && cp -r src runs /tmp/w_$v/
  for ds in beauty games; do
    (cd /tmp/w_$v && PYTHONPATH=/tmp/w_$v/src timeout 290 python3 -c "import sys,logging; logging.basicConfig(level=logging.INFO); from ulmrec.config import load_config; from ulmrec.pipeline import run_stage; from ulmrec.retrieval.stage import STAGE; print(run_stage(STAGE, load_config(['$ds'], ['device=cuda', 'retrieval.max_minutes=3.8', *sys.argv[1:]])))" ${V[$v]} > /tmp/w_$v/$ds.log 2>&1) &
  done
done
wait
python3 - <<'PY' > "$OUT/summary.txt"
import glob, json, os
best = {}
for ds in ["beauty", "games"]:
    for p in sorted(glob.glob(f"/tmp/w_*/runs/{ds}/retrieval/metrics.json")):
        m, v = json.load(open(p)), p.split("/")[2]
        print(ds, v, m["valid"]["Recall@10"], m["test"]["NDCG@10"], m["training"])
        if m["valid"]["Recall@10"] > best.get(ds, ("", -1))[1]:
            best[ds] = (v, m["valid"]["Recall@10"])
print("BEST", best)
for ds, (v, _) in best.items():
    os.system(f"cd /tmp/{v} && tar czf $OUT/win_{ds}.tgz runs/{ds}/retrieval")
PY
tar czf "$OUT/all_logs.tgz" /tmp/w_*/*.log /tmp/w_*/runs/*/retrieval/metrics.json /tmp/w_*/runs/*/retrieval/train_log.json
