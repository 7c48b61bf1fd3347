#!/bin/sh
# Makes the bare repository examples/fanout.yaml fans out on (or one at $1): a "remote" with one
# seed commit on main, served by path, so the example runs offline.
#   sh examples/fanout_repo.sh && agentflow run examples/fanout.yaml
set -eu
here=$(cd "$(dirname "$0")" && pwd)
repo=${1:-"$here/fanout-repo.git"}
seed=$(mktemp -d)
trap 'rm -rf "$seed"' EXIT
rm -rf "$repo"
git init -q --bare "$repo"
git -C "$repo" symbolic-ref HEAD refs/heads/main
git init -q "$seed"
printf '# Dark mode\n\nThree agents each write one part; a merge step joins them.\n' >"$seed/README.md"
git -C "$seed" add README.md
git -C "$seed" -c user.name=AgentFlow -c user.email=agentflow@example.invalid \
    commit -q -m "Seed the fan-out example"
git -C "$seed" push -q "$repo" HEAD:refs/heads/main
echo "$repo"
