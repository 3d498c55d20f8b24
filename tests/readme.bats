#!/usr/bin/env bats
# The README's commands, run as written: each ```sh block of "A whole
# experiment" is taken from README.md itself and scaled down only by
# substitutions a reader would make (--limit on the dataset, one epoch,
# smaller batches), so the README cannot drift from what the programs do.
load '/usr/lib/bats/bats-support/load'
load '/usr/lib/bats/bats-assert/load'

B="$BATS_TEST_DIRNAME/../bin"

block() { # HEADING: the first ```sh block after "## HEADING" in README.md
    awk -v h="## $1" '$0 == h {f = 1; next} f && /^```sh/ {p = 1; next} p && /^```/ {exit} p' \
        "$BATS_TEST_DIRNAME/../README.md"
}

@test "README: 'A whole experiment' runs as written (256 images, one epoch)" {
    cd "$BATS_TEST_TMPDIR"
    block "A whole experiment" > whole.sh
    [ "$(grep -c . whole.sh)" -ge 15 ]
    grep -q "distill-step --method moco -m teacher0.h5 -o teacher.h5" whole.sh
    ! grep -q -- "distill-step.*--epochs" whole.sh || false
    sed -e 's/^dataset \(.*\) -o /dataset \1 --limit 256 -o /' -e 's/--epochs 100/--epochs 1/' \
        -e 's/--batch 256/--batch 64/' whole.sh > small.sh
    [ "$(grep -c -- '--limit 256' small.sh)" = 2 ]
    run env PATH="$B:$PATH" sh -e small.sh
    assert_success
    assert_output --partial '"steps": 4'
    assert_output --partial '"loss_disco"'
    assert_output --partial '"loss_seed"'
    assert_output --partial '"knn_top1"'
    [ -s teacher.h5 ] && [ -s t-cache.h5 ] && [ -s disco.h5 ] && [ -s seed.h5 ] && [ -s f-train.h5 ] && [ -s f-test.h5 ]
}

@test "README and bench describe machines by their CPU, and the cocoapi sources come from COCOAPI_SRC" {
    ! grep -n -i "session" "$BATS_TEST_DIRNAME/../README.md" "$BATS_TEST_DIRNAME/../bench/README.md" \
        "$BATS_TEST_DIRNAME/../bench/detect-eval.sh" || false
    ! grep -n "/work/" "$BATS_TEST_DIRNAME/../bench/detect-eval.sh" || false
    grep -q "COCOAPI_SRC" "$BATS_TEST_DIRNAME/../bench/README.md"
    run env -u COCOAPI_SRC "$BATS_TEST_DIRNAME/../bench/detect-eval.sh"
    assert_failure 1
    assert_output "bench/detect-eval.sh: set COCOAPI_SRC to the cocoapi sources, e.g.
  git clone https://github.com/cocodataset/cocoapi /tmp/cocoapi && COCOAPI_SRC=/tmp/cocoapi bench/detect-eval.sh"
    run env COCOAPI_SRC="$BATS_TEST_TMPDIR" "$BATS_TEST_DIRNAME/../bench/detect-eval.sh"
    assert_failure 1
    assert_output "bench/detect-eval.sh: COCOAPI_SRC=$BATS_TEST_TMPDIR holds neither PythonAPI/ and common/ nor a cocoapi git repository"
}
