#!/usr/bin/env bash
# λ-GRPO with verl 0.9.1 on one GPU node: the paper's Qwen-1.5B run (METHOD.md §10), β = 0.04.
#   pip install -e '.[verl]' 'verl[vllm]==0.9.1'       # verl with its GPU extras; lgrpo's plug-in is an entry point
#   python examples/verl/prepare_openrs.py --out ~/data/openrs
#   bash examples/verl/run_qwen1.5b.sh [hydra overrides...]
# Examples of overrides: GRPO arm `algorithm.lambda_grpo.enable=false`; β = 0 `actor_rollout_ref.actor.use_kl_loss=false`;
# more GPUs `trainer.n_gpus_per_node=8`. Not run by lgrpo's tests (docs/verl.md says what was).
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
export LGRPO_EXAMPLES="$HERE"
# the plug-in must load in the driver and in every Ray worker; fail early if this environment cannot load it
python -c "import lgrpo.engines.verl as p; p.check_plugin()"
exec python -m verl.trainer.main_ppo --config-path="$HERE" --config-name=lambda_grpo_qwen1.5b "$@"
