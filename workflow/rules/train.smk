# Training: one script, one loop, for every condition. Teachers and controls are keyed by what
# they depend on (dataset/model/recipe), kd and rcd students by their setup; each key ends in the
# digest of the run's specification (kdtransfer.plan.runs), so a changed hyper-parameter is a new
# path. The key templates and file names are kdtransfer.paths'.
#
# A job trains a pack: the runs of one run key over one block of seeds (training.pack_size),
# one after another in one process (kdtransfer.training.pack). Its outputs are every run's own
# files, so there is one rule per block: train_reference_seeds0to9, train_distilled_seeds0to9, ...
# (`set-resources` under train_reference / train_distilled applies to all of them: pack_resources).
# The `runs` param restates the outputs per seed and is not tracked; the spec (every seed's
# alike) and the revision are.

for block in PLAN.seed_blocks:

    rule:
        name:
            pack_rule_name(paths.TRAIN_REFERENCE_RULE, block)
        input:
            data=reference_data,
        output:
            weights=pack_outputs(paths.REFERENCE_KEY, block, paths.WEIGHTS),
            history=pack_outputs(paths.REFERENCE_KEY, block, paths.HISTORY),
            predictions=ensure(pack_prediction_outputs(paths.REFERENCE_KEY, block), non_empty=True),
        wildcard_constraints:
            condition="|".join(REFERENCE_CONDITIONS),
        params:
            spec=reference_spec,
            runs=pack_runs(block),
            splits=SPLITS,
            revision=kdtransfer.TRAINING_REVISION,
        conda:
            "../../envs/train.yaml"
        log:
            pack_file(paths.TRAIN_LOG, paths.REFERENCE_KEY, block),
        benchmark:
            pack_file(paths.TRAIN_BENCHMARK, paths.REFERENCE_KEY, block)
        threads: pack_workers(block)
        resources:
            **pack_resources(paths.TRAIN_REFERENCE_RULE, block),
        script:
            "../scripts/train.py"

    rule:
        name:
            pack_rule_name(paths.TRAIN_DISTILLED_RULE, block)
        input:
            unpack(distilled_inputs(block)),
        output:
            weights=pack_outputs(paths.DISTILLED_KEY, block, paths.WEIGHTS),
            history=pack_outputs(paths.DISTILLED_KEY, block, paths.HISTORY),
            predictions=ensure(pack_prediction_outputs(paths.DISTILLED_KEY, block), non_empty=True),
        wildcard_constraints:
            condition="|".join(DISTILLED_CONDITIONS),
        params:
            spec=distilled_spec,
            runs=pack_runs(block),
            teacher_model=distilled_teacher_model,
            splits=SPLITS,
            revision=kdtransfer.TRAINING_REVISION,
        conda:
            "../../envs/train.yaml"
        log:
            pack_file(paths.TRAIN_LOG, paths.DISTILLED_KEY, block),
        benchmark:
            pack_file(paths.TRAIN_BENCHMARK, paths.DISTILLED_KEY, block)
        threads: pack_workers(block)
        resources:
            **pack_resources(paths.TRAIN_DISTILLED_RULE, block),
        script:
            "../scripts/train.py"
