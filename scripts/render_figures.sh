#!/usr/bin/env bash
# Render the toy figures in figures/ from scratch.
#
# Decodes the first QUESTIONS toy problems (default 200) with the toy model twice. The hex25
# preset (block sizes 2 to 32, five seeds each) goes to runs/toy-hex25, and the baselines preset
# (one block with confidence, margin and random remasking) to runs/toy-baselines. Then every
# figure of both runs is drawn as PNG.
# The trajectory heatmap shows question toy-0000 on path 20, the first one-block path of hex25.
# A rerun reuses the finished runs and only draws the figures again. After the toy checkpoint
# changes, delete runs/toy-hex25 and runs/toy-baselines first, or `hexlab run` rejects them.
#
# Usage: bash scripts/render_figures.sh   (from any folder; needs `pip install -e .`)
set -euo pipefail

cd "$(dirname "$0")/.."
questions="${QUESTIONS:-200}"

for preset in hex25 baselines; do
    hexlab run --model toy --dataset toy --paths "$preset" --limit "$questions" \
        --device cpu --batch-size 256 --out "runs/toy-$preset"
done

hexlab figures runs/toy-hex25 runs/toy-baselines --out figures --formats png --method both \
    --trajectory-question toy-0000 --trajectory-path 20
