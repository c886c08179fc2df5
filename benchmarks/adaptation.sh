#!/usr/bin/env bash
# Issue 18: does GraB-NAS learn from the target? The tables of docs/adaptation.md.
# The default changed on 2026-12-08 (the fine-tuned map every 10 observations, the corpus's random
# warm-up share): a part below that runs `grabnas` or `grabnas[...]` measures the current default
# (plus its options); the committed results of parts run before then are the earlier default's, which
# `grabnas[warmup_random=none,finetune=0,...]` reproduces.
#   nb201      GraB-NAS (default: target-adapted GP) on cifar10 / cifar100 / imagenet16, 20 seeds,
#              shipped checkpoints (baselines: benchmarks/results/nb201-grabnas)
#   metaseeds  the same with surrogates meta-trained with seeds 1 and 2 (CK=DIR, trained by
#              benchmarks/meta_seed_variance.sh or `grabnas surrogate eval --checkpoint train
#              --task-offsets --steps 16000 --seed S --save-dir CK/TASK-sS`), SEARCH_SEEDS seeds each
#   stress     the misleading-prior tasks of benchmarks/stress_tasks.py: GraB-NAS, GraB-NAS with the
#              meta-learned hyperparameters (adaptation=meta, init=top: before issue 18), GP-BO,
#              REA, random, transfer-rank, 20 seeds; on cifar100 also prior_mean_kernel=true
#   nbgraph    GraB-NAS on the nine NAS-Bench-Graph datasets, NBG_SEEDS seeds (baselines:
#              benchmarks/results/nbgraph)
#   surrogate  top-10 % Spearman and 90 % coverage after 0/5/10/20/50 random observations,
#              target-adapted GP, NB201 and NAS-Bench-Graph held-out tasks
#   probes     opt-in options probe_every=3|5 (random untried pool members from ask 10 on) and
#              calibrate=true (leave-one-out variance factor), 8 seeds, on the tasks where the prior
#              misleads (cora, proteins, pubmed, stress cifar100-top20rev) and NB201 imagenet16;
#              the surrogate eval with --calibrate loo; then probe_every=5 with 20 seeds on all nine
#              NAS-Bench-Graph datasets and the cifar100 stress task
#   kernels    opt-in target-GP variants target_kernel=onehot (the target kernel reads GP-BO's one-hot
#              encoding) and mean_weight=marginal (the prior mean's weight integrated out), 8 seeds,
#              on misleading (cora, proteins, pubmed, stress cifar100-top20rev) and well-predicted
#              tasks (arxiv, citeseer, physics, NB201 imagenet16, cifar100); marginal on both stress tasks, 20 seeds
#   portfolio  opt-in guard=3,portfolio=10 (what these runs measured: until a fix the portfolio also
#              turned the guard on from 3 observations) (from ask 10 on, Thompson sampling between GraB-NAS's proposal and
#              GP-BO's, judged by their observed values; portfolio_reward=pooled and running, and
#              portfolio_arm=random against random pool members; VARIANTS=... for some), 8 seeds on the kernels part's tasks, both stress tasks, and the real-training
#              ground truths (10 seeds, 25 trainings)
#   portfolio20 the random-arm portfolio (without the guard the portfolio part's runs also had, a
#              bug) at 20 seeds on NB201, both stress tasks and the nine NAS-Bench-Graph datasets,
#              and on the ground truths (10 seeds)
#   csvloto    the issue's own protocol on the shipped real-training table: each of its three tasks held
#              out, a surrogate meta-trained now on the other two (what `grabnas bench` does on a
#              csv: table), 10 seeds, 50 evaluations: GraB-NAS, GP-BO, REA, transfer-rank, random; then
#              the opt-in variants (guard=3 + random arm, the random arm alone, mean_weight=marginal,
#              init_spread=corpus, target_scale=corpus); the surrogate eval with --target-scale corpus
#   draws      opt-in global_draw=thompson (a global step takes the argmax of one posterior draw over
#              the acquisition's 1,024 best candidates): from ask 1 on the csvloto protocol, and from
#              ask 10 (draw_start=10) there, on NB201 (20 seeds) and NAS-Bench-Graph (10 seeds); then
#              the paired report against the default (benchmarks/portfolio_report.py)
#   csvmetaseeds the csvloto protocol over meta-training seeds: surrogate=train@1, train@2 (seed 0 is
#              the default's csvloto run) and the ensemble train@0+train@1+train@2, 10 search seeds each
#   screens    opt-in target_kernel=hamming (a Hamming kernel on the one-hot encoding added to the
#              latent target kernel), probe_every=5,probe_kind=far (probes: the acquisition's best
#              in the far half of the pool) and fit_start=5 (the meta-learned hyperparameters until
#              5 observations), 8 seeds (csvloto 10, ground truths 10 at 25 trainings)
#              on NB201, both stress tasks, NAS-Bench-Graph and the ground truths, the paired reports,
#              the Hamming kernel at 20 seeds on NAS-Bench-Graph, and its surrogate eval; far5 stops after csvloto, NB201 and the
#              stress tasks (committed: NB201 cifar100 / imagenet16, cifar100 stress, csvloto, where it
#              failed its rule)
#   screens2   opt-in mean_weight=centred (the prior mean centred on the observations) on NB201 and
#              NAS-Bench-Graph cora / proteins / arxiv, and probe_stall=5 (a probe once the best value
#              has stalled for 5 observations) with probe_kind=random and gpbo on the csvloto protocol,
#              NB201 and NAS-Bench-Graph cora / proteins / arxiv / citeseer / pubmed; 8 seeds (csvloto 10),
#              paired reports
#   integrate20 integrate=16 (the default since 2026-12-06) at 20 seeds on NB201 and NAS-Bench-Graph (resumes the
#              8-seed runs of "integrate"), the ground truths with nb201-all, the paired report; then NB201
#              with the surrogates of meta-training seeds 1 and 2 in CK, the default and the MAP fit
#   integrate  opt-in integrate=16 (the target GP's hyperparameters integrated out over 16 importance-
#              weighted Laplace samples): the surrogate eval on NB201 and NAS-Bench-Graph, then the
#              search on NAS-Bench-Graph (9 datasets) and NB201 (8 seeds), both stress tasks (20 seeds)
#              and the csvloto protocol (10 seeds), paired report; then integrate=16,target_kernel=hamming: the
#              surrogate eval, NB201 imagenet16 (its transfer decides the rule) and NAS-Bench-Graph
#              cora / proteins / arxiv / citeseer / pubmed (8 seeds)
#   fitftol    the default after the MAP fit's tolerance became FIT_FTOL = 1e-6 (2026-12-07): NB201
#              (20 seeds), NAS-Bench-Graph and both stress tasks (FTOL_SEEDS: 8 for the rule, 20 as committed), paired
#              report against the committed runs of the same default with scipy's tolerance (screens/integrate)
#   hyperdraw  opt-in hyper_draw=true (one component of the hyperparameter mixture drawn per ask): the
#              csvloto protocol (10 seeds), NB201 (20), NAS-Bench-Graph and both stress tasks (8), paired
#              report against the default's runs of "fitftol" (run that part first; the csvloto rows
#              against the committed screens/integrate ones)
#   arm        portfolio=10,portfolio_arm=random on top of the integrated default (2026-12-07): ground
#              truths (10 seeds, 25 trainings), csvloto (5), both stress tasks (5), NAS-Bench-Graph (5),
#              NB201 imagenet16 (10) and cifar10 / cifar100 (5), paired report against "fitftol"'s runs
#   warmup     opt-in warmup_random=corpus (of the warm-up's first t_bo asks, floor(r * t_bo) random, r the
#              corpus's held-out residual; 2026-12-07): NAS-Bench-Graph (20 seeds), the csvloto protocol (10) and the
#              ground truths with nb201-all (10); NB201 and the stress tasks get no probe (r < 0.1 or unknown), so
#              they are not rerun; paired report against "fitftol"'s runs
#   warmup10   the same share in the block after the warm-up (warmup_start=10: asks 10-18; the first 10 stay
#              the default's): NAS-Bench-Graph (20 seeds) and the csvloto protocol (10)
#   pibo       opt-in piBO (prior_decay=5, mean_weight=none; 2026-12-07): the acquisition times the zero-shot belief
#              pi(x) ** (5 / n) on a target-adapted GP without the prior mean; NB201, the stress tasks and
#              NAS-Bench-Graph (SEEDS, default 20), the ground truths with nb201-all (10); paired report against
#              "fitftol"'s runs. PIBO="..." for other options
#   finetune   opt-in finetune=50 (2026-12-07: at every fit, 50 Adam steps fine-tune a copy of the feature map
#              to the observations before the target-adapted GP is fitted on it; FINETUNE=K for other
#              steps, FINETUNE_START=10 from 10 observations on -> screens/finetune-start10, FINETUNE_REFIT=false
#              the hyperparameters fitted on the meta-learned map -> ...-refitfalse, with FINETUNE_SELECT=true
#              the fine-tuned map only while its prequential score is the higher -> ...-select, with
#              FINETUNE_ARM=N a bandit between the two maps from ask N on, by what their proposals scored
#              (portfolio=N,portfolio_arm=finetune) -> ...-armN, with FINETUNE_WARMUP=corpus the corpus's
#              random share of the warm-up as well (warmup_random=corpus) -> ...-warmup, with FINETUNE_EVERY=K
#              (refit=false only) the map fine-tuned once per K observations -> ...-everyK): NB201, both
#              stress tasks and NAS-Bench-Graph (SEEDS, default 8), the csvloto protocol and the ground
#              truths with nb201-all (10), the surrogate eval with 10 draws and its learning gain; paired
#              report against "fitftol"'s runs
#   learning10 the default's surrogate eval with 10 draws (per-draw values stored) on NB201 and NAS-Bench-Graph,
#              then benchmarks/learning_gain.py: the learning gain with its draw SE and the coverage count
# Usage: OUT=runs JOBS=2 bash benchmarks/adaptation.sh [PART ...]; every part resumes when rerun.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-runs}
JOBS=${JOBS:-1}
CK=${CK:-runs/meta-seed-variance}
SEARCH_SEEDS=${SEARCH_SEEDS:-10}
NBG_SEEDS=${NBG_SEEDS:-20}
PARTS=("$@")
[ ${#PARTS[@]} -eq 0 ] && PARTS=(nb201 stress nbgraph metaseeds surrogate probes)
bench() { .venv/bin/grabnas bench --budget 50 --jobs "$JOBS" --no-progress "$@"; }
stress_both() {  # SEEDS OPTIONS PREFIX: GraB-NAS[OPTIONS] on both stress tasks -> PREFIXstress, PREFIXstress-in16
  bench --seeds "$1" --benchmark "csv:$OUT/stress-tables/stress-cifar100-top20.csv" --tasks cifar100-top20rev \
    --optimizers "grabnas[surrogate=nb201-no-cifar100,$2]" --out "${3}stress"
  bench --seeds "$1" --benchmark "csv:$OUT/stress-tables/stress-imagenet16-top5.csv" --tasks imagenet16-top5rev \
    --optimizers "grabnas[surrogate=nb201-no-imagenet16,$2]" --out "${3}stress-in16"
}
nbg_csvloto() {  # DIR OPTIONS: GraB-NAS[OPTIONS] on NAS-Bench-Graph (20 seeds) and the csvloto protocol (10) -> DIR/nbg, DIR/csvloto
  mkdir -p "$1"
  bench --seeds 20 --benchmark nasbench-graph --optimizers "grabnas[$2]" --out "$1/nbg"
  bench --seeds 10 --benchmark csv:groundtruth-images --threads 1 --optimizers "grabnas[$2]" --out "$1/csvloto"
}
report_against_fitftol() {  # DIR: DIR/report.md, paired with the default's runs of "fitftol" (this OUT's, else committed)
  .venv/bin/python benchmarks/portfolio_report.py --runs "$1" --against "$OUT/screens/fitftol" \
    benchmarks/results/adaptation/screens/fitftol benchmarks/results/adaptation/screens/integrate --out "$1/report.md"
}
sur_eval() {  # DRAWS DIR: the default's surrogate eval on NB201 and NAS-Bench-Graph -> DIR/sur-{benchmark}.{json,md}
  for b in nb201 nasbench-graph; do
    .venv/bin/grabnas surrogate eval --benchmark "$b" --checkpoint auto --adaptation target \
      --shots 0,5,10,20,50 --seeds "$1" --no-progress --out "$2/sur-$b.json" > "$2/sur-$b.md"
  done
}
for part in "${PARTS[@]}"; do
  case "$part" in
    nb201)
      bench --benchmark nb201 --tasks cifar10,cifar100,imagenet16 --optimizers grabnas --seeds 20 --out "$OUT/adapt-nb201" ;;
    metaseeds)
      for s in 1 2; do
        for t in cifar10 cifar100 imagenet16; do
          bench --benchmark nb201 --tasks "$t" --seeds "$SEARCH_SEEDS" \
            --optimizers "grabnas[surrogate=$CK/$t-s$s/surrogate-nb201-no-{group}.pt]" --out "$OUT/adapt-nb201-s$s-$t"
        done
      done ;;
    stress)
      .venv/bin/python benchmarks/stress_tasks.py --out "$OUT/stress-tables"
      bench --benchmark "csv:$OUT/stress-tables/stress-imagenet16-top5.csv" --tasks imagenet16-top5rev --seeds 20 \
        --optimizers "grabnas[surrogate=nb201-no-imagenet16],grabnas[surrogate=nb201-no-imagenet16,adaptation=meta,init=top],gpbo,rea,random,transfer-rank" \
        --out "$OUT/adapt-stress-imagenet16"
      bench --benchmark "csv:$OUT/stress-tables/stress-cifar100-top20.csv" --tasks cifar100-top20rev --seeds 20 \
        --optimizers "grabnas[surrogate=nb201-no-cifar100],grabnas[surrogate=nb201-no-cifar100,adaptation=meta,init=top],grabnas[surrogate=nb201-no-cifar100,prior_mean_kernel=true],gpbo,rea,random,transfer-rank" \
        --out "$OUT/adapt-stress-cifar100" ;;
    nbgraph)
      bench --benchmark nasbench-graph --optimizers grabnas --seeds "$NBG_SEEDS" --out "$OUT/adapt-nbgraph" ;;
    surrogate)
      for a in target meta; do
        .venv/bin/grabnas surrogate eval --benchmark nb201 --checkpoint auto --adaptation "$a" --shots 0,5,10,20,50 \
          --seeds 3 --no-progress --out "$OUT/adapt-surrogate-nb201-$a.json" > "$OUT/adapt-surrogate-nb201-$a.md"
        .venv/bin/grabnas surrogate eval --benchmark nasbench-graph --checkpoint auto --adaptation "$a" --shots 0,5,10,20,50 \
          --seeds 3 --no-progress --out "$OUT/adapt-surrogate-nbgraph-$a.json" > "$OUT/adapt-surrogate-nbgraph-$a.md"
      done ;;
    probes)
      .venv/bin/python benchmarks/stress_tasks.py --out "$OUT/stress-tables"
      V="grabnas,grabnas[probe_every=3],grabnas[probe_every=5],grabnas[calibrate=true],grabnas[calibrate=true,probe_every=3]"
      S="surrogate=nb201-no-cifar100"
      bench --seeds 8 --benchmark nasbench-graph --tasks cora,proteins,pubmed --optimizers "$V" --out "$OUT/probes-nbg"
      bench --seeds 8 --benchmark nb201 --tasks imagenet16 --optimizers "$V" --out "$OUT/probes-nb201"
      bench --seeds 8 --benchmark "csv:$OUT/stress-tables/stress-cifar100-top20.csv" --tasks cifar100-top20rev \
        --optimizers "grabnas[$S],grabnas[$S,probe_every=3],grabnas[$S,probe_every=5],grabnas[$S,calibrate=true],grabnas[$S,calibrate=true,probe_every=3]" \
        --out "$OUT/probes-stress"
      bench --seeds 20 --benchmark nasbench-graph --optimizers "grabnas[probe_every=5]" --out "$OUT/probes20-nbg"
      bench --seeds 20 --benchmark "csv:$OUT/stress-tables/stress-cifar100-top20.csv" --tasks cifar100-top20rev \
        --optimizers "grabnas[$S,probe_every=5]" --out "$OUT/probes20-stress"
      bench --seeds 20 --benchmark "csv:$OUT/stress-tables/stress-imagenet16-top5.csv" --tasks imagenet16-top5rev \
        --optimizers "grabnas[surrogate=nb201-no-imagenet16,probe_every=5]" --out "$OUT/probes20-stress-imagenet16"
      for b in nb201 nasbench-graph; do
        .venv/bin/grabnas surrogate eval --benchmark "$b" --checkpoint auto --adaptation target --calibrate loo \
          --shots 0,5,10,20,50 --seeds 3 --no-progress --out "$OUT/adapt-surrogate-$b-calibrate.json" > "$OUT/adapt-surrogate-$b-calibrate.md"
      done ;;
    kernels)
      .venv/bin/python benchmarks/stress_tasks.py --out "$OUT/stress-tables"
      for v in target_kernel=onehot mean_weight=marginal; do
        n=${v%%=*}
        bench --seeds 8 --benchmark nasbench-graph --tasks cora,proteins,pubmed,arxiv,citeseer,physics \
          --optimizers "grabnas[$v]" --out "$OUT/kernels-$n-nbg"
        bench --seeds 8 --benchmark "csv:$OUT/stress-tables/stress-cifar100-top20.csv" --tasks cifar100-top20rev \
          --optimizers "grabnas[surrogate=nb201-no-cifar100,$v]" --out "$OUT/kernels-$n-stress"
        bench --seeds 8 --benchmark nb201 --tasks imagenet16,cifar100 --optimizers "grabnas[$v]" --out "$OUT/kernels-$n-nb201"
      done
      # the integrated-out weight on both stress tasks, 20 seeds (the cifar100 run extends the 8 above)
      bench --seeds 20 --benchmark "csv:$OUT/stress-tables/stress-cifar100-top20.csv" --tasks cifar100-top20rev \
        --optimizers "grabnas[surrogate=nb201-no-cifar100,mean_weight=marginal]" --out "$OUT/kernels-mean_weight-stress"
      bench --seeds 20 --benchmark "csv:$OUT/stress-tables/stress-imagenet16-top5.csv" --tasks imagenet16-top5rev \
        --optimizers "grabnas[surrogate=nb201-no-imagenet16,mean_weight=marginal]" --out "$OUT/kernels-mean_weight-stress-in16" ;;
    portfolio)
      .venv/bin/python benchmarks/stress_tasks.py --out "$OUT/stress-tables"
      for variant in ${VARIANTS:-pooled running random}; do
        case "$variant" in
          random) V="guard=3,portfolio=10,portfolio_arm=random" ;;
          *) V="guard=3,portfolio=10,portfolio_arm=gpbo,portfolio_reward=$variant" ;;
        esac
        P="$OUT/portfolio-$variant"
        bench --seeds 8 --benchmark "csv:$OUT/stress-tables/stress-cifar100-top20.csv" --tasks cifar100-top20rev \
          --optimizers "grabnas[surrogate=nb201-no-cifar100,$V]" --out "$P/stress"
        bench --seeds 8 --benchmark "csv:$OUT/stress-tables/stress-imagenet16-top5.csv" --tasks imagenet16-top5rev \
          --optimizers "grabnas[surrogate=nb201-no-imagenet16,$V]" --out "$P/stress-in16"
        OPTIMIZERS="grabnas[surrogate=nb201-all,$V]" OUT="$P-groundtruth" JOBS="$JOBS" \
          bash benchmarks/ground_truth_bench.sh > /dev/null
        bench --seeds 8 --benchmark nb201 --tasks imagenet16,cifar100 --optimizers "grabnas[$V]" --out "$P-nb201"
        bench --seeds 8 --benchmark nasbench-graph --tasks cora,proteins,pubmed,arxiv,citeseer,physics \
          --optimizers "grabnas[$V]" --out "$P-nbg"
      done
      # the random arm at 20 seeds on five NAS-Bench-Graph datasets
      bench --seeds 20 --benchmark nasbench-graph --tasks pubmed,proteins,arxiv,citeseer,cora \
        --optimizers "grabnas[guard=3,portfolio=10,portfolio_arm=random]" --out "$OUT/portfolio-random-nbg20" ;;
    portfolio20)
      .venv/bin/python benchmarks/stress_tasks.py --out "$OUT/stress-tables"
      V="portfolio=10,portfolio_arm=random"
      bench --seeds 20 --benchmark nb201 --tasks cifar10,cifar100,imagenet16 --optimizers "grabnas[$V]" --out "$OUT/portfolio20-nb201"
      stress_both 20 "$V" "$OUT/portfolio20-"
      OPTIMIZERS="grabnas[surrogate=nb201-all,$V]" OUT="$OUT/portfolio20-groundtruth" JOBS="$JOBS" \
        bash benchmarks/ground_truth_bench.sh > /dev/null
      bench --seeds 20 --benchmark nasbench-graph --optimizers "grabnas[$V]" --out "$OUT/portfolio20-nbg"
      .venv/bin/python benchmarks/portfolio_report.py --runs "$OUT" --out "$OUT/portfolio20-report.md" ;;
    csvloto)
      G=(--benchmark csv:groundtruth-images --seeds 10 --threads 1)
      bench "${G[@]}" --optimizers grabnas,gpbo,rea,transfer-rank,random --out "$OUT/csvloto"
      bench "${G[@]}" --out "$OUT/csvloto-variants" --optimizers \
        "grabnas,grabnas[guard=3,portfolio=10,portfolio_arm=random],grabnas[portfolio=10,portfolio_arm=random],grabnas[mean_weight=marginal]"
      bench "${G[@]}" --optimizers "grabnas[init_spread=corpus]" --out "$OUT/csvloto-init-spread"
      bench "${G[@]}" --optimizers "grabnas[init_spread=corpus,target_scale=corpus]" --out "$OUT/csvloto-target-scale"
      for b in nb201 nasbench-graph; do  # the surrogate's calibration with target_scale=corpus
        .venv/bin/grabnas surrogate eval --benchmark "$b" --checkpoint auto --adaptation target --target-scale corpus \
          --shots 0,5,10,20,50 --seeds 3 --no-progress --out "$OUT/sur-$b-tscale.json" > "$OUT/sur-$b-tscale.md"
      done ;;
    draws)
      G=(--benchmark csv:groundtruth-images --seeds 10 --threads 1)
      V="global_draw=thompson,draw_start=10"
      bench "${G[@]}" --optimizers "grabnas[global_draw=thompson]" --out "$OUT/draws-from-ask-1/csvloto"
      bench "${G[@]}" --optimizers "grabnas[$V]" --out "$OUT/draws/csvloto"
      bench --benchmark nasbench-graph --seeds 10 --optimizers "grabnas[$V]" --out "$OUT/draws/nbg"
      bench --benchmark nb201 --seeds 20 --optimizers "grabnas[$V]" --out "$OUT/draws/nb201"
      .venv/bin/python benchmarks/portfolio_report.py --runs "$OUT/draws" --out "$OUT/draws/report.md" ;;
    csvmetaseeds)
      bench --benchmark csv:groundtruth-images --seeds 10 --threads 1 --out "$OUT/csvloto-metaseeds" \
        --optimizers "grabnas[surrogate=train@1],grabnas[surrogate=train@2],grabnas[surrogate=train@0+train@1+train@2]" ;;
    screens)
      .venv/bin/python benchmarks/stress_tasks.py --out "$OUT/stress-tables"
      for pair in "hamming:target_kernel=hamming" "far5:probe_every=5,probe_kind=far" "fit-start-5:fit_start=5"; do
        n=${pair%%:*} V=${pair#*:} P="$OUT/screens/$n"
        bench --seeds 10 --benchmark csv:groundtruth-images --threads 1 --optimizers "grabnas[$V]" --out "$P/csvloto"
        bench --seeds 8 --benchmark nb201 --optimizers "grabnas[$V]" --out "$P/nb201"
        bench --seeds 8 --benchmark "csv:$OUT/stress-tables/stress-cifar100-top20.csv" --tasks cifar100-top20rev \
          --optimizers "grabnas[surrogate=nb201-no-cifar100,$V]" --out "$P/stress"
        bench --seeds 8 --benchmark "csv:$OUT/stress-tables/stress-imagenet16-top5.csv" --tasks imagenet16-top5rev \
          --optimizers "grabnas[surrogate=nb201-no-imagenet16,$V]" --out "$P/stress-in16"
        [ "$n" = far5 ] && continue  # far5 failed its rule on the rows above
        OPTIMIZERS="grabnas[surrogate=nb201-all,$V]" OUT="$P/groundtruth" JOBS="$JOBS" \
          bash benchmarks/ground_truth_bench.sh > /dev/null
        bench --seeds 8 --benchmark nasbench-graph --optimizers "grabnas[$V]" --out "$P/nbg"
        .venv/bin/python benchmarks/portfolio_report.py --runs "$P" --out "$P/report.md"
        [ "$n" = hamming ] || continue
        bench --seeds 20 --benchmark nasbench-graph --optimizers "grabnas[$V]" --out "$P/nbg20"
        for b in nb201 nasbench-graph; do  # learning from random observations with the Hamming kernel
          .venv/bin/grabnas surrogate eval --benchmark "$b" --checkpoint auto --adaptation target --target-kernel hamming \
            --shots 0,5,10,20,50 --seeds 3 --no-progress --out "$P/sur-$b-hamming.json" > "$P/sur-$b-hamming.md"
        done
      done ;;
    screens2)
      P="$OUT/screens/centred" V="mean_weight=centred"
      bench --seeds 8 --benchmark nb201 --optimizers "grabnas[$V]" --out "$P/nb201"
      bench --seeds 8 --benchmark nasbench-graph --tasks cora,proteins,arxiv --optimizers "grabnas[$V]" --out "$P/nbg"
      .venv/bin/python benchmarks/portfolio_report.py --runs "$P" --out "$P/report.md"
      for kind in random gpbo; do
        P="$OUT/screens/stall-$kind" V="probe_stall=5,probe_kind=$kind"
        bench --seeds 10 --benchmark csv:groundtruth-images --threads 1 --optimizers "grabnas[$V]" --out "$P/csvloto"
        bench --seeds 8 --benchmark nasbench-graph --tasks cora,proteins,arxiv,citeseer,pubmed \
          --optimizers "grabnas[$V]" --out "$P/nbg"
        bench --seeds 8 --benchmark nb201 --optimizers "grabnas[$V]" --out "$P/nb201"
        .venv/bin/python benchmarks/portfolio_report.py --runs "$P" --out "$P/report.md"
      done ;;
    integrate)
      P="$OUT/screens/integrate" V="integrate=16"
      mkdir -p "$P"
      for b in nb201 nasbench-graph; do
        .venv/bin/grabnas surrogate eval --benchmark "$b" --checkpoint auto --adaptation target --integrate 16 \
          --shots 0,5,10,20,50 --seeds 3 --no-progress --out "$P/sur-$b.json" > "$P/sur-$b.md"
      done
      bench --seeds 8 --benchmark nasbench-graph --optimizers "grabnas[$V]" --out "$P/nbg"
      bench --seeds 8 --benchmark nb201 --optimizers "grabnas[$V]" --out "$P/nb201"
      bench --seeds 10 --benchmark csv:groundtruth-images --threads 1 --optimizers "grabnas[$V]" --out "$P/csvloto"
      .venv/bin/python benchmarks/stress_tasks.py --out "$OUT/stress-tables"
      stress_both 20 "$V" "$P/"
      .venv/bin/python benchmarks/portfolio_report.py --runs "$P" --out "$P/report.md"
      P="$OUT/screens/integrate-hamming" V="integrate=16,target_kernel=hamming"
      mkdir -p "$P"
      for b in nb201 nasbench-graph; do
        .venv/bin/grabnas surrogate eval --benchmark "$b" --checkpoint auto --adaptation target --integrate 16 \
          --target-kernel hamming --shots 0,5,10,20,50 --seeds 3 --no-progress --out "$P/sur-$b.json" > "$P/sur-$b.md"
      done
      bench --seeds 8 --benchmark nb201 --tasks imagenet16 --optimizers "grabnas[$V]" --out "$P/nb201"
      bench --seeds 8 --benchmark nasbench-graph --tasks cora,proteins,arxiv,citeseer,pubmed \
        --optimizers "grabnas[$V]" --out "$P/nbg"
      .venv/bin/python benchmarks/portfolio_report.py --runs "$P" --out "$P/report.md" ;;
    integrate20)
      # integrate=16 at 20 seeds on NB201 and NAS-Bench-Graph (extends the 8 of "integrate": same runs, resumed),
      # the ground truths with the nb201-all surrogate; the paired report against the MAP fit's committed runs
      P="$OUT/screens/integrate" V="integrate=16"
      mkdir -p "$P"
      bench --seeds 20 --benchmark nb201 --optimizers "grabnas[$V]" --out "$P/nb201"
      bench --seeds 20 --benchmark nasbench-graph --optimizers "grabnas[$V]" --out "$P/nbg"
      OPTIMIZERS="grabnas[surrogate=nb201-all,$V]" OUT="$P/groundtruth" JOBS="$JOBS" \
        bash benchmarks/ground_truth_bench.sh > /dev/null
      .venv/bin/python benchmarks/portfolio_report.py --runs "$P" --out "$P/report.md"
      # over meta-training seeds 1 and 2 (CK: trained by SEEDS="1 2" OUT=$CK benchmarks/meta_seed_variance.sh),
      # the default and the MAP fit with the same checkpoints, SEARCH_SEEDS each
      for s in 1 2; do
        for t in cifar10 cifar100 imagenet16; do
          for v in "" ",integrate=0"; do
            bench --benchmark nb201 --tasks "$t" --seeds "$SEARCH_SEEDS" \
              --optimizers "grabnas[surrogate=$CK/$t-s$s/surrogate-nb201-no-{group}.pt$v]" \
              --out "$P/metaseeds/$([ -n "$v" ] && echo map || echo default)-s$s-$t"
          done
        done
      done ;;
    fitftol)
      P="$OUT/screens/fitftol"
      mkdir -p "$P"
      sur_eval 3 "$P"
      bench --seeds 20 --benchmark nb201 --optimizers grabnas --out "$P/nb201"
      bench --seeds "${FTOL_SEEDS:-8}" --benchmark nasbench-graph --optimizers grabnas --out "$P/nbg"
      .venv/bin/python benchmarks/stress_tasks.py --out "$OUT/stress-tables"
      bench --seeds "${FTOL_SEEDS:-8}" --benchmark "csv:$OUT/stress-tables/stress-imagenet16-top5.csv" \
        --tasks imagenet16-top5rev --optimizers "grabnas[surrogate=nb201-no-imagenet16]" --out "$P/stress-in16"
      bench --seeds "${FTOL_SEEDS:-8}" --benchmark "csv:$OUT/stress-tables/stress-cifar100-top20.csv" \
        --tasks cifar100-top20rev --optimizers "grabnas[surrogate=nb201-no-cifar100]" --out "$P/stress"
      .venv/bin/python benchmarks/portfolio_report.py --runs "$P" \
        --against benchmarks/results/adaptation/screens/integrate --out "$P/report.md" ;;
    hyperdraw)
      P="$OUT/screens/hyperdraw" V="hyper_draw=true"
      mkdir -p "$P"
      bench --seeds 10 --benchmark csv:groundtruth-images --threads 1 --optimizers "grabnas[$V]" --out "$P/csvloto"
      bench --seeds 20 --benchmark nb201 --optimizers "grabnas[$V]" --out "$P/nb201"
      bench --seeds 8 --benchmark nasbench-graph --optimizers "grabnas[$V]" --out "$P/nbg"
      .venv/bin/python benchmarks/stress_tasks.py --out "$OUT/stress-tables"
      bench --seeds 8 --benchmark "csv:$OUT/stress-tables/stress-imagenet16-top5.csv" --tasks imagenet16-top5rev \
        --optimizers "grabnas[surrogate=nb201-no-imagenet16,$V]" --out "$P/stress-in16"
      bench --seeds 8 --benchmark "csv:$OUT/stress-tables/stress-cifar100-top20.csv" --tasks cifar100-top20rev \
        --optimizers "grabnas[surrogate=nb201-no-cifar100,$V]" --out "$P/stress"
      .venv/bin/python benchmarks/portfolio_report.py --runs "$P" --against "$OUT/screens/fitftol" \
        benchmarks/results/adaptation/screens/integrate --out "$P/report.md" ;;
    arm)
      P="$OUT/screens/arm" V="portfolio=10,portfolio_arm=random"
      mkdir -p "$P"
      OPTIMIZERS="grabnas[surrogate=nb201-all,$V]" OUT="$P/groundtruth" JOBS="$JOBS" bash benchmarks/ground_truth_bench.sh > /dev/null
      bench --seeds 5 --benchmark csv:groundtruth-images --threads 1 --optimizers "grabnas[$V]" --out "$P/csvloto"
      .venv/bin/python benchmarks/stress_tasks.py --out "$OUT/stress-tables"
      stress_both 5 "$V" "$P/"
      bench --seeds 5 --benchmark nasbench-graph --optimizers "grabnas[$V]" --out "$P/nbg"
      bench --seeds 10 --benchmark nb201 --tasks imagenet16 --optimizers "grabnas[$V]" --out "$P/nb201-in16"
      bench --seeds 5 --benchmark nb201 --tasks cifar10,cifar100 --optimizers "grabnas[$V]" --out "$P/nb201"
      report_against_fitftol "$P" ;;
    warmup)
      P="$OUT/screens/warmup" V="warmup_random=corpus"
      nbg_csvloto "$P" "$V"
      OPTIMIZERS="grabnas[surrogate=nb201-all,$V]" OUT="$P/groundtruth" JOBS="$JOBS" bash benchmarks/ground_truth_bench.sh > /dev/null
      report_against_fitftol "$P" ;;
    warmup10)
      P="$OUT/screens/warmup10"
      nbg_csvloto "$P" "warmup_random=corpus,warmup_start=10"
      report_against_fitftol "$P" ;;
    pibo)
      V="${PIBO:-prior_decay=5,mean_weight=none}" P="$OUT/screens/pibo"
      mkdir -p "$P"
      bench --seeds "${SEEDS:-20}" --benchmark nb201 --optimizers "grabnas[$V]" --out "$P/nb201"
      .venv/bin/python benchmarks/stress_tasks.py --out "$OUT/stress-tables"
      stress_both "${SEEDS:-20}" "$V" "$P/"
      OPTIMIZERS="grabnas[surrogate=nb201-all,$V]" OUT="$P/groundtruth" JOBS="$JOBS" bash benchmarks/ground_truth_bench.sh > /dev/null
      bench --seeds "${SEEDS:-20}" --benchmark nasbench-graph --optimizers "grabnas[$V]" --out "$P/nbg"
      report_against_fitftol "$P" ;;
    finetune)
      V="finetune=${FINETUNE:-50}${FINETUNE_START:+,finetune_start=$FINETUNE_START}${FINETUNE_REFIT:+,finetune_refit=$FINETUNE_REFIT}${FINETUNE_SELECT:+,finetune_select=$FINETUNE_SELECT}${FINETUNE_ARM:+,portfolio=$FINETUNE_ARM,portfolio_arm=finetune}${FINETUNE_WARMUP:+,warmup_random=$FINETUNE_WARMUP}${FINETUNE_EVERY:+,finetune_every=$FINETUNE_EVERY}"
      P="$OUT/screens/finetune${FINETUNE_START:+-start$FINETUNE_START}${FINETUNE_REFIT:+-refit$FINETUNE_REFIT}${FINETUNE_SELECT:+-select}${FINETUNE_ARM:+-arm$FINETUNE_ARM}${FINETUNE_WARMUP:+-warmup}${FINETUNE_EVERY:+-every$FINETUNE_EVERY}"
      mkdir -p "$P"
      bench --seeds "${SEEDS:-8}" --benchmark nb201 --optimizers "grabnas[$V]" --out "$P/nb201"
      .venv/bin/python benchmarks/stress_tasks.py --out "$OUT/stress-tables"
      stress_both "${SEEDS:-8}" "$V" "$P/"
      bench --seeds "${SEEDS:-8}" --benchmark nasbench-graph --optimizers "grabnas[$V]" --out "$P/nbg"
      bench --benchmark csv:groundtruth-images --seeds 10 --threads 1 --optimizers "grabnas[$V]" --out "$P/csvloto"
      OPTIMIZERS="grabnas[surrogate=nb201-all,$V]" OUT="$P/groundtruth" JOBS="$JOBS" bash benchmarks/ground_truth_bench.sh > /dev/null
      for b in nb201 nasbench-graph; do
        .venv/bin/grabnas surrogate eval --benchmark "$b" --checkpoint auto --adaptation target --adapt-steps "${FINETUNE:-50}" \
          --finetune-features $([ "${FINETUNE_REFIT:-}" = false ] && echo --no-finetune-refit) --shots 0,5,10,20,50 --seeds 10 --no-progress --out "$P/sur-$b.json" > "$P/sur-$b.md"
      done
      .venv/bin/python benchmarks/learning_gain.py "$P/sur-nb201.json" "$P/sur-nasbench-graph.json" > "$P/gain.md"
      report_against_fitftol "$P" ;;
    learning10)
      P="$OUT/learning10"
      mkdir -p "$P"
      sur_eval 10 "$P"
      .venv/bin/python benchmarks/learning_gain.py "$P/sur-nb201.json" "$P/sur-nasbench-graph.json" | tee "$P/gain.md" ;;
    *) echo "unknown part $part; expected nb201, metaseeds, stress, nbgraph, surrogate, probes, kernels, portfolio, portfolio20, csvloto, draws, csvmetaseeds, screens, screens2, integrate, integrate20, fitftol, hyperdraw, arm, pibo, finetune or learning10" >&2; exit 2 ;;
  esac
done
