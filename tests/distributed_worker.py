"""One process of a multi-process job for tests/test_distributed.py (not a test module).

    python tests/distributed_worker.py OUT PROCESS_ID NUM_PROCESSES PORT MODE STEPS [--resume]

MODE "fit": ``train.fit`` of the tiny model of tests/test_train.py on a mesh spanning every
process (K = 4 trials split over the processes), checkpoints in OUT/checkpoints. MODE
"fit,ensemble" then also trains 2 ensemble members with different seeds, split over the
processes; process 0 writes their gathered parameters to OUT/ensemble.npz. With
NUM_PROCESSES = 1 the same runs happen on one device without a mesh: the reference.
"""

import os
import sys

import jax
import numpy as np

out, process_id, num_processes, port, mode, steps = sys.argv[1:7]
process_id, num_processes, steps = int(process_id), int(num_processes), int(steps)
resume = "--resume" in sys.argv[7:]
os.makedirs(out, exist_ok=True)
jax.config.update("jax_platforms", "cpu")
if num_processes > 1:
    from rsnn_jax import parallel

    parallel.initialize(f"localhost:{port}", num_processes, process_id)

from rsnn_jax import ensemble, model, parallel, train  # noqa: E402
from tests.test_train import T, _batch, _model, _objective  # noqa: E402

m = _model()
objective = _objective("mle_psth_nc")
distributed = num_processes > 1
config = train.TrainConfig(
    num_steps=steps, learning_rate=1e-2, eval_every=5, checkpoint_every=1, seed=5
)

if "fit" in mode.split(","):
    train.fit(
        model=m,
        params=model.init_model(jax.random.key(0), m, (T + 1, 3, 3)),
        objective=objective,
        batches=lambda position: (_batch(i) for i in range(position, 10**6)),
        config=config,
        workdir=out,
        validation=_batch(99),
        resume=resume,
        log=lambda line: print(line, flush=True),
        mesh=parallel.make_mesh(0) if distributed else None,
    )
if "ensemble" in mode.split(","):
    mesh = parallel.make_mesh(0, axis="members") if distributed else None
    seeds = (3, 7)
    optimizer = train.make_optimizer(config)
    keys = jax.random.split(jax.random.key(0), len(seeds))
    states = ensemble.init_ensemble(keys, m, (T + 1, 3, 3), optimizer)
    objectives = ensemble.stack([objective.with_weights(nc=w) for w in (0.5, 2.0)])
    if mesh is not None:
        states = parallel.shard_leading(states, mesh)
        objectives = parallel.shard_leading(objectives, mesh)
        own = sorted(shard.index[0].start for shard in states.step.addressable_shards)
        print(f"process {process_id} advances members {own}", flush=True)
    step = ensemble.make_ensemble_step(m, optimizer, mesh=mesh)
    for i in range(3):  # a few steps: the members' split is what is tested
        states, terms, finite = step(states, objectives, _batch(i), ensemble.step_keys(seeds, i))
    params = parallel.gather(states.params)
    if parallel.is_main_process():
        leaves = {str(n): np.asarray(x) for n, x in enumerate(jax.tree.leaves(params))}
        np.savez(os.path.join(out, "ensemble.npz"), **leaves)
print(f"WORKER-DONE {process_id}", flush=True)
